"""notebooks/: each one runs top to bottom in a real Jupyter kernel (nbclient + ipykernel), and
the Python API shows itself there — a result as an HTML table with its plots, images inline."""

from __future__ import annotations

from pathlib import Path

import pytest

from zero2one.api import train
from zero2one.progress import NullReporter, default_reporter

from .conftest import REPO, iris_recipe, reader_clone

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# what the test changes so that every notebook runs in a minute or two: (as written, run as)
SMALL = [('"train.steps=300"', '"train.steps=4", "train.batch_size=8", "train.sample_every=2", '
          '"train.checkpoint_every=2", "sample.steps=2"'),
         ('"train.max_steps=4", "eval.samples=1", "eval.sample_tokens=16"',
          '"train.max_steps=2", "eval.samples=1", "eval.sample_tokens=4"')]


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

    clone = reader_clone(tmp_path)  # run as a reader runs it: in the clone, no settings
    monkeypatch.delenv("ZERO2ONE_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notebook = nbformat.read(clone / "notebooks" / path.name, as_version=4)
    for cell in notebook.cells:
        for written, small in SMALL:
            cell.source = cell.source.replace(written, small)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(clone / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the CLI's store at the project's root, not one of the notebooks' own
    assert (clone / ".zero2one" / "mlflow.db").is_file()
    assert not (clone / "notebooks" / ".zero2one").exists()
    warnings = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "IProgress not found" not in warnings and "ipywidgets" not in warnings, warnings
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in outputs)  # progress bars, drawn as widgets
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("held-out metric" in page for page in html)  # the train result, as a table
    if path.stem == "image-generation":
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # drawn inline


def test_the_readme_notebook_step_is_installed() -> None:
    """`jupyter lab notebooks/` works after the README's set-up: JupyterLab and ipywidgets (for
    the progress bars) come with the notebook extra, which make setup installs."""
    import importlib.util
    import subprocess
    import sys

    lab = Path(sys.executable).parent / "jupyter-lab"
    assert lab.is_file(), "jupyter-lab is not installed (the notebook extra)"
    assert importlib.util.find_spec("ipywidgets") is not None
    done = subprocess.run([str(lab), "--version"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip()[0].isdigit(), done.stderr


def test_a_notebook_shares_the_projects_workspace(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """In a git working tree the workspace is the nearest .zero2one up to the top, else the
    top's: notebooks/ and the project's root use one store."""
    import subprocess

    from zero2one.tracking import workspace

    monkeypatch.delenv("ZERO2ONE_HOME", raising=False)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.chdir(project / "notebooks")
    assert workspace() == project / ".zero2one"
    (project / "notebooks" / ".zero2one").mkdir()  # one made there on purpose: kept
    assert workspace() == project / "notebooks" / ".zero2one"
    outside = tmp_path / "loose"
    outside.mkdir()
    monkeypatch.chdir(outside)  # not in git: the working directory's, as before
    assert workspace() == outside / ".zero2one"
    monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / "home"))
    assert workspace() == tmp_path / "home"
