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

from .conftest import free_port, iris_recipe


@pytest.mark.slow
def test_ui_serves_the_runs_of_the_workspace(workspace: Path) -> None:
    result = train(iris_recipe(track={"enabled": True, "experiment": "ui"}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "zero2one.cli.main", "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, "the UI exited"
            assert time.monotonic() < deadline, "the UI did not come up in 90 s"
            time.sleep(0.5)
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
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and any workers it started
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
