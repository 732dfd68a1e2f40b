"""notebooks/: each one runs top to bottom in a real Jupyter kernel (nbclient + ipykernel), and
the Python API shows itself there — a result as an HTML table with its plots, images inline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zero2one.api import train
from zero2one.progress import NullReporter, default_reporter

from .conftest import REPO, iris_recipe

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# what the test changes so that every notebook runs in a minute or two: (as written, run as)
SMALL = [('"train.steps=300"', '"train.steps=4", "train.batch_size=8", "train.sample_every=2", '
          '"train.checkpoint_every=2", "sample.steps=2"')]


def test_every_task_has_a_notebook() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"tabular", "image-classification",
                                            "text-generation", "image-generation"}


def test_notebooks_are_committed_without_outputs() -> None:
    import nbformat

    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") and cell.get("execution_count") is None
                   for cell in notebook.cells if cell.cell_type == "code"), path.name


def test_the_small_settings_still_match_the_notebooks() -> None:
    text = "".join(p.read_text() for p in NOTEBOOKS)
    for written, _ in SMALL:
        assert written.replace('"', '\\"') in text, f"{written} is no longer in a notebook"


def test_a_result_shows_itself_in_html(workspace: Path) -> None:
    tracked = train(iris_recipe(track={"enabled": True}, register="iris-html"))
    page = tracked._repr_html_()
    assert "<table>" in page and "held-out metric" in page
    assert f"{tracked.metrics['accuracy']:.4g}" in page and "models:/iris-html/1" in page
    assert page.count("<img ") >= 2  # the run's plots: confusion matrix, ROC, ...
    untracked = train(iris_recipe(), out=workspace / "model")
    assert untracked._repr_html_().count("<img ") >= 2  # from the model's report/


def test_outside_a_notebook_the_api_stays_quiet() -> None:
    assert isinstance(default_reporter(), NullReporter)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    for folder in ("notebooks", "recipes", "examples"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / "notebooks" / ".zero2one"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notebook = nbformat.read(tmp_path / "notebooks" / path.name, as_version=4)
    for cell in notebook.cells:
        for written, small in SMALL:
            cell.source = cell.source.replace(written, small)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("held-out metric" in page for page in html)  # the train result, as a table
    if path.stem == "image-generation":
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # drawn inline
