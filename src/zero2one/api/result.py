"""What :func:`zero2one.train` returns: the run, the model, its metrics and, in a notebook, a view
of them with the run's plots."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one import tracking
from zero2one.errors import Zero2OneError
from zero2one.tracking import sql as tracking_sql

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.task import Task


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    name: str
    task: str
    metrics: dict[str, float]
    model_dir: Path  # the saved model directory (inside the artifact store when tracked)
    model_uri: str  # a model reference that loads it
    run_id: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    search_results: pd.DataFrame | None = None
    # fit, evaluate, report (plots), save (model directory), tracking (MLflow calls), total
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def registered_uri(self) -> str | None:
        return registered_uri(self.registered_name, self.registered_version)

    def _repr_html_(self) -> str:
        """A notebook's view: the model and run, the held-out metrics beside their baselines,
        the best parameters and the plots the run recorded."""
        baseline = {k.removeprefix("baseline_"): v for k, v in self.metrics.items()
                    if k.startswith("baseline_")}
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{v:.4g}</td>"
            f"<td>{'' if k not in baseline else f'{baseline[k]:.4g}'}</td></tr>"
            for k, v in self.metrics.items() if not k.startswith("baseline_"))
        facts = [("model", self.registered_uri or self.model_uri), ("run", self.run_id),
                 ("best params", self.best_params or None),
                 ("cv score", None if self.cv_score is None else f"{self.cv_score:.4g}"),
                 ("seconds", f"{self.seconds.get('total', 0):.1f}")]
        head = "".join(f"<div><b>{escape(k)}</b>: <code>{escape(str(v))}</code></div>"
                       for k, v in facts if v is not None)
        images = "".join(f'<img src="data:image/png;base64,{data}" title="{escape(name)}" '
                         'style="width:320px;margin:4px">' for name, data in self._plots())
        return (f"<div><h4>{escape(self.name)} <small>({escape(self.task)})</small></h4>{head}"
                "<table><tr><th>held-out metric</th><th>model</th><th>baseline</th></tr>"
                f"{rows}</table><div>{images}</div></div>")

    def _plots(self, most: int = 6) -> list[tuple[str, str]]:
        """(name, base64 PNG) of the run's plots (a local store) or the model's report."""
        folder = self.model_dir / "report"
        if self.run_id is not None:
            try:
                uri = tracking.run_artifact_uri(self.run_id, "plots")
            except Zero2OneError:  # the store went away: the page shows no plots
                return []
            folder = tracking_sql.local_path(uri) or folder
        pngs = sorted(folder.glob("*.png"))[:most] if folder.is_dir() else []
        return [(p.name, base64.b64encode(p.read_bytes()).decode()) for p in pngs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_dir": str(self.model_dir),
            "registered_uri": self.registered_uri,
            "metrics": self.metrics,
            "best_params": self.best_params,
            "cv_score": self.cv_score,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def registered_uri(name: str | None, version: str | None) -> str | None:
    """``models:/NAME/VERSION`` of a registered model version, None when there is none."""
    return None if name is None or version is None else f"models:/{name}/{version}"


def result_of(task: Task, metrics: dict[str, float], model_dir: Path, uri: str,
            timings: dict[str, float], *, run_id: str | None = None,
            version: str | None = None) -> TrainResult:
    searched = task.searched()
    return TrainResult(
        name=task.config.name, task=task.config.task, metrics=metrics, model_dir=model_dir,
        model_uri=uri, run_id=run_id, registered_version=version,
        registered_name=task.config.register_as if version else None,
        best_params=dict(searched.best_params) if searched is not None else {},
        cv_score=searched.best_score if searched is not None else None,
        search_results=searched.results if searched is not None else None, seconds=timings,
    )
