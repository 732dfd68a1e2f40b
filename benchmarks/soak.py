"""Soak: a bounded load against `zero2one serve --workers 2`, minute by minute.

Three phases, each its own server on 127.0.0.1 (nothing else is contacted) and each ending by
itself after its duration:

  tabular   the iris pipeline, CONCURRENCY clients posting 1-8 random rows each   (5 min)
  image     a digits CNN, clients posting base64 PNGs of digits                  (2 min)
  chat      SmolLM2-135M-Instruct, concurrent streamed chats; one stream in five is dropped
            by its client after a few tokens (a browser tab closed mid-answer)     (2 min)

Per minute: requests, errors (any non-2xx answer, a broken connection, a stream that did not
end with [DONE] — the dropped ones are counted apart), p50 and p99 latency (chat: the whole
stream), and the resident memory of each worker process. Goals: 0 errors, the last minute's p99
within 20 % of the first's, each worker's RSS growing less than 10 % after the first minute.

    python benchmarks/soak.py [--minutes 5 2 2] [--concurrency 16 8 6] [--only tabular image chat]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_models(work: Path) -> dict[str, str]:
    """The tabular and image models of the soak, trained into WORK (a minute or so)."""
    from zero2one.api import train

    iris = train(REPO / "recipes/iris-svc.yaml", overrides=["track.enabled=false"],
                 out=work / "iris")
    digits = train(REPO / "recipes/digits-cnn.yaml",
                   overrides=["track.enabled=false", "train.epochs=2"], out=work / "digits")
    return {"tabular": str(iris.model_dir), "image": str(digits.model_dir),
            "chat": "builtin:smollm2-135m-instruct"}


class Server:
    def __init__(self, model: str, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zero2one.cli.main", "serve", model, "--port", str(self.port),
             "--workers", str(workers), "--max-batch", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200 and len(self.workers()) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("the server did not come up in 5 minutes")

    def workers(self) -> list[int]:
        """The worker processes (uvicorn's children), or the server itself with one worker."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) != self.process.pid:  # the parent pid
                continue
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"resource_tracker" not in command:  # multiprocessing's helper, not a worker
                children.append(int(stat.parent.name))
        return sorted(children) or [self.process.pid]

    def rss_mib(self) -> dict[int, float]:
        found = {}
        for pid in self.workers():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        found[pid] = int(line.split()[1]) / 1024
            except OSError:
                continue
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# ---- clients -------------------------------------------------------------------------------------

def digit_pngs() -> list[str]:
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images[:64]
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray((image * 16).astype("uint8")).save(buffer, format="PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out


async def tabular_client(client: Any, url: str, rng: random.Random) -> tuple[bool, str]:
    rows = [[round(rng.uniform(4, 8), 2), round(rng.uniform(2, 4.5), 2),
             round(rng.uniform(1, 7), 2), round(rng.uniform(0.1, 2.5), 2)]
            for _ in range(rng.randint(1, 8))]
    answer = await client.post(f"{url}/predict", json={"instances": rows})
    return answer.status_code == 200 and len(answer.json()["result"]) == len(rows), "ok"


async def image_client(client: Any, url: str, rng: random.Random,
                       pngs: list[str]) -> tuple[bool, str]:
    batch = [rng.choice(pngs) for _ in range(rng.randint(1, 4))]
    answer = await client.post(f"{url}/predict", json={"images": batch, "top_k": 3})
    return answer.status_code == 200 and len(answer.json()["result"]) == len(batch), "ok"


QUESTIONS = ["What is machine learning?", "Name three colours.", "How do I train a model?",
             "Explain overfitting in one sentence.", "What is a GPU?", "Write a haiku about data."]


async def chat_client(client: Any, url: str, rng: random.Random) -> tuple[bool, str]:
    drop = rng.random() < 0.2  # this client goes away mid-stream
    body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "stream": True,
            "max_tokens": 32, "temperature": 0.7}
    events = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            return False, "status"
        async for line in answer.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return True, "ok"
            if "error" in json.loads(line[6:]):
                return False, "error event"
            events += 1
            if drop and events >= 3:
                return True, "dropped"  # the context manager closes the connection
    return False, "no [DONE]"


async def run_phase(kind: str, url: str, seconds: float, concurrency: int,
                    server: Server) -> list[dict[str, Any]]:
    import httpx

    pngs = digit_pngs() if kind == "image" else []
    start = time.monotonic()
    end = start + seconds
    records: list[tuple[float, float, bool, str]] = []  # (when, seconds, ok, how)
    memory: list[tuple[float, dict[int, float]]] = []

    async def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            while time.monotonic() < end:
                t0 = time.monotonic()
                try:
                    if kind == "tabular":
                        ok, how = await tabular_client(client, url, rng)
                    elif kind == "image":
                        ok, how = await image_client(client, url, rng, pngs)
                    else:
                        ok, how = await chat_client(client, url, rng)
                except (httpx.HTTPError, ValueError) as exc:
                    ok, how = False, type(exc).__name__
                records.append((t0 - start, time.monotonic() - t0, ok, how))

    async def sample_memory() -> None:
        while time.monotonic() < end:
            memory.append((time.monotonic() - start, server.rss_mib()))
            await asyncio.sleep(5)
        memory.append((time.monotonic() - start, server.rss_mib()))

    await asyncio.gather(sample_memory(), *(client_loop(i) for i in range(concurrency)))
    minutes = []
    for minute in range(int(np.ceil(seconds / 60))):
        rows = [r for r in records if minute * 60 <= r[0] < (minute + 1) * 60]
        kept = [r for r in rows if r[3] != "dropped"]
        seen = [m for t, m in memory if t <= (minute + 1) * 60 + 1]
        last = seen[-1] if seen else {}
        latency = np.array([r[1] for r in kept]) * 1000 if kept else np.array([np.nan])
        minutes.append({
            "minute": minute + 1, "requests": len(rows),
            "errors": sum(not r[2] for r in rows),
            "dropped": sum(r[3] == "dropped" for r in rows),
            "p50_ms": float(np.percentile(latency, 50)),
            "p99_ms": float(np.percentile(latency, 99)),
            "rss_mib": {pid: round(v, 1) for pid, v in sorted(last.items())},
            "why": sorted({r[3] for r in rows if not r[2]}),
        })
    return minutes


def report(kind: str, minutes: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    print(f"\n## {kind}: {concurrency} concurrent clients, 2 workers\n")
    print("| minute | requests | errors | p50 ms | p99 ms | RSS per worker (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in minutes:
        dropped = f" (+{m['dropped']} dropped by the client)" if m["dropped"] else ""
        rss = ", ".join(f"{v:.0f}" for v in m["rss_mib"].values())
        print(f"| {m['minute']} | {m['requests']}{dropped} | {m['errors']} | {m['p50_ms']:.1f} "
              f"| {m['p99_ms']:.1f} | {rss} |")
    errors = sum(m["errors"] for m in minutes)
    first, last = minutes[0], minutes[-1]
    drift = last["p99_ms"] / first["p99_ms"] - 1
    base = first["rss_mib"]
    growth = max((last["rss_mib"].get(pid, v) / v - 1 for pid, v in base.items()), default=0.0)
    whys = sorted({w for m in minutes for w in m["why"]})
    print(f"\nerrors {errors} (goal 0){' — ' + ', '.join(whys) if whys else ''}; "
          f"p99 last/first minute {drift:+.1%} (goal within ±20 %); "
          f"RSS growth after minute 1 {growth:+.1%} (goal under 10 %)")
    return {"kind": kind, "requests": sum(m["requests"] for m in minutes), "errors": errors,
            "p99_drift": drift, "rss_growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs=3, default=[5, 2, 2],
                        metavar=("TABULAR", "IMAGE", "CHAT"))
    parser.add_argument("--concurrency", type=int, nargs=3, default=[16, 8, 6],
                        metavar=("TABULAR", "IMAGE", "CHAT"))
    parser.add_argument("--only", nargs="+", choices=["tabular", "image", "chat"],
                        default=["tabular", "image", "chat"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ZERO2ONE_HOME"] = str(Path(tmp) / "home")
        print(f"# soak — {os.cpu_count()} CPUs; training the models first", flush=True)
        models = train_models(Path(tmp))
        summary = []
        for kind, minutes, concurrency in zip(("tabular", "image", "chat"), args.minutes,
                                              args.concurrency, strict=True):
            if kind not in args.only:
                continue
            server = Server(models[kind], args.workers)
            try:
                result = asyncio.run(run_phase(kind, server.url, minutes * 60, concurrency,
                                               server))
            finally:
                server.stop()
            summary.append(report(kind, result, concurrency))
        print("\n## summary\n\n| phase | requests | errors | p99 drift | RSS growth |")
        print("| --- | --- | --- | --- | --- |")
        for s in summary:
            print(f"| {s['kind']} | {s['requests']} | {s['errors']} | {s['p99_drift']:+.1%} | "
                  f"{s['rss_growth']:+.1%} |")


if __name__ == "__main__":
    main()
