"""The suite's own machinery, which ``make test``'s time depends on and which fails silently
when it breaks: tests of one ``xdist_group`` run in one worker (the fresh-environment tests
share virtual environments that way), and the guide test's commands run from the zygote as
the program runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GROUPED = """
import os
from pathlib import Path

import pytest


@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    Path(f"worker-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_xdist_groups_share_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # xdist alone: a faster start
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "xdist.plugin", "-n", "3",
                           "--dist", "loadgroup", "-p", "no:cacheprovider", "test_grouped.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:]
    workers = {(tmp_path / f"worker-{i}").read_text() for i in range(6)}
    assert len(workers) == 1, f"one group ran in {sorted(workers)} (pytest {pytest.__version__})"


def test_zygote_commands_run_as_the_program_does(tmp_path: Path) -> None:
    """The guide test's ``zero2one`` (tests/zygote.py): the command sees its arguments, working
    directory and environment, writes to its own streams, and exits as the command did."""
    from .zygote import Zygote

    env = {**os.environ, "ZERO2ONE_HOME": str(tmp_path / ".zero2one")}
    with Zygote(env, tmp_path, warm=["zero2one.cli.main"]) as zygote:
        (tmp_path / "here").mkdir()
        (tmp_path / "here" / "rows.csv").write_text("a,b\n1,x\n2,y\n")

        def shell(line: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["bash", "-c", line], cwd=tmp_path / "here", env=zygote.env,
                                  capture_output=True, text=True, timeout=120, check=False)

        done = shell("command -v zero2one && zero2one data profile rows.csv --json")
        assert done.returncode == 0, done.stderr
        where, _, printed = done.stdout.partition("\n")
        assert where == str(zygote.bin / "zero2one")  # the zygote's client answered
        assert json.loads(printed)["rows"] == 2  # read in the shell's working directory
        done = shell("zero2one data profile missing.csv")
        assert done.returncode != 0 and "missing.csv" in done.stdout + done.stderr
        assert shell("zero2one no-such-command").returncode == 2
