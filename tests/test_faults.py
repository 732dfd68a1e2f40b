"""Faults a machine really has, made real: a full disk while a model is saved and registered, a
tracking store locked by another process, a tracked train killed with SIGKILL, and SIGTERM while
streams are open. Each leaves no half-written model, no half-registered version and no silent
loss, and says what happened in one line. (kill -9 and --resume of each task's training are in
the task tests; a tampered model file in test_common.)"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import iris_recipe
from .serving.test_process import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills (ENOSPC). Needs root (CI is); skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until ``leave`` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def zero2one(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zero2one.cli.main", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_a_full_disk_while_saving_leaves_no_half_model(small_disk: Path, workspace: Path) -> None:
    from zero2one.api import train

    fill(small_disk, leave=2048)  # the manifest fits, the pipeline does not
    with pytest.raises(OSError) as raised:
        train(iris_recipe(), out=small_disk / "model")
    assert "No space left on device" in str(raised.value)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no half model, no temp


def test_a_full_disk_under_the_store_registers_nothing(small_disk: Path, tmp_path: Path) -> None:
    """The workspace's store (SQLite and artifacts) on the full disk: the command fails in one
    line, and the registry holds no version of the model."""
    home = small_disk / ".zero2one"
    recipe = tmp_path / "iris.yaml"
    recipe.write_text(yaml.safe_dump({**iris_recipe(), "track": {"enabled": True},
                                      "register": "iris-full"}))
    env = {"ZERO2ONE_HOME": str(home)}
    ready = zero2one("runs", "list", cwd=tmp_path, env=env)  # creates the store
    assert ready.returncode == 0, ready.stderr
    fill(small_disk, leave=64 * 1024)  # the run starts; its model does not fit
    done = zero2one("train", str(recipe), cwd=tmp_path, env=env)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()
    assert message and "No space left on device" in message[-1], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (small_disk / "filler").unlink()
    listed = zero2one("models", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "iris-full" not in listed.stdout


def test_a_locked_tracking_store_is_waited_for_then_said(workspace: Path) -> None:
    """Another process holds the SQLite store's write lock: a train waits for it (SQLite's busy
    timeout, 5 s) and carries on when it is released in time; held longer, the command says
    so in one line."""
    recipe = workspace / "iris.yaml"
    recipe.write_text(yaml.safe_dump({**iris_recipe(), "track": {"enabled": True}}))
    store = workspace / ".zero2one" / "mlflow.db"

    def hold(seconds: float, release: threading.Event) -> threading.Thread:
        ready = threading.Event()

        def run() -> None:
            connection = sqlite3.connect(store, timeout=1, isolation_level=None)
            connection.execute("BEGIN EXCLUSIVE")
            ready.set()
            release.wait(seconds)
            connection.execute("ROLLBACK")
            connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        assert ready.wait(10)
        return thread

    release = threading.Event()
    holder = hold(4, release)  # released within the wait: the train goes through
    done = zero2one("train", str(recipe), cwd=workspace)
    holder.join()
    assert done.returncode == 0, done.stderr[-2000:]

    release = threading.Event()
    holder = hold(120, release)  # held past the wait: one clear line
    done = zero2one("train", str(recipe), cwd=workspace, timeout=120)
    release.set()
    holder.join()
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "is locked by another process" in last, done.stderr[-2000:]


def test_a_tracked_train_killed_mid_run_registers_nothing(workspace: Path) -> None:
    """SIGKILL while the search runs: no model directory, no registered version; the run is
    left unfinished, and the next train registers version 1."""
    cfg = {**iris_recipe(), "track": {"enabled": True}, "register": "iris-killed",
           "search": {"method": "grid", "space": {"C": [0.01, 0.1, 1, 10, 100] * 40}, "cv": 5}}
    recipe = workspace / "iris.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    process = subprocess.Popen([sys.executable, "-m", "zero2one.cli.main", "train", str(recipe),
                                "--out", str(workspace / "killed")], cwd=workspace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    from zero2one import tracking

    deadline = time.monotonic() + 120
    while not tracking.client().search_runs(
            [tracking.client().get_experiment_by_name("iris-test").experiment_id]
            if tracking.client().get_experiment_by_name("iris-test") else ["0"]):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # inside the search
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (workspace / "killed").exists()
    assert tracking.client().search_registered_models(filter_string="name='iris-killed'") == []
    cfg["search"] = {"method": "none"}
    recipe.write_text(yaml.safe_dump(cfg))
    done = zero2one("train", str(recipe), cwd=workspace)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "models:/iris-killed/1" in done.stdout


def test_sigterm_lets_open_streams_finish() -> None:
    """Streams open when the server is told to stop end properly: each with [DONE], none cut
    off mid-way (SmolLM2 on the CPU: the streams are still going when SIGTERM comes)."""
    server = Server("builtin:smollm2-135m-instruct", "--graceful-seconds", "120")
    server.wait_ready(timeout=180)
    results: list[tuple[float, list[str]]] = []
    started = [threading.Event() for _ in range(3)]

    def stream(opened: threading.Event) -> None:
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 48, "stream": True,
                           "temperature": 0.8, "seed": 1}).encode()
        request = urllib.request.Request(f"{server.url}/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
        events: list[str] = []
        try:
            with urllib.request.urlopen(request, timeout=150) as answer:
                for line in answer:
                    if line.startswith(b"data: "):
                        events.append(line[6:].strip().decode())
                        opened.set()
        except OSError as exc:
            events.append(f"broken: {exc}")
        results.append((time.monotonic(), events))

    try:
        threads = [threading.Thread(target=stream, args=(e,)) for e in started]
        for thread in threads:
            thread.start()
        assert all(e.wait(120) for e in started)  # every stream has sent something
        sent = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=180)
        assert server.process.wait(timeout=150) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert len(results) == 3
    assert any(ended > sent for ended, _ in results)  # open when the server was told to stop
    for _, events in results:
        assert events and events[-1] == "[DONE]", events[-3:]
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
