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


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80


def sizes(root: Path) -> tuple[list[str], list[str]]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES under ``root``:
    a function's body, its docstring included (a CLI command's signature is its table of
    options, often 40 lines)."""
    import ast

    modules, functions = [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(root).as_posix()
        if text.count("\n") > MAX_MODULE_LINES:
            modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    (node.end_lineno or 0) - node.body[0].lineno + 1 > MAX_FUNCTION_LINES:
                functions.append(f"{name}:{node.lineno} {node.name}")
    return modules, functions


def test_modules_and_functions_stay_short(tmp_path: Path) -> None:
    """No module in src/ over 500 lines, no function body over 80 (the literals — the
    playground's page, manifests — live in files of their own); long ones are found."""
    assert sizes(REPO / "src") == ([], [])
    long = tmp_path / "long.py"
    long.write_text("def short(\n" + "    x: int = 1,\n" * 60 + ") -> None:\n"
                    + "    x = 1\n" * MAX_FUNCTION_LINES + "\n\ndef long() -> None:\n"
                    + "    x = 1\n" * (MAX_FUNCTION_LINES + 1))
    assert sizes(tmp_path) == ([], ["long.py:145 long"])
    long.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert sizes(tmp_path) == (["long.py"], [])
