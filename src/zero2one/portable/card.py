"""A model card (``README.md``, Hugging Face's format: YAML front matter, then Markdown) for a
saved model directory, made from its manifest alone: what the model does, how it was trained
(recipe, data and its version, baselines), its held-out evaluation beside the baselines, the
limitations found, and how to load and serve it with zero2one and with MLflow."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CARD = "README.md"
_BASELINE = "baseline_"


def write_card(directory: Path, manifest: dict[str, Any], *, notes: Sequence[str] = (),
               pipeline_tag: str | None = None) -> Path:
    """``README.md`` for the saved model in ``directory`` (``manifest``: its manifest);
    ``pipeline_tag``: the Hugging Face hub's name for what the model does (the task's
    :attr:`~zero2one.task.MLflowModel.pipeline_tag`)."""
    path = directory / CARD
    path.write_text(card_text(manifest, notes=notes, pipeline_tag=pipeline_tag),
                    encoding="utf-8")
    return path


def card_text(manifest: dict[str, Any], *, notes: Sequence[str] = (),
              pipeline_tag: str | None = None) -> str:
    name, task = str(manifest.get("name") or "model"), str(manifest["task"])
    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    data = manifest.get("data") or {}
    recipe = manifest.get("recipe") or {}
    front: dict[str, Any] = {
        "library_name": "zero2one",
        "tags": ["zero2one", task, "mlflow"],
        **({"pipeline_tag": pipeline_tag} if pipeline_tag else {}),
        "zero2one": {"task": task, "format_version": manifest.get("format_version"),
                     "created_at": manifest.get("created_at"),
                     "data": {k: data[k] for k in ("source", "sha256", "rows", "columns")
                              if k in data}},
    }
    results = [{"type": k, "value": float(v), "name": _title(k)} for k, v in metrics.items()
               if not k.startswith(_BASELINE)]
    baselines = [{"type": k, "value": float(v), "name": _title(k)} for k, v in metrics.items()
                 if k.startswith(_BASELINE)]
    if results:
        front["model-index"] = [{"name": name, "results": [{
            "task": {"type": pipeline_tag or task, "name": task},
            "dataset": {"name": str(data.get("source") or "held-out data"),
                        "type": str(data.get("source") or "unknown")},
            "metrics": results + baselines}]}]
    parts = ["---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---", "",
             f"# {name}", "", _what(manifest, recipe), "", "## How it was trained", "",
             *_training(manifest, recipe, data), "", "## Evaluation", "",
             *_evaluation(metrics), "", "## Limitations", "", *_limitations(manifest, metrics,
                                                                           notes),
             "", "## How to use it", "", *_usage(manifest, recipe), ""]
    return "\n".join(parts)


def _title(metric: str) -> str:
    return metric.removeprefix(_BASELINE).replace("_", " ") + (
        " (baseline)" if metric.startswith(_BASELINE) else " (held out)")


def _what(manifest: dict[str, Any], recipe: dict[str, Any]) -> str:
    task = manifest["task"]
    said = [f"A **{task}** model trained with zero2one from the recipe "
            f"`{manifest.get('name')}`."]
    if description := str(recipe.get("description") or "").strip():
        said.append(description if description.endswith((".", "!", "?", "。")) else
                    f"{description}.")
    if names := manifest.get("class_names") or manifest.get("classes"):
        shown = ", ".join(map(str, names[:20])) + (" …" if len(names) > 20 else "")
        said.append(f"It predicts one of {len(names)} classes: {shown}.")
    columns = (manifest.get("input_schema") or {}).get("columns")
    if columns:
        said.append("Inputs: " + ", ".join(f"`{c['name']}` ({c['kind']})" for c in columns)
                    + ".")
    return " ".join(said)


def _training(manifest: dict[str, Any], recipe: dict[str, Any],
              data: dict[str, Any]) -> list[str]:
    lines = []
    if conversion := manifest.get("conversion"):  # an export or compression of another model
        parent = (manifest.get("parent") or {}).get("ref", "another model")
        lines.append(f"- Converted from `{parent}` by `{conversion.get('method', '?')}`; the "
                     "parent's training follows")
    lines += [f"- Data: `{data.get('source', 'unknown')}`"
             + (f", {data['rows']} rows" if "rows" in data else "")
             + (f", sha256 `{data['sha256']}`" if "sha256" in data else "")]
    versions = data.get("versions") or {}
    if commit := (versions.get("git") or {}).get("commit"):
        lines.append(f"- Data version: git commit `{commit}`")
    for entry in versions.get("data") or []:
        for dvc in entry.get("dvc") or []:
            lines.append(f"- DVC: `{dvc.get('file', '')}` md5 {', '.join(dvc.get('md5', []))}")
    if estimator := manifest.get("estimator"):
        lines.append(f"- Estimator: `{estimator}`"
                     + (f", best parameters {json.dumps(manifest['best_params'])}"
                        if manifest.get("best_params") else ""))
    if (cv := manifest.get("cv_score")) is not None:
        lines.append(f"- Cross-validated score of the search: {cv:.4g}")
    libraries = manifest.get("libraries") or {}
    lines.append(f"- Libraries: {', '.join(f'{k} {v}' for k, v in libraries.items())}")
    recipe_yaml = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).strip()
    return [*lines, "", "The recipe:", "", "```yaml", recipe_yaml, "```"]


def _evaluation(metrics: dict[str, float]) -> list[str]:
    if not metrics:
        return ["No held-out evaluation was recorded."]
    rows = ["| metric | this model | baseline |", "| --- | --- | --- |"]
    for key, value in metrics.items():
        if key.startswith(_BASELINE):
            continue
        base = metrics.get(_BASELINE + key)
        rows.append(f"| {key} | {value:.4g} | {'' if base is None else f'{base:.4g}'} |")
    return ["Held out from training (the baseline: what a model that ignores the inputs "
            "scores — the most frequent class, the mean, a text-only guess):", "", *rows]


def _limitations(manifest: dict[str, Any], metrics: dict[str, float],
                 notes: Sequence[str]) -> list[str]:
    found = [f"- The data: {note}" for note in notes]
    for key, value in metrics.items():  # a model no better than its baseline
        base = metrics.get(_BASELINE + key)
        if base is not None and not key.startswith(_BASELINE) and _no_better(key, value, base):
            found.append(f"- {key} {value:.4g} is no better than the baseline's {base:.4g}.")
    per_class = {k.split(".", 1)[1]: v for k, v in metrics.items()
                 if re.fullmatch(r"f1\.[^.]+", k)}
    if len(per_class) > 1:
        worst = min(per_class, key=per_class.__getitem__)
        found.append(f"- The weakest class is `{worst}` (F1 {per_class[worst]:.3g}; the best: "
                     f"{max(per_class.values()):.3g}).")
    data = manifest.get("data") or {}
    if (rows := data.get("rows")) is not None and rows < 1000:
        found.append(f"- Trained and evaluated on {rows} rows: the held-out figures are "
                     "estimates from a small sample.")
    if (data.get("versions") or {}).get("git") is None:
        found.append("- The data's version was not recorded (no git or DVC): retraining may "
                     "not reproduce these figures.")
    found.append("- Evaluated only on data like its training data; inputs from elsewhere "
                 "(another population, another time) may be predicted worse.")
    return found


def _no_better(metric: str, value: float, base: float) -> bool:
    lower_is_better = any(w in metric for w in ("error", "loss", "mse", "mae", "rmse", "fid"))
    return value >= base if lower_is_better else value <= base


def _usage(manifest: dict[str, Any], recipe: dict[str, Any]) -> list[str]:
    registered = None if manifest.get("conversion") else recipe.get("register")  # the parent's
    ref = f"models:/{registered}/latest" if registered else "path/to/this/directory"
    return [
        "With zero2one (every file is checked against `manifest.json` first):", "",
        "```bash", f"zero2one predict {ref} --input inputs.csv",
        f"zero2one serve {ref}", "```", "",
        "```python", "import zero2one", "", f'model = zero2one.load("{ref}")', "```", "",
        "With MLflow (the `python_function` flavor runs zero2one's loader: zero2one must be "
        "installed where the model is loaded):", "",
        "```python", "import mlflow", "",
        f'model = mlflow.pyfunc.load_model("{ref}")',
        "model.predict(model.input_example)  # a DataFrame with the signature's columns",
        "```", "",
        "```bash", f"mlflow models serve -m {ref} --env-manager local",
        "```",
    ]
