"""Wall time of the commands a user runs most, against the MLflow path, in the same run.

Trains and registers the iris recipe in a fresh workspace, then times each command in a new
process (median of REPEAT): as shipped (read-only SQLite queries on the embedded store, the
local artifact path without MLflow, ``models promote`` writing its alias row directly), and with
that fast path turned off, so that MLflow's client answers as before (the baseline).

    python benchmarks/cli_speed.py [--repeat 3]
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

REPO = Path(__file__).resolve().parents[1]
# run the CLI with the embedded store's read-only fast path disabled (the MLflow baseline)
BASELINE = ("import sys\nfrom zero2one.tracking import store\nstore.read_only = lambda: None\n"
            "from zero2one.cli.main import main\nmain(sys.argv[1:])\n")


def timed(args: list[str], *, cwd: Path, baseline: bool, repeat: int) -> float:
    command = ([sys.executable, "-c", BASELINE, *args] if baseline
               else [sys.executable, "-m", "zero2one.cli.main", *args])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-cli-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    subprocess.run([sys.executable, "-m", "zero2one.cli.main", "train",
                    str(REPO / "recipes/iris-svc.yaml"), "--quiet"], cwd=work, check=True)
    listed = subprocess.run([sys.executable, "-m", "zero2one.cli.main", "runs", "list",
                             "--json"], cwd=work, check=True, capture_output=True, text=True)
    import json

    run_id = json.loads(listed.stdout)[0]["run_id"]
    commands = [
        ["--help"],
        ["runs", "list"],
        ["runs", "show", run_id],
        ["models", "list"],
        ["models", "show", "iris-svc"],
        ["models", "promote", "iris-svc", "1", "--alias", "champion"],
        ["predict", "models:/iris-svc@champion", "--input", str(REPO / "examples/flowers.csv")],
    ]
    print(f"median of {args.repeat}, each command a new process, {os.cpu_count()} cores\n")
    print("command | MLflow client (baseline) s | zero2one s | × faster | goal")
    print("--- | --- | --- | --- | ---")
    goals = {"predict": 2.0}  # 8 rows from the registry; everything else 1.5 s
    for command in commands:
        before = timed(command, cwd=work, baseline=True, repeat=args.repeat)
        after = timed(command, cwd=work, baseline=False, repeat=args.repeat)
        goal = goals.get(command[0], 1.5)
        label = " ".join(c if len(c) < 30 else "RUN_ID" for c in command[:4])
        print(f"`zero2one {label}` | {before:.2f} | {after:.2f} | {before / after:.1f} | "
              f"< {goal} s {'met' if after < goal else 'NOT met'}")


if __name__ == "__main__":
    main()
