"""Serving throughput and latency: the guide's Flask snippet, `mlflow models serve`,
`zero2one serve` and a bare ASGI app (the ceiling), under the same load generator.

All four serve the iris model on 127.0.0.1 in turn; wrk (apt-get install wrk) sends the classic
`{"features": [...]}` request (MLflow: its own `dataframe_split` form) for DURATION seconds at
each concurrency, and the table prints req/s, p50/p99 latency and errors side by side.

    python benchmarks/serve_load.py [--duration 10] [--workers 2] [--concurrency 1 8 32]
        [--baseline-src DIR]

``--baseline-src DIR`` adds (c0): `zero2one serve` run from another checkout's ``src/`` (e.g. a
``git worktree`` of an earlier commit), on the same model, in the same run — a before/after
table for a change to the server.

(a) Flask dev server + joblib.load + model.predict([data]) — the guide's snippet, verbatim but
    for paths; its model is a bare SVC on numpy arrays, as in the guide (less work per call).
(b) mlflow models serve --env-manager local -w WORKERS, on the same pipeline zero2one serves.
(c) zero2one serve --workers WORKERS.
(d) uvicorn (same server stack as (b) and (c)) with WORKERS workers answering a constant.
Traffic goes to 127.0.0.1 only, and every run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROW = [5.1, 3.5, 1.4, 0.2]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

FLASK_APP = """\
from flask import Flask, request, jsonify
import joblib
app = Flask(__name__)
model = joblib.load({model!r})
@app.route('/predict', methods=['POST'])
def predict():
    data = request.json['features']
    prediction = model.predict([data])
    return jsonify({{'result': prediction.tolist()}})
if __name__ == '__main__':
    import logging
    logging.getLogger('werkzeug').setLevel(logging.ERROR)
    app.run(host='127.0.0.1', port={port})
"""

CONSTANT_APP = """\
BODY = b'{"result":[0]}'
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body   = {body!r}
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(work: Path) -> dict[str, Path]:
    """Train the iris model once; export the baselines' formats."""
    import joblib
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC

    import zero2one

    model_dir = work / "zero2one-model"
    zero2one.train({
        "task": "tabular-classification", "name": "iris-svc",
        "data": {"source": "sklearn:iris"}, "model": {"estimator": "svc"},
        "search": {"method": "grid", "space": {"kernel": ["linear", "rbf", "poly"],
                                               "C": [0.1, 1, 10]}, "cv": 5},
        "track": {"enabled": False},
    }, out=model_dir)
    pipeline = zero2one.load(model_dir).pipeline_
    mlflow_dir = work / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(mlflow_dir), skops_trusted_types=["numpy.dtype"])
    iris = load_iris()
    seed_model = SVC(kernel="rbf", C=1.0).fit(iris.data, iris.target)  # the guide's model
    joblib.dump(seed_model, work / "trained_model.pkl")
    return {"zero2one": model_dir, "mlflow": mlflow_dir, "joblib": work / "trained_model.pkl"}


def start(name: str, paths: dict[str, Path], work: Path, workers: int,
          baseline_src: Path | None = None) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    # the venv first on PATH: `mlflow models serve` starts `uvicorn` by name
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    body = json.dumps({"features": ROW})
    if name == "flask":
        script = work / "flask_app.py"
        script.write_text(FLASK_APP.format(model=str(paths["joblib"]), port=port))
        command = [sys.executable, str(script)]
    elif name == "mlflow":
        command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(paths["mlflow"]),
                   "--env-manager", "local", "-w", str(workers), "-h", "127.0.0.1",
                   "-p", str(port)]
        body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}})
    elif name in ("zero2one", "baseline"):
        command = [sys.executable, "-m", "zero2one.cli.main", "serve", str(paths["zero2one"]),
                   "--port", str(port), "--workers", str(workers)]
        if name == "baseline":  # the other checkout's code, ahead of the installed one
            assert baseline_src is not None
            env["PYTHONPATH"] = str(baseline_src)
    else:
        (work / "constant_app.py").write_text(CONSTANT_APP)
        command = [sys.executable, "-m", "uvicorn", "constant_app:app", "--port", str(port),
                   "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}" + ("/invocations" if name == "mlflow" else "/predict")
    wait_answering(process, url, body)
    return process, url, body


def wait_answering(process: subprocess.Popen[bytes], url: str, body: str,
                   timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            request = urllib.request.Request(url, data=body.encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    time.sleep(1.0)  # let every worker finish starting
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def wrk(url: str, body: str, concurrency: int, duration: int, work: Path) -> dict[str, Any]:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    threads = min(2, concurrency)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s",
         "--latency", "-s", str(script), url],
        capture_output=True, text=True, timeout=duration + 60, check=True)
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> dict[str, Any]:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return float("nan")
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    requests = re.search(r"(\d+) requests in", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {"rps": float(rps[1]) if rps else 0.0, "p50": latency("50"), "p99": latency("99"),
            "errors": errors, "requests": int(requests[1]) if requests else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--only", nargs="+", choices=["flask", "mlflow", "zero2one", "asgi"],
                        default=["flask", "mlflow", "zero2one", "asgi"])
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="src/ of another checkout, served as (c0) beside (c)")
    args = parser.parse_args()
    if args.baseline_src is not None:
        args.only = ["baseline", *args.only]
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="z21-serve-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    paths = prepare(work)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for name in args.only:
        process, url, body = start(name, paths, work, args.workers, args.baseline_src)
        try:
            for concurrency in args.concurrency:
                results[name, concurrency] = wrk(url, body, concurrency, args.duration, work)
                print(f"{name:9s} c={concurrency:<3d} {results[name, concurrency]}",
                      file=sys.stderr)
        finally:
            stop(process)

    labels = {"flask": "(a) Flask + joblib (guide)", "mlflow": "(b) mlflow models serve",
              "zero2one": "(c) zero2one serve", "asgi": "(d) bare ASGI constant",
              "baseline": f"(c0) zero2one serve from {args.baseline_src}"}
    print(f"\nwrk, {args.duration} s per cell, {args.workers} workers for (b)-(d), "
          f"{os.cpu_count()} cores shared by server and load generator\n")
    print("server | concurrency | req/s | p50 ms | p99 ms | errors")
    print("--- | --- | --- | --- | --- | ---")
    for name in args.only:
        for concurrency in args.concurrency:
            r = results[name, concurrency]
            print(f"{labels[name]} | {concurrency} | {r['rps']:.0f} | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['errors']}")
    if {"zero2one", "flask", "mlflow", "asgi"} <= set(args.only):
        print("\nratios at each concurrency (req/s):")
        print("concurrency | (c)/(a) | (c)/(b) | (c)/(d) share of ceiling")
        print("--- | --- | --- | ---")
        for concurrency in args.concurrency:
            c = results["zero2one", concurrency]["rps"]
            print(f"{concurrency} | {c / results['flask', concurrency]['rps']:.1f}× | "
                  f"{c / results['mlflow', concurrency]['rps']:.1f}× | "
                  f"{c / results['asgi', concurrency]['rps']:.0%}")
    if "baseline" in args.only and "zero2one" in args.only:
        print("\n(c) against (c0), req/s:")
        print("concurrency | (c0) | (c) | (c)/(c0)")
        print("--- | --- | --- | ---")
        for concurrency in args.concurrency:
            before = results["baseline", concurrency]["rps"]
            after = results["zero2one", concurrency]["rps"]
            print(f"{concurrency} | {before:.0f} | {after:.0f} | {after / before:.2f}×")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
