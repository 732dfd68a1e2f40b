"""Per-request cost of the server's /predict inside one process (no sockets, no load
generator): the ASGI app is called directly, so a few microseconds of change show through the
noise that wrk's numbers carry on 2 shared cores.

    python benchmarks/serve_inprocess.py [--baseline-src OTHER_CHECKOUT/src] [--requests 2000]

With ``--baseline-src`` the same measurement runs in a second process on that source tree (a
`git worktree` of an earlier commit), on the same model, and the table shows both. The model
is trained by the baseline's code when one is given (a newer recipe may not load in older code).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import asyncio, json, sys, time
from zero2one.serving import ServeSettings, create_app
app = create_app(ServeSettings(model=sys.argv[1]))
body = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
         "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
         "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
         "headers": [(b"content-type", b"application/json"),
                     (b"content-length", str(len(body)).encode())]}
async def one():
    sent = []
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(message):
        sent.append(message)
    await app(dict(scope, state={}), receive, send)
    assert sent[0]["status"] == 200, sent
async def main(n):
    async with app.router.lifespan_context(app):
        for _ in range(300):
            await one()
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                await one()
            rounds.append((time.perf_counter() - start) / n * 1e6)
        print(json.dumps(sorted(rounds)))
asyncio.run(main(int(sys.argv[2])))
"""

TRAIN = """
import sys, zero2one
zero2one.train({"task": "tabular-classification", "name": "iris", "track": {"enabled": False},
                "data": {"source": "sklearn:iris"}, "model": {"estimator": "svc"}},
               out=sys.argv[1])
"""


def run(code: str, *args: str, src: Path | None) -> str:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=900, check=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-inproc-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    model = work / "model"
    run(TRAIN, str(model), src=args.baseline_src)
    rows = [("zero2one (this checkout)", None)]
    if args.baseline_src is not None:
        rows.insert(0, (f"baseline ({args.baseline_src})", args.baseline_src))
    results = {}
    for _ in range(2):  # alternate, twice, so that neither side always runs first
        for label, src in rows:
            rounds = json.loads(run(MEASURE, str(model), str(args.requests), src=src))
            results.setdefault(label, []).extend(rounds)
    print(f"\n/predict, one row, in-process, µs per request (best and median of "
          f"{len(next(iter(results.values())))} rounds of {args.requests})\n")
    print("code | best µs | median µs")
    print("--- | --- | ---")
    for label, rounds in results.items():
        rounds.sort()
        print(f"{label} | {rounds[0]:.1f} | {rounds[len(rounds) // 2]:.1f}")
    if len(results) == 2:
        (_, before), (_, after) = results.items()
        print(f"\nthis checkout / baseline (best): {after[0] / before[0]:.3f}")


if __name__ == "__main__":
    main()
