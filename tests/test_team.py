"""A team's shared tracking server: ``zero2one server start`` (MLflow on PostgreSQL, proxied
artifacts) and two workspaces that share nothing on disk — one trains, registers and moves an
alias, the other predicts by the alias and follows it, downloading each version once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import free_port, iris_recipe, wait_healthy

POSTGRES = os.environ.get("ZERO2ONE_TEST_POSTGRES_URL")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not POSTGRES, reason="needs PostgreSQL: ZERO2ONE_TEST_POSTGRES_URL (.ci/postgres starts one)")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`zero2one server start` on 127.0.0.1 with its own PostgreSQL schema."""
    import sqlalchemy as sa

    assert POSTGRES is not None
    schema = f"mlflow_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    port = free_port()
    home = tmp_path / "server"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zero2one.cli.main", "server", "start", "--backend-store-uri",
         f"{POSTGRES}?options=-csearch_path%3D{schema}", "--port", str(port), "--workers", "1"],
        env={**os.environ, "ZERO2ONE_HOME": str(home)}, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/health", proc, timeout=120, what="the tracking server")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def zero2one(*args: str, home: Path, url: str | None = None) -> Any:
    env = {**os.environ, "ZERO2ONE_HOME": str(home / ".zero2one")}
    env.pop("MLFLOW_TRACKING_URI", None)
    if url:
        env["MLFLOW_TRACKING_URI"] = url
    done = subprocess.run([sys.executable, "-m", "zero2one.cli.main", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


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

    recipe["search"]["space"]["C"] = [0.5]  # another recipe: version 2
    (alice / "r.yaml").write_text(yaml.safe_dump(recipe))
    second = json.loads(zero2one("train", "r.yaml", "--json", home=alice, url=server))
    assert second["registered_uri"] == "models:/iris-team/2"
    zero2one("models", "promote", "iris-team", "2", "--alias", "champion", home=alice, url=server)
    zero2one("predict", "models:/iris-team@champion", "--input", "rows.csv", home=bob,
             url=server)
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2  # followed
    report = json.loads(zero2one("doctor", "--json", home=bob, url=server))
    store = next(c for c in report["checks"] if c["name"] == "store")
    assert store["status"] == "ok" and "answers" in store["detail"]
