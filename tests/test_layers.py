"""The core's layers (pyproject.toml's import-linter contract; shared/DESIGN.md): kept by the
code as it is, and broken by an upward import — one inside a function counts too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_layers_are_kept() -> None:
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def test_an_upward_import_inside_a_function_breaks_them(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    (copy / "src").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", copy)
    shutil.copytree(REPO / "src" / "zero2one", copy / "src" / "zero2one",
                    ignore=shutil.ignore_patterns("__pycache__"))
    paths = copy / "src" / "zero2one" / "paths.py"  # a leaf reaching up to the API
    paths.write_text(paths.read_text() + "\n\ndef _train_from_here() -> None:\n"
                     "    from zero2one.api import train\n\n    train({})\n")
    done = lint(copy)
    assert done.returncode != 0
    assert "zero2one.paths -> zero2one.api" in done.stdout, done.stdout[-3000:]
