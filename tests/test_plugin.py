"""A task from another package (examples/plugin-task, installed by the set-up) goes the whole
way — train, models list, predict from the CLI and Python, serve, deploy — through its entry
point alone: nothing under src/ names it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .conftest import REPO
from .deploy.test_render import K8S_VERSION, hadolint
from .serving.test_process import Server, call

RECIPE = REPO / "examples/plugin-task/centroid.yaml"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zero2one.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_no_source_module_names_the_plugin() -> None:
    for path in (REPO / "src").rglob("*.py"):
        text = path.read_text()
        assert "nearest-centroid" not in text and "zero2one_centroid" not in text, path


def test_code_outside_tasks_names_no_task() -> None:
    """The core — server, CLI, API, deployment, tracking... — goes through the tasks'
    declarations: no module outside tasks/ names one."""
    from zero2one.catalog import task_names

    src = REPO / "src/zero2one"
    paths = [path for path in src.rglob("*.py") if "tasks" not in path.relative_to(src).parts]
    for path in paths:
        text = path.read_text()
        for name in task_names():
            assert name not in text, f"{path.relative_to(REPO)} names the task {name}"
        assert "zero2one.tasks." not in text, f"{path.relative_to(REPO)} imports a task package"


@pytest.mark.slow
def test_plugin_task_end_to_end(workspace: Path) -> None:
    trained = cli("train", str(RECIPE), "--json", cwd=workspace)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["task"] == "nearest-centroid" and result["metrics"]["accuracy"] > 0.8
    ref = "models:/iris-centroid/latest"

    listed = cli("models", "list", "--json", cwd=workspace)
    assert listed.returncode == 0, listed.stderr
    assert "iris-centroid" in {m["name"] for m in json.loads(listed.stdout)}

    scored = cli("predict", ref, "--input", str(REPO / "examples/flowers.csv"), "--json",
                 cwd=workspace)
    assert scored.returncode == 0, scored.stderr
    rows = json.loads(scored.stdout)
    assert rows and {r["prediction"] for r in rows} <= {"setosa", "versicolor", "virginica"}
    refused = cli("predict", ref, "--input", str(REPO / "examples/flowers.csv"), "--top-k", "2",
                  cwd=workspace)
    assert refused.returncode == 2 and "do not apply to a nearest-centroid model" in \
        refused.stderr

    import zero2one

    frame = zero2one.predict_file(ref, REPO / "examples/flowers.csv")
    assert list(frame["prediction"]) == [r["prediction"] for r in rows]

    server = Server(ref)
    try:
        server.wait_ready()
        status, body = call(f"{server.url}/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]})
        assert status == 200 and body["result"] == ["setosa"], body
        status, body = call(f"{server.url}/predict", {"rows": "nope"})
        assert status == 422 and "rows" in body["error"]["message"]
        status, body = call(f"{server.url}/v1/centroids")
        assert status == 200 and set(body["centroids"]) == {"setosa", "versicolor", "virginica"}
    finally:
        assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown

    docker = cli("deploy", "docker", ref, "--out", str(workspace / "ctx"), cwd=workspace)
    assert docker.returncode == 0, docker.stderr
    requirements = (workspace / "ctx/requirements.txt").read_text()
    assert "numpy==" in requirements and "torch" not in requirements
    assert "scikit-learn" not in requirements  # the plugin needs only numpy
    dockerfile = (workspace / "ctx/Dockerfile").read_text()  # and its own package, from here
    assert "pip install --no-cache-dir --no-deps ./packages/zero2one-centroid" in dockerfile
    assert (workspace / "ctx/packages/zero2one-centroid/pyproject.toml").exists()
    lint = subprocess.run([hadolint(), str(workspace / "ctx/Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    k8s = cli("deploy", "k8s", ref, "--out", str(workspace / "k8s"), cwd=workspace)
    assert k8s.returncode == 0, k8s.stderr
    for path in sorted((workspace / "k8s").glob("*.yaml")):
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), K8S_VERSION, strict=True)


def test_a_broken_command_plugin_leaves_the_cli_working(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from zero2one import catalog

    broken = metadata.EntryPoint("broken", "no_such_module_z21:app", catalog.COMMAND_GROUP)
    points = {**catalog._entry_points(catalog.COMMAND_GROUP), "broken": broken}
    monkeypatch.setattr(catalog, "_entry_points", lambda group: points)
    found = catalog.commands()
    assert "broken" not in found and "generate" in found
