"""The plug-in checks itself with zero2one's own contract checks (zero2one.testing), as a
scikit-learn estimator checks itself with ``check_estimator``."""

from __future__ import annotations

from pathlib import Path

import pytest

from zero2one.testing import CHECKS, Case, check_task

HERE = Path(__file__).resolve().parents[1]


def rows() -> object:
    """Two iris flowers, as predict() takes them."""
    import pandas as pd

    return pd.DataFrame({"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0],
                         "petal_length": [1.4, 5.2], "petal_width": [0.2, 2.3]})


def test_nearest_centroid_honours_the_task_contract(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / ".zero2one"))
    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    case = Case(HERE / "centroid.yaml", inputs=rows,
                good=("POST", "/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}),
                bad=("POST", "/predict", {"rows": [[5.1]]}))
    assert check_task("nearest-centroid", case, tmp_path) == list(CHECKS)
