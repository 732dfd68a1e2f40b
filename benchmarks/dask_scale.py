"""Data larger than a worker's memory, on Dask: score it and train an incremental model on it.

Generates a Parquet data set (``--files`` files of ``--rows-per-file`` rows: ten numbers with
gaps, a category, an id and a two-class label) whose in-memory size is at least ``--ratio``
times one worker's memory limit, then, each step in a fresh process:

- scoring:  ``zero2one.predict_partitions`` (``predict --engine dask``) with 1 and 2 workers
  (a LocalCluster of single-threaded worker processes, each limited to ``--worker-memory``);
- training: ``zero2one.train`` with ``data.engine: dask`` and SGDClassifier (``partial_fit``
  over every training partition, one pass), 2 workers;
- pandas:   the same model scoring the whole table in one process with pandas and writing it
  to one Parquet file (it fits in this machine's memory; its peak RSS is the comparison).

Peak RSS is each process's ``ru_maxrss`` (workers asked through the client before the cluster
closes). Throughput is rows per second of wall time.

    python benchmarks/dask_scale.py [--files 40 --rows-per-file 400000 --worker-memory 320MiB]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NUMBERS = [f"x{i}" for i in range(10)]


def generate(folder: Path, files: int, rows: int) -> int:
    import numpy as np
    import pandas as pd

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=len(NUMBERS))
    memory = 0
    for i in range(files):
        X = rng.normal(size=(rows, len(NUMBERS)))
        frame = pd.DataFrame(X, columns=NUMBERS)
        frame["shop"] = rng.choice(["north", "south", "east", "west", "online"], rows)
        logit = X @ weights + (frame["shop"] == "online") * 0.7
        frame["label"] = (logit + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
        frame.loc[rng.random(rows) < 0.02, "x0"] = np.nan
        frame.insert(0, "id", np.arange(i * rows, (i + 1) * rows, dtype="int64"))
        memory += int(frame.memory_usage(deep=True).sum())
        frame.to_parquet(folder / f"part-{i:03d}.parquet", index=False, row_group_size=rows)
    return memory


def recipe(source: str, sample: int) -> dict[str, Any]:
    return {"task": "tabular-classification", "name": "dask-bench",
            "data": {"source": source, "target": "label", "drop": ["id"], "engine": "dask",
                     "sample_rows": sample, "test_size": 0.1},
            "model": {"estimator": "sklearn.linear_model.SGDClassifier",
                      "params": {"loss": "log_loss", "random_state": 0}, "epochs": 1},
            "track": {"enabled": False}}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers_peak(client: Any) -> list[float]:
    return [v / 1024 for v in client.run(
        lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()]


def step(name: str, work: Path, workers: int, memory: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from zero2one import scale
    from zero2one.api import predict_partitions, train

    source = str(work / "data" / "*.parquet")
    peaks: list[float] = []
    if name == "pandas":
        import pandas as pd

        from zero2one.api import load

        model = load(work / "model")
        start = time.perf_counter()
        frame = pd.read_parquet(work / "data")
        scored = model.predict(frame, allow_extra=True)
        scored.to_parquet(work / "pandas-scored.parquet", index=False)
        seconds = time.perf_counter() - start
        return {"rows": len(scored), "seconds": seconds, "client_mib": peak_mib(),
                "worker_mib": []}
    with scale.using(workers=workers, memory_limit=memory):
        client = scale.client()
        client.run(lambda: None)
        start = time.perf_counter()
        if name == "score":
            done = predict_partitions(work / "model", source, work / f"scored-{workers}")
            rows = done.rows
        else:
            result = train(recipe(source, 100_000), out=work / "model")
            rows = json.loads((result.model_dir / "manifest.json").read_text())["data"]["rows"]
        seconds = time.perf_counter() - start
        peaks = workers_peak(client)
        lost = len(client.scheduler_info()["workers"]) < workers
    return {"rows": rows, "seconds": seconds, "client_mib": peak_mib(), "worker_mib": peaks,
            "lost_workers": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows-per-file", type=int, default=400_000)
    parser.add_argument("--worker-memory", default="320MiB")
    parser.add_argument("--ratio", type=float, default=5.0)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, Path(args.work), args.workers, args.worker_memory)))
        return

    from dask.utils import format_bytes, parse_bytes

    work = Path(tempfile.mkdtemp(prefix="zero2one-dask-bench-"))
    started = time.perf_counter()
    memory = generate(work / "data", args.files, args.rows_per_file)
    limit = parse_bytes(args.worker_memory)
    on_disk = sum(p.stat().st_size for p in (work / "data").iterdir())
    print(f"data: {args.files * args.rows_per_file:,} rows, {format_bytes(memory)} in pandas "
          f"memory ({memory / limit:.1f}x a worker's {args.worker_memory}), "
          f"{format_bytes(on_disk)} of Parquet; generated in {time.perf_counter() - started:.0f} s")
    if memory < args.ratio * limit:
        sys.exit(f"the data is under {args.ratio}x the worker limit; raise --files")

    def run(name: str, workers: int = 2) -> dict[str, Any]:
        out = subprocess.run([sys.executable, __file__, "--step", name, "--work", str(work),
                              "--workers", str(workers), "--worker-memory",
                              args.worker_memory], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = [("train (incremental, 1 pass), 2 workers", run("train")),
            ("score, 1 worker", run("score", 1)),
            ("score, 2 workers", run("score", 2)),
            ("pandas, one process, whole table", run("pandas"))]
    print()
    print("| step | rows | seconds | rows/s | peak RSS per worker (MiB) | client peak RSS (MiB) |")
    print("|---|---:|---:|---:|---|---:|")
    for name, r in rows:
        workers = ", ".join(f"{m:.0f}" for m in r["worker_mib"]) or "-"
        lost = " (a worker was lost)" if r.get("lost_workers") else ""
        print(f"| {name}{lost} | {r['rows']:,} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {workers} | {r['client_mib']:.0f} |")
    one, two = rows[1][1], rows[2][1]
    print(f"\nscoring speed-up, 2 workers vs 1: {one['seconds'] / two['seconds']:.2f}x "
          f"(goal >= 1.6x on 2 cores)")
    print(f"pandas vs 2 Dask workers: {rows[3][1]['seconds'] / two['seconds']:.2f}x the time, "
          f"{rows[3][1]['client_mib'] / max(two['worker_mib']):.1f}x one worker's peak memory")


if __name__ == "__main__":
    main()
