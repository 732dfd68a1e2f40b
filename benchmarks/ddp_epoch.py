"""Time per epoch of an image-classification recipe: one process against ``--nproc 2``.

Trains ``recipes/digits-cnn.yaml`` (tracking off, no early stopping, ``--epochs`` epochs) in one
process with every core's threads, then data-parallel in N processes sharing the cores
(torch.distributed.run, gloo), and prints the median seconds per epoch from each model's
training history, with the held-out accuracy of both.

    python benchmarks/ddp_epoch.py [--epochs 4] [--nproc 2] [--set train.batch_size=256 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from zero2one.machine import usable_cores

REPO = Path(__file__).resolve().parents[1]


def train(work: Path, name: str, epochs: int, nproc: int, extra: list[str]
          ) -> tuple[list[float], float]:
    cores = usable_cores()
    sets = ["track.enabled=false", f"train.epochs={epochs}", "train.early_stopping=null",
            f"train.threads={max(1, cores // nproc)}", *extra]
    args = [sys.executable, "-m", "zero2one.cli.main", "train",
            str(REPO / "recipes/digits-cnn.yaml"), *[a for s in sets for a in ("--set", s)],
            "--out", str(work / name), "--json", *(["--nproc", str(nproc)] if nproc > 1 else [])]
    done = subprocess.run(args, cwd=work, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    history = json.loads((work / name / "manifest.json").read_text())["training"]["history"]
    return [row["seconds"] for row in history], result["metrics"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="a recipe override for both runs (repeatable)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zero2one-ddp-bench-"))
    one, one_acc = train(work, "one", args.epochs, 1, args.sets)
    many, many_acc = train(work, "many", args.epochs, args.nproc, args.sets)
    if args.sets:
        print("overrides:", " ".join(args.sets))
    print("| run | median s/epoch | epochs | held-out accuracy |\n|---|---:|---:|---:|")
    print(f"| 1 process, {usable_cores()} threads | {statistics.median(one):.2f} "
          f"| {len(one)} | {one_acc:.4f} |")
    print(f"| --nproc {args.nproc} | {statistics.median(many):.2f} | {len(many)} | "
          f"{many_acc:.4f} |")
    print(f"\nspeed-up: {statistics.median(one) / statistics.median(many):.2f}x")


if __name__ == "__main__":
    main()
