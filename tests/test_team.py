"""A team's shared tracking server: ``zero2one server start`` (MLflow on PostgreSQL, proxied
artifacts) and two workspaces that share nothing on disk — one trains, registers and moves an
alias, the other predicts by the alias and follows it, downloading each version once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import free_port, iris_recipe, wait_healthy
from .serving.conftest import ROW
from .serving.test_process import Server, call

POSTGRES = os.environ.get("ZERO2ONE_TEST_POSTGRES_URL")
pytestmark = pytest.mark.slow
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="needs PostgreSQL: ZERO2ONE_TEST_POSTGRES_URL (.ci/postgres starts one)")


class TrackingServer:
    """`zero2one server start` on 127.0.0.1 (its workspace ``home``); stop() and start()
    again on the same port and store."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home, self.args, self.env = home, args, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zero2one.cli.main", "server", "start", *self.args,
             "--port", str(self.port), "--workers", "1"],
            env={**os.environ, "ZERO2ONE_HOME": str(self.home), **self.env},
            stdout=subprocess.DEVNULL, stderr=(self.home / "server.log").open("ab"),
            start_new_session=True)
        wait_healthy(f"{self.url}/health", self.process, timeout=120, what="the tracking server")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A tracking server on its own PostgreSQL schema."""
    import sqlalchemy as sa

    if not POSTGRES:
        pytest.skip("needs PostgreSQL: ZERO2ONE_TEST_POSTGRES_URL (.ci/postgres starts one)")
    schema = f"mlflow_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES, pool_pre_ping=True)  # outlives a restart
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    tracking_server = TrackingServer(
        tmp_path / "server", "--backend-store-uri",
        f"{POSTGRES}?options=-csearch_path%3D{schema}")
    try:
        tracking_server.start()
        yield tracking_server.url
    finally:
        tracking_server.stop()
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def environment(home: Path, url: str | None, **more: str) -> dict[str, str]:
    env = {**os.environ, "ZERO2ONE_HOME": str(home / ".zero2one"), **more}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        if name not in more:
            env.pop(name, None)
    if url:
        env["MLFLOW_TRACKING_URI"] = url
    return env


def command(*args: str, home: Path, url: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zero2one.cli.main", *args], cwd=home,
                          env=environment(home, url, **env), capture_output=True, text=True,
                          timeout=300, check=False)


def zero2one(*args: str, home: Path, url: str | None = None, **env: str) -> Any:
    done = command(*args, home=home, url=url, **env)
    assert done.returncode == 0, done.stderr or done.stdout[-3000:]  # doctor says it there
    return done.stdout


def served_version(server: Server) -> str:
    return str(call(f"{server.url}/predict", {"features": ROW}, "k")[1]["model"]["version"])


@needs_postgres
@pytest.mark.slow(seconds=50)
def test_two_workspaces_share_one_server(server: str, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    bob.mkdir()
    recipe = iris_recipe(register="iris-team", track={"enabled": True})
    (alice / "r.yaml").write_text(yaml.safe_dump(recipe))
    first = json.loads(zero2one("train", "r.yaml", "--json", home=alice, url=server))
    assert first["registered_uri"] == "models:/iris-team/1"
    zero2one("models", "promote", "iris-team", "1", "--alias", "champion", home=alice, url=server)

    (bob / "rows.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n"
                                  "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    out = zero2one("predict", "models:/iris-team@champion", "--input", "rows.csv", home=bob,
                   url=server)
    assert [line.split(",")[-1] for line in out.strip().splitlines()[1:]] == [
        "setosa", "virginica"]
    cache = bob / ".zero2one" / "cache"
    (copy,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    stamp = copy.stat().st_mtime_ns
    zero2one("--tracking-uri", server, "predict", "models:/iris-team@champion", "--input",
             "rows.csv", home=bob)  # the flag instead of the variable; no second download
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [copy.name]
    assert copy.stat().st_mtime_ns == stamp
    assert not (bob / ".zero2one" / "mlflow.db").exists()  # nothing of bob's on disk is shared

    served = Server("models:/iris-team@champion", "--follow", "1", cwd=bob,
                    env=environment(bob, server, ZERO2ONE_API_KEY="k"))
    try:
        served.wait_ready()
        assert served_version(served) == "1"
        recipe["search"]["space"]["C"] = [0.5]  # another recipe: version 2
        (alice / "r.yaml").write_text(yaml.safe_dump(recipe))
        second = json.loads(zero2one("train", "r.yaml", "--json", home=alice, url=server))
        assert second["registered_uri"] == "models:/iris-team/2"
        zero2one("models", "promote", "iris-team", "2", "--alias", "champion", home=alice,
                 url=server)
        deadline = time.monotonic() + 60
        while served_version(served) != "2":  # bob's server follows the alias
            assert time.monotonic() < deadline, "the server did not follow the alias"
            time.sleep(0.5)
    finally:
        served.stop()
    zero2one("predict", "models:/iris-team@champion", "--input", "rows.csv", home=bob,
             url=server)
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2  # once each
    report = json.loads(zero2one("doctor", "--json", home=bob, url=server))
    store = next(c for c in report["checks"] if c["name"] == "store")
    assert store["status"] == "ok" and "answers" in store["detail"]


SLOW_RECIPE = {  # a few seconds of fitting: time for a server to go away meanwhile
    "task": "tabular-classification", "name": "digits-forest", "seed": 0,
    "data": {"source": "sklearn:digits"},
    "model": {"estimator": "random_forest", "params": {"n_estimators": 400}},
    "register": "digits-forest",
}


def wait_for_open_run(home: Path, process: subprocess.Popen[str]) -> str:
    """The id of the run ``process`` opened in workspace ``home`` (noted in open-runs/)."""
    from zero2one.tracking import OPEN_RUNS

    folder = home / ".zero2one" / OPEN_RUNS
    deadline = time.monotonic() + 60
    while not (folder.is_dir() and any(folder.iterdir())):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run was opened"
        time.sleep(0.05)
    return next(folder.iterdir()).name


@pytest.mark.slow(seconds=45)
def test_a_server_gone_mid_run_is_said_and_the_run_marked_failed_later(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    tracking_server = TrackingServer(tmp_path / "server")  # SQLite: no PostgreSQL needed
    tracking_server.start()
    alice = tmp_path / "alice"
    alice.mkdir()
    (alice / "r.yaml").write_text(yaml.safe_dump(SLOW_RECIPE))
    try:
        train = subprocess.Popen(
            [sys.executable, "-m", "zero2one.cli.main", "train", "r.yaml", "--quiet"],
            cwd=alice, env=environment(alice, tracking_server.url), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        run_id = wait_for_open_run(alice, train)
        tracking_server.stop(signal.SIGKILL)
        _, err = train.communicate(timeout=120)
        assert train.returncode == 1
        # killed between requests: refused; killed while answering one: broken mid-request
        gone = ("does not answer (connection refused, retried for about 15 s)",
                "stopped answering mid-request (connection broken)")
        assert err.strip().splitlines()[-1] in {
            f"error: the tracking store {tracking_server.url} {how}; is the server running?; "
            f"run {run_id} is marked failed by the next run started in this workspace once the "
            "store answers" for how in gone}, err

        tracking_server.start()  # back, with the run still RUNNING in its store
        client = MlflowClient(tracking_uri=tracking_server.url)
        assert client.get_run(run_id).info.status == "RUNNING"
        (alice / "r.yaml").write_text(yaml.safe_dump(iris_recipe(track={"enabled": True})))
        zero2one("train", "r.yaml", home=alice, url=tracking_server.url)
        left = client.get_run(run_id)
        assert left.info.status == "FAILED" and left.data.tags["zero2one.abandoned"] == "true"
        assert client.search_registered_models() == []  # nothing registered from it
    finally:
        tracking_server.stop()


@pytest.mark.slow(seconds=50)
def test_basic_auth_refuses_wrong_credentials_and_missing_permissions(tmp_path: Path) -> None:
    import urllib.request

    home = tmp_path / "server"
    refused = command("server", "start", "--auth", home=tmp_path,
                      ZERO2ONE_HOME=str(home), MLFLOW_AUTH_ADMIN_PASSWORD="")
    assert refused.returncode == 2
    assert "set MLFLOW_AUTH_ADMIN_PASSWORD to its password" in refused.stderr
    tracking_server = TrackingServer(home, "--auth",
                                     env={"MLFLOW_AUTH_ADMIN_PASSWORD": "admin-pass-1"})
    tracking_server.start()
    alice = tmp_path / "alice"
    alice.mkdir()
    (alice / "r.yaml").write_text(yaml.safe_dump(iris_recipe(register="iris-auth",
                                                             track={"enabled": True})))
    try:
        wrong = command("train", "r.yaml", home=alice, url=tracking_server.url,
                        MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="nope")
        assert wrong.returncode == 2
        assert wrong.stderr.strip() == (
            f"error: {tracking_server.url} refused the credentials (HTTP 401): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of the server")
        assert not (alice / ".zero2one" / "open-runs").exists() or not any(
            (alice / ".zero2one" / "open-runs").iterdir())
        doctor = command("doctor", "--json", home=alice, url=tracking_server.url,
                         MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="nope")
        assert doctor.returncode == 1
        store = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "store")
        assert store["status"] == "fail" and "refuses the credentials (HTTP 401)" in store[
            "detail"]
        admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "admin-pass-1"}
        zero2one("train", "r.yaml", home=alice, url=tracking_server.url, **admin)
        store = next(c for c in json.loads(zero2one(
            "doctor", "--json", home=alice, url=tracking_server.url, **admin))["checks"]
            if c["name"] == "store")
        assert store["status"] == "ok"

        request = urllib.request.Request(  # a user who may read, not write
            f"{tracking_server.url}/api/2.0/mlflow/users/create", method="POST",
            data=json.dumps({"username": "bob", "password": "bob-password-1"}).encode(),
            headers={"content-type": "application/json",
                     "authorization": "Basic YWRtaW46YWRtaW4tcGFzcy0x"})  # admin:admin-pass-1
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        bob = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bob-password-1"}
        assert "iris-auth" in zero2one("models", "list", home=alice, url=tracking_server.url,
                                       **bob)
        denied = command("models", "promote", "iris-auth", "1", home=alice,
                         url=tracking_server.url, **bob)
        assert denied.returncode == 2
        assert denied.stderr.strip() == (
            f"error: {tracking_server.url}: bob may not set registered model alias (HTTP 403); "
            "an admin of the server grants permissions")
    finally:
        tracking_server.stop()
    assert oct((home / "server-auth.ini").stat().st_mode & 0o777) == "0o600"


def _pg_restart() -> list[str] | None:
    """The command that restarts this machine's PostgreSQL (Debian's), where this user may."""
    import shutil

    if not POSTGRES or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    versions = sorted(Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() \
        else []
    return ["pg_ctlcluster", versions[-1].name, "main", "restart"] if versions else None


@needs_postgres
def test_postgresql_restarted_during_a_train(server: str, tmp_path: Path) -> None:
    """The server's pool reconnects and the client retries: the run finishes and its model is
    registered once, complete."""
    restart = _pg_restart()
    if restart is None:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster (Debian's package)")
    alice = tmp_path / "alice"
    alice.mkdir()
    (alice / "r.yaml").write_text(yaml.safe_dump(SLOW_RECIPE))
    train = subprocess.Popen(
        [sys.executable, "-m", "zero2one.cli.main", "train", "r.yaml", "--json"],
        cwd=alice, env=environment(alice, server), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    run_id = wait_for_open_run(alice, train)
    subprocess.run(restart, check=True, capture_output=True, timeout=120)
    out, err = train.communicate(timeout=300)
    assert train.returncode == 0, err
    result = json.loads(out)
    assert result["run_id"] == run_id and result["registered_uri"] == "models:/digits-forest/1"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server)
    assert client.get_run(run_id).info.status == "FINISHED"
    (version,) = client.search_model_versions("name='digits-forest'")
    assert version.run_id == run_id
    scored = zero2one("predict", "models:/digits-forest/1", "--input", "rows.csv",
                      home=_digits_rows(tmp_path / "bob"), url=server)
    assert len(scored.strip().splitlines()) == 3


def _digits_rows(home: Path) -> Path:
    from sklearn.datasets import load_digits

    home.mkdir()
    load_digits(as_frame=True).frame.drop(columns="target").head(2).to_csv(
        home / "rows.csv", index=False)
    return home
