"""Direct preference optimisation (``model.method: dpo``) with TRL's ``DPOTrainer``.

The data are preference pairs — ``{"prompt": [messages] or "text", "chosen": "...",
"rejected": "..."}``, what ``zero2one feedback export --format dpo`` writes. The policy is the
base with LoRA adapters (``model.lora``); with the adapters switched off it is its own
reference model, so no second copy of the base is loaded (TRL cannot rebuild a reference from a
model built in memory). The saved model is an adapter like a LoRA fine-tune's.

Measured before and after, on the held-out pairs: preference accuracy (the share where the
model gives the chosen answer a higher log-likelihood than the rejected one) and the mean
margin log p(chosen) − log p(rejected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zero2one.errors import DataError
from zero2one.tasks.textgen.train import (
    Outcome,
    count_parameters,
    last_complete_checkpoint,
    progress_callback,
    trainer_arguments,
    )


@dataclass
class Preference:
    accuracy: float  # share of pairs where log p(chosen) > log p(rejected)
    margin: float  # mean of log p(chosen) - log p(rejected), nats

    def metrics(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}val_preference_accuracy": self.accuracy,
                f"{prefix}val_preference_margin": self.margin}


def _trl_row(row: dict[str, Any]) -> dict[str, Any]:
    """TRL's conversational form for message prompts, its standard form for text."""
    if isinstance(row["prompt"], list):
        return {"prompt": row["prompt"],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}]}
    return dict(row)


def _encode(tokenizer: Any, prompt: Any, answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + answer, and where the answer starts."""
    if isinstance(prompt, list):
        context = tokenizer.apply_chat_template(prompt, tokenize=False,
                                                add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(context):
            raise DataError("the model's chat template renders an answer differently from its "
                            "prompt; cannot score preference pairs")
        head = tokenizer(context, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    else:
        head = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        ids = head + tokenizer(answer, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
    kept = ids[-max_length:]  # a long prompt loses its beginning, never the answer
    return kept, max(1, len(head) - (len(ids) - len(kept)))


def preference(model: Any, tokenizer: Any, pairs: list[dict[str, Any]],
               max_length: int) -> Preference:
    """Log-likelihoods of the chosen and rejected answers under ``model``."""
    import torch

    if not pairs:
        return Preference(math.nan, math.nan)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wins, margins = 0, []
    with torch.no_grad():
        for pair in pairs:
            scores = []
            for answer in (pair["chosen"], pair["rejected"]):
                ids, start = _encode(tokenizer, pair["prompt"], answer, max_length)
                tensor = torch.tensor([ids], device=device)
                logits = model(input_ids=tensor).logits[0, :-1].float()
                logp = torch.log_softmax(logits, -1).gather(1, tensor[0, 1:, None])[:, 0]
                scores.append(float(logp[start - 1:].sum()))
            margins.append(scores[0] - scores[1])
            wins += scores[0] > scores[1]
    model.train(was_training)
    return Preference(wins / len(pairs), sum(margins) / len(margins))


def fit(model: Any, tokenizer: Any, train_pairs: list[dict[str, Any]],
        val_pairs: list[dict[str, Any]], config: Any, *, beta: float, max_length: int,
        seed: int, reporter: Any, checkpoint_dir: Path, resume: bool) -> Any:
    """Train the adapters of ``model`` (a peft model) with DPO; returns the train Outcome."""
    import warnings

    import datasets
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()  # TRL tokenizes with bars; progress is the reporter's
    use_cuda = next(model.parameters()).device.type == "cuda"
    outcome = Outcome()
    outcome.trainable, outcome.total = count_parameters(model)
    with warnings.catch_warnings():  # TRL still sets transformers' renamed fields
        warnings.filterwarnings("ignore", message=".*checkpointing", category=FutureWarning)
        args = DPOConfig(**trainer_arguments(config, checkpoint_dir, seed=seed,
                                             use_cuda=use_cuda),
                         beta=beta, max_length=max_length, eval_strategy="no")
    last = last_complete_checkpoint(checkpoint_dir) if resume else None
    if last is not None:
        outcome.resumed_from = last[0]

    def dpo_values(logs: dict[str, Any]) -> dict[str, float]:
        values = {k.replace("/", "_"): float(v) for k, v in logs.items()
                  if k in ("loss", "rewards/margins", "rewards/accuracies")
                  and isinstance(v, int | float)}
        if "loss" in values:
            values["train_loss"] = values.pop("loss")
        return values

    steps_per_epoch = math.ceil(len(train_pairs) / config.batch_size
                                / config.gradient_accumulation)
    total = config.max_steps or math.ceil(steps_per_epoch * config.epochs)
    with reporter.step("preference optimisation (DPO)", total=total) as step, \
            warnings.catch_warnings():
        # transformers renamed gradient checkpointing; TRL still calls the old names
        warnings.filterwarnings("ignore", message=".*checkpointing", category=FutureWarning)
        rows = Dataset.from_list([_trl_row(r) for r in train_pairs])
        trainer = DPOTrainer(
            model=model, ref_model=None, args=args, train_dataset=rows,
            processing_class=tokenizer,
            callbacks=[progress_callback(step, outcome, reporter, dpo_values)])
        trainer.remove_callback(PrinterCallback)
        if last is not None:
            step.advance(last[0])
        trainer.train(resume_from_checkpoint=str(last[1]) if last else None)
    return outcome

