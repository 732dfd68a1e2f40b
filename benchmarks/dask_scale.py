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

    python benchmarks/dask_scale.py [--files 520 --rows-per-file 100000 --worker-memory 1GiB]
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


def step(name: str, work: Path, workers: int, memory: str, fraction: float = 1.0
         ) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from zero2one import scale
    from zero2one.api import predict_partitions, train

    source = str(work / "data" / "*.parquet")
    peaks: list[float] = []
    if name == "pandas":
        import pandas as pd

        from zero2one.api import load

        model = load(work / "model")
        files = sorted((work / "data").iterdir())
        files = files[:max(1, round(len(files) * fraction))]
        start = time.perf_counter()
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        scored = model.predict(frame, allow_extra=True)
        scored.to_parquet(work / "pandas-scored.parquet", index=False)
        seconds = time.perf_counter() - start
        return {"rows": len(scored), "seconds": seconds, "client_mib": peak_mib(),
                "worker_mib": []}
    with scale.using(workers=workers, memory_limit=memory):
        client = scale.client()
        client.run(lambda: None)
        before = set(client.scheduler_info()["workers"])
        start = time.perf_counter()
        if name == "score":
            done = predict_partitions(work / "model", source, work / f"scored-{workers}")
            rows = done.rows
        else:
            result = train(recipe(source, 100_000), out=work / "model")
            rows = json.loads((result.model_dir / "manifest.json").read_text())["data"]["rows"]
        seconds = time.perf_counter() - start
        peaks = workers_peak(client)
        lost = set(client.scheduler_info()["workers"]) != before  # a worker died or restarted
    return {"rows": rows, "seconds": seconds, "client_mib": peak_mib(), "worker_mib": peaks,
            "lost_workers": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=520)
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument("--worker-memory", default="1GiB")
    parser.add_argument("--ratio", type=float, default=5.0)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--reuse", help="a folder an earlier run generated (its data/)")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, Path(args.work), args.workers, args.worker_memory,
                              args.fraction)))
        return

    from dask.utils import format_bytes, parse_bytes

    started = time.perf_counter()
    if args.reuse:
        import pandas as pd

        work = Path(args.reuse)
        for old in [work / "model", *work.glob("scored-*"), work / "pandas-scored.parquet"]:
            subprocess.run(["rm", "-rf", str(old)], check=True)
        files = sorted((work / "data").iterdir())
        args.files = len(files)
        args.rows_per_file = len(pd.read_parquet(files[0]))
        memory = len(files) * int(pd.read_parquet(files[0]).memory_usage(deep=True).sum())
    else:
        work = Path(tempfile.mkdtemp(prefix="zero2one-dask-bench-"))
        memory = generate(work / "data", args.files, args.rows_per_file)
    limit = parse_bytes(args.worker_memory)
    on_disk = sum(p.stat().st_size for p in (work / "data").iterdir())
    made = "reused" if args.reuse else f"generated in {time.perf_counter() - started:.0f} s"
    print(f"data: {args.files * args.rows_per_file:,} rows, {format_bytes(memory)} in pandas "
          f"memory ({memory / limit:.1f}x a worker's {args.worker_memory}), "
          f"{format_bytes(on_disk)} of Parquet; {made}")
    if memory < args.ratio * limit:
        sys.exit(f"the data is under {args.ratio}x the worker limit; raise --files")

    def run(name: str, workers: int = 2, fraction: float = 1.0) -> dict[str, Any] | None:
        out = subprocess.run([sys.executable, __file__, "--step", name, "--work", str(work),
                              "--workers", str(workers), "--worker-memory",
                              args.worker_memory, "--fraction", str(fraction)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return None  # killed: out of memory
        return json.loads(out.stdout.strip().splitlines()[-1])

    print("\n| step | rows | seconds | rows/s | peak RSS per worker (MiB) | "
          "client peak RSS (MiB) |\n|---|---:|---:|---:|---|---:|", flush=True)

    def show(name: str, r: dict[str, Any]) -> None:
        workers = ", ".join(f"{m:.0f}" for m in r["worker_mib"]) or "-"
        lost = " (a worker was lost or restarted)" if r.get("lost_workers") else ""
        print(f"| {name}{lost} | {r['rows']:,} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {workers} | {r['client_mib']:.0f} |",
              flush=True)

    rows = []
    for name, kind, workers in [("train (incremental, 1 pass), 2 workers", "train", 2),
                                ("score, 1 worker", "score", 1),
                                ("score, 2 workers", "score", 2)]:
        result = run(kind, workers)
        if result is None:
            sys.exit(f"{name} failed")
        show(name, result)
        rows.append((name, result))
    fraction = 1.0  # pandas: the whole table, else the largest share of it that fits
    while (pandas := run("pandas", fraction=fraction)) is None and fraction > 1 / 64:
        print(f"| pandas, one process, {fraction:.0%} of the table | killed: out of memory "
              "| | | | |", flush=True)
        fraction /= 2
    if pandas is None:
        sys.exit("pandas could not score even 1/64 of the table")
    show(f"pandas, one process, {fraction:.0%} of the table", pandas)
    rows.append(("pandas", pandas))
    one, two = rows[1][1], rows[2][1]
    print(f"\nscoring speed-up, 2 workers vs 1: {one['seconds'] / two['seconds']:.2f}x "
          f"(goal >= 1.6x on 2 cores)")
    def speed(r: dict[str, Any]) -> float:
        return float(r["rows"] / r["seconds"])

    print(f"pandas vs 2 Dask workers: {speed(pandas) / speed(two):.2f}x the rows per second, "
          f"{pandas['client_mib'] / max(two['worker_mib']):.1f}x one worker's peak memory")


if __name__ == "__main__":
    main()
