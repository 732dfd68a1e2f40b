import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from zero2one.api import train

from .conftest import free_port, iris_recipe, wait_healthy


@pytest.mark.slow
def test_ui_serves_the_runs_of_the_workspace(workspace: Path) -> None:
    result = train(iris_recipe(track={"enabled": True, "experiment": "ui"}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "zero2one.cli.main", "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", process, timeout=90, what="the UI")
        request = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/runs/search", method="POST",
            data=json.dumps({"experiment_ids": ["1"]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert [r["info"]["run_id"] for r in runs] == [result.run_id]
        url = f"{base}/get-artifact?path=model/manifest.json&run_uuid={result.run_id}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.load(response)["task"] == "tabular-classification"
        # Ctrl-C reaches zero2one alone (the server runs in a process group of its own): it
        # must end the server and every process the server started
        group = _children(process.pid)
        assert group, "the MLflow server runs as a child"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        time.sleep(0.5)
        assert [pid for pid in group if _alive(pid)] == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
