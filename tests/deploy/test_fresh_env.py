"""Each task's Docker build context, installed the way its Dockerfile says into a fresh virtual
environment (no Docker engine here: the RUN, ENV and CMD lines are replayed on this machine),
serves its model: the requirements a task declares are enough, and nothing comes from the
development environment."""

from __future__ import annotations

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

pytestmark = pytest.mark.slow


def replay(dockerfile: str, ctx: Path, venv: Path) -> tuple[list[str], dict[str, str]]:
    """Run the Dockerfile's ``RUN pip install`` lines with the venv's pip (torch's wheel index
    dropped: this machine's disk has the CPU build); returns the CMD and the ENV values, with
    /app mapped to the build context."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)  # join continuation lines
    env: dict[str, str] = {}
    command: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "RUN" and rest.startswith("pip install"):
            args = shlex.split(rest)[2:]
            if "--index-url" in args:
                at = args.index("--index-url")
                del args[at: at + 2]
            done = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q",
                                   "--disable-pip-version-check", *args], cwd=ctx,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value.replace("/app", str(ctx))
        elif word == "CMD":
            command = [part.replace("/app", str(ctx)) for part in json.loads(rest)]
    return command, env


@pytest.mark.parametrize("name", task_names())
def test_build_context_serves_from_a_fresh_environment(name: str, trained: Any,
                                                       tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    render_docker(str(trained(name).directory), ctx, workers=1)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    command, image_env = replay((ctx / "Dockerfile").read_text(), ctx, venv)
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
