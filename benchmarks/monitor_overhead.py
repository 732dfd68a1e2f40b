"""What monitoring costs the serving path: ``/predict`` throughput of ``zero2one serve`` with
``--monitor`` (its defaults: every answer up to 100 a second per worker; and every answer,
``--monitor-max-per-second 0``; PII redaction, SQLite store) against the same server without
it, under wrk.

The model is the messy churn table's classifier (numbers, missing values, Chinese categories)
and the request one record, as a form would send it. The two servers run in turn, ROUNDS times
each, alternating (the machine's noise spreads over both); the table prints every measurement
and the ratio of the medians. Traffic goes to 127.0.0.1 only, every run stops by itself.

    python benchmarks/monitor_overhead.py [--duration 10] [--workers 2] [--concurrency 32]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from serve_load import free_port, stop, wait_answering, wrk

RECORD = {"tenure": 12.0, "monthly": 89.5, "plan": "基础版", "region": "华东"}


def prepare(work: Path) -> Path:
    import zero2one
    from tasks.test_tabular_profile import churn_table

    source = work / "churn.csv"
    churn_table().to_csv(source, index=False)
    model = work / "churn-model"
    zero2one.train({"task": "tabular-classification", "name": "churn",
                    "data": {"source": str(source), "target": "churned"},
                    "model": {"estimator": "logistic_regression", "class_weight": "balanced"},
                    "track": {"enabled": False}}, out=model)
    return model


def serve(model: Path, work: Path, workers: int, monitor: list[str]) -> tuple[object, str]:
    port = free_port()
    command = [sys.executable, "-m", "zero2one.cli.main", "serve", str(model), "--port",
               str(port), "--workers", str(workers), *monitor]
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "ZERO2ONE_HOME": str(work / "home")})
    url = f"http://127.0.0.1:{port}/predict"
    wait_answering(process, url, json.dumps({"records": [RECORD]}))
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    body = json.dumps({"records": [RECORD]}, ensure_ascii=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = prepare(work)
        store = work / "monitor.db"
        setups = {"without --monitor": [],
                  "--monitor (defaults)": ["--monitor", str(store)],
                  "--monitor, every answer": ["--monitor", str(work / "every.db"),
                                              "--monitor-max-per-second", "0"]}
        found: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
        for _ in range(args.rounds):
            for name, flags in setups.items():
                process, url = serve(model, work, args.workers, flags)
                try:
                    found[name].append(wrk(url, body, args.concurrency, args.duration, work))
                finally:
                    stop(process)  # type: ignore[arg-type]
        print(f"\n/predict, one record, c={args.concurrency}, {args.workers} workers, "
              f"{args.duration} s each, {args.rounds} rounds alternating\n")
        print("| server | req/s (each round) | median req/s | p50 ms | p99 ms | errors |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, runs in found.items():
            each = ", ".join(f"{r['rps']:.0f}" for r in runs)
            print(f"| {name} | {each} | "
                  f"{statistics.median(r['rps'] for r in runs):.0f} | "
                  f"{statistics.median(r['p50'] for r in runs):.1f} | "
                  f"{statistics.median(r['p99'] for r in runs):.1f} | "
                  f"{sum(int(r['errors']) for r in runs)} |")
        base = statistics.median(r["rps"] for r in found["without --monitor"])
        print()
        for name, path in (("--monitor (defaults)", store),
                           ("--monitor, every answer", work / "every.db")):
            ratio = statistics.median(r["rps"] for r in found[name]) / base
            print(f"{name}: {ratio:.2f} of the throughput without (goal ≥ 0.90); "
                  f"{_count(path)} samples stored")


def _count(store: Path) -> int:
    import sqlite3

    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        return int(db.execute("select sum(count) from zero2one_samples").fetchone()[0] or 0)


if __name__ == "__main__":
    main()
