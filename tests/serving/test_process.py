"""The real server process: CLI start-up errors, graceful shutdown, hot swap (the fuzzing of its
OpenAPI schema is in test_fuzz.py). Everything targets 127.0.0.1 and ends by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import free_port
from .conftest import ROW

pytestmark = pytest.mark.slow


def call(url: str, body: object | None = None, key: str | None = None,
         timeout: float = 10) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"content-type": "application/json"})
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class Server:
    """``zero2one serve MODEL ARGS`` on a free port; ``command`` (given the port) replaces the
    command line, and ``env`` the environment, for servers started another way."""

    def __init__(self, model: str, *args: str, env: dict[str, str] | None = None,
                 command: Callable[[int], list[str]] | None = None,
                 cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = (command(self.port) if command is not None else
                [sys.executable, "-m", "zero2one.cli.main", "serve", model, "--port",
                 str(self.port), *args])
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
            env=env if command is not None and env is not None else {**os.environ, **(env or {})},
            start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.process.stdout.read()}")
            try:
                if call(f"{self.url}/readyz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("server not ready in time")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def server(iris_model: Path) -> Iterator[Server]:
    s = Server(str(iris_model), "--batch-max-wait-ms", "1000")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def test_bad_reference_fails_fast_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "zero2one.cli.main", "serve",
                           str(tmp_path / "missing")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: model") and "not found" in done.stderr


def test_sigterm_lets_requests_in_flight_finish(server: Server) -> None:
    """With a 1 s batching wait, a request is in flight when SIGTERM arrives; it still gets
    its answer, and the process exits cleanly."""
    result: dict[str, object] = {}

    def slow_call() -> None:
        result["answer"] = call(f"{server.url}/predict", {"features": ROW})

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.4)
    os.killpg(server.process.pid, signal.SIGTERM)
    thread.join(timeout=30)
    assert result["answer"][0] == 200 and result["answer"][1]["result"] == [0]
    # uvicorn re-raises the signal once shut down, so "killed by SIGTERM" is a clean exit here
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_hot_swap_follows_the_alias_without_dropping_requests(workspace: Path) -> None:
    from zero2one import tracking
    from zero2one.api import train

    from ..conftest import iris_recipe

    recipe = iris_recipe(track={"enabled": True}, register="swap")
    train(recipe)
    train({**recipe, "seed": 3})
    tracking.set_alias("swap", "champion", "1")
    s = Server("models:/swap@champion", env={"ZERO2ONE_API_KEY": "k"})
    try:
        s.wait_ready()
        assert call(f"{s.url}/predict", {"features": ROW}, "k")[1]["model"]["version"] == "1"
        tracking.set_alias("swap", "champion", "2")
        codes: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                codes.append(call(f"{s.url}/predict", {"features": ROW}, "k")[0])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        status, body = call(f"{s.url}/admin/reload", {}, "k")
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert status == 200
        assert (body["previous"]["version"], body["current"]["version"]) == ("1", "2")
        assert codes and set(codes) == {200}
        assert call(f"{s.url}/predict", {"features": ROW}, "k")[1]["model"]["version"] == "2"
        assert call(f"{s.url}/admin/reload", {})[0] == 401
    finally:
        assert s.stop() in (0, -signal.SIGTERM)
    assert "hot swap: swap version 1 -> version 2" in s.process.stdout.read()  # logged
