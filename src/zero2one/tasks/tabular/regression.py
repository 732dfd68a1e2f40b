"""Tabular regression: a numeric target, its mean as the baseline, residual plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zero2one import plots
from zero2one.data import Table
from zero2one.errors import DataError
from zero2one.metrics import regression_metrics
from zero2one.tasks.tabular.data import TabularData
from zero2one.tasks.tabular.task import TabularTask

if TYPE_CHECKING:
    import pandas as pd


class TabularRegression(TabularTask):
    name = "tabular-regression"
    pipeline_tag = "tabular-regression"
    kind = "regression"

    @property
    def scoring(self) -> str:
        return self.config.search.scoring or "neg_root_mean_squared_error"

    def _prepare_target(
        self, y: pd.Series, target: str, table: Table
    ) -> tuple[pd.Series, None, None]:
        import pandas as pd

        values = pd.to_numeric(y, errors="coerce")
        bad = values.isna()
        if bad.any():
            row = bad.idxmax()
            raise DataError(
                f"target {target!r} must be numeric for regression, but has {y[row]!r} in row "
                f"{row}; for classes use task tabular-classification"
            )
        if values.nunique() < 2:
            raise DataError(f"target {target!r} is constant; there is nothing to learn")
        return values.astype("float64"), None, None

    def evaluate(self, data: TabularData) -> dict[str, float]:
        y, predicted, _ = self.held_out(data)
        return regression_metrics(y, predicted, baseline=self.baseline_)

    def report(self, data: TabularData, out_dir: Path) -> list[Path]:
        y, predicted, _ = self.held_out(data)
        paths = [plots.plot_residuals(y, predicted, out_dir / "residuals.png")]
        return paths + self.search_report(out_dir)
