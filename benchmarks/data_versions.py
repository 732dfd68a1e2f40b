"""What data versioning costs, against the same steps without it, in one run.

In a temporary git repository with a CSV of ``--rows`` rows (about 23 MiB at the default), each
command in a fresh process (the CLI as a user runs it), ``--repeat`` times, median wall time:

- ``zero2one data add`` of the file (DVC init, add, push to the workspace's remote, commit)
  beside the plain ``git add`` + ``git commit`` of the same file;
- ``zero2one train`` of a small tabular recipe on the DVC-versioned file beside the same train
  on an unversioned copy (the difference: recording the git and DVC versions, one
  ``dvc status``);
- ``zero2one reproduce`` of that run (worktree, DVC checkout from the cache, the train)
  beside the train alone.

    python benchmarks/data_versions.py [--rows 150000 --repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ZERO2ONE = [sys.executable, "-m", "zero2one.cli.main"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return took, done.stdout


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(root: Path, rows: int) -> Path:
    import numpy as np
    import pandas as pd

    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "bench@example.com")
    git(root, "config", "user.name", "bench")
    (root / ".gitignore").write_text(".zero2one/\n")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["target"] = (frame["x0"] + frame["x1"] > 0).astype(int)
    (root / "data").mkdir()
    frame.to_csv(root / "data" / "table.csv", index=False)
    for name in ("versioned", "plain"):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({
            "task": "tabular-classification", "name": f"bench-{name}", "seed": 0,
            "data": {"source": f"data/{'table' if name == 'versioned' else 'copy'}.csv",
                     "target": "target"},
            "model": {"estimator": "logistic_regression"}}))
    git(root, "add", ".gitignore", "versioned.yaml", "plain.yaml")
    git(root, "commit", "-qm", "recipes")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            repo = make_repo(Path(tmp) / f"repo{i}", args.rows)
            env = {**os.environ, "ZERO2ONE_HOME": str(repo / ".zero2one")}
            env.pop("MLFLOW_TRACKING_URI", None)
            size = (repo / "data" / "table.csv").stat().st_size
            (repo / "data" / "copy.csv").write_bytes((repo / "data" / "table.csv").read_bytes())
            start = time.perf_counter()
            git(repo, "add", "data/copy.csv")
            git(repo, "commit", "-qm", "copy in git")
            results.setdefault("git add + commit", []).append(time.perf_counter() - start)
            git(repo, "rm", "-q", "--cached", "data/copy.csv")
            git(repo, "commit", "-qm", "copy untracked again")
            took, _ = timed([*ZERO2ONE, "data", "add", "data/table.csv", "-m", "table"],
                            repo, env)
            results.setdefault("zero2one data add", []).append(took)
            took, _ = timed([*ZERO2ONE, "train", "plain.yaml", "--quiet"], repo, env)
            results.setdefault("train, unversioned data", []).append(took)
            took, out = timed([*ZERO2ONE, "train", "versioned.yaml", "--json"], repo, env)
            results.setdefault("train, DVC-versioned data", []).append(took)
            run_id = yaml.safe_load(out)["run_id"]
            took, _ = timed([*ZERO2ONE, "reproduce", run_id, "--quiet"], repo, env)
            results.setdefault("zero2one reproduce", []).append(took)
    median = {k: statistics.median(v) for k, v in results.items()}
    pairs = [("zero2one data add", "git add + commit"),
             ("train, DVC-versioned data", "train, unversioned data"),
             ("zero2one reproduce", "train, unversioned data")]
    print(f"{args.rows} rows, {size / 2**20:.1f} MiB CSV; median of {args.repeat}, seconds "
          "of wall time per command (a fresh process each)\n")
    print("| step | s | baseline | s | ratio |\n| --- | --- | --- | --- | --- |")
    for step, base in pairs:
        print(f"| {step} | {median[step]:.2f} | {base} | {median[base]:.2f} | "
              f"{median[step] / median[base]:.2f}× |")


if __name__ == "__main__":
    main()
