"""Each task's Docker build context, installed the way its Dockerfile says into a fresh virtual
environment (no Docker engine here: the RUN, ENV and CMD lines are replayed on this machine),
serves its model: the requirements a task declares are enough, and nothing comes from the
development environment. Tasks whose images install the same requirements share one
environment (built by the first of them; the others install only their own zero2one and
packages, as their image would): the requirements are what it checks, and they are the same."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zero2one.catalog import task_names
from zero2one.deploy import render_docker

from ..cases import CASES
from ..serving.test_process import Server, call

# one worker runs them all (pytest -n: --dist loadgroup), so environments are shared
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh-environments")]

_ENVIRONMENTS: dict[str, Path] = {}  # requirement set -> its virtual environment


def _local(args: list[str]) -> bool:
    """A ``pip install --no-deps ./DIR`` of the build context: zero2one itself, a package."""
    return "--no-deps" in args and any(a.startswith("./") for a in args)


def requirement_set(dockerfile: str, ctx: Path) -> str:
    """What the image installs from indexes: its pip lines but the local ones, and the
    requirements file they name."""
    lines = [line for line in _pip_lines(dockerfile) if not _local(shlex.split(line))]
    files = [(ctx / a).read_text() for line in lines for a in shlex.split(line)
             if (ctx / a).is_file()]
    return hashlib.sha256("\n".join([*lines, *files]).encode()).hexdigest()[:16]


def _pip_lines(dockerfile: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", dockerfile)  # join continuation lines
    return [line.partition(" ")[2] for line in text.splitlines()
            if line.startswith("RUN pip install")]


def replay(dockerfile: str, ctx: Path, venv: Path, *,
           local_only: bool = False) -> tuple[list[str], dict[str, str]]:
    """Run the Dockerfile's ``RUN pip install`` lines into the venv (torch's wheel index
    dropped: this machine's disk has the CPU build; no byte-compiling, which changes nothing
    installed); returns the CMD and the ENV values, with /app mapped to the build context.
    ``local_only``: the environment has the requirements; install the context's own
    packages."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)  # join continuation lines
    env: dict[str, str] = {}
    command: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "RUN" and rest.startswith("pip install"):
            args = shlex.split(rest)[2:]
            if local_only and not _local(args):
                continue
            if "--index-url" in args:
                at = args.index("--index-url")
                del args[at: at + 2]
            pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python")]
            done = subprocess.run([*pip, "install", "-q", "--disable-pip-version-check",
                                   "--no-compile", *args], cwd=ctx, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value.replace("/app", str(ctx))
        elif word == "CMD":
            command = [part.replace("/app", str(ctx)) for part in json.loads(rest)]
    return command, env


@pytest.mark.parametrize("name", task_names())
def test_build_context_serves_from_a_fresh_environment(
        name: str, trained: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = tmp_path / "ctx"
    render_docker(str(trained(name).directory), ctx, workers=1)
    dockerfile = (ctx / "Dockerfile").read_text()
    key = requirement_set(dockerfile, ctx)
    venv = _ENVIRONMENTS.get(key)
    if venv is None:
        venv = tmp_path_factory.mktemp("venv")
        # no pip of its own (2-3 s a venv): this pip installs into it, ``pip --python``
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)],
                       check=True, timeout=120)
        command, image_env = replay(dockerfile, ctx, venv)
        _ENVIRONMENTS[key] = venv
    else:
        command, image_env = replay(dockerfile, ctx, venv, local_only=True)
    assert command[:3] == ["zero2one", "serve", str(ctx / "model")]
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "ZERO2ONE_HOME") if k in os.environ}

    def argv(port: int) -> list[str]:
        line = [str(venv / "bin/zero2one"), *command[1:]]
        line[line.index("--host") + 1] = "127.0.0.1"
        line[line.index("--port") + 1] = str(port)
        return line

    server = Server("", command=argv, env={**keep, **image_env}, cwd=tmp_path)
    try:
        server.wait_ready(timeout=120)
        _post, path, body = CASES[name].good  # call() posts a JSON body
        status, answer = call(f"{server.url}{path}", body)
        assert status == 200, answer
        assert answer
    finally:
        server.stop()
