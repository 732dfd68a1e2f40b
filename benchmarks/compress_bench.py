"""Export and INT8 compression against what the user had, in the same run.

1. Image classifiers (digits: recipes/digits-cnn.yaml; shapes: recipes/shapes-cnn.yaml on
   generated 32×32 shapes): the FP32 model exported to ONNX, then INT8 by static post-training
   quantization, quantization-aware fine-tuning and dynamic quantization. Per model: file size,
   test accuracy, p50 latency at batch 1 and throughput at batch 64 — against ONNX Runtime FP32
   (same runtime, same threads) and torch eager FP32, with the issue's goals checked.
2. Tabular (recipes/iris-svc.yaml): the ONNX pipeline's p50 at batch 1 against scikit-learn's,
   and `/predict` req/s at 32 connections (wrk, 127.0.0.1, a fixed duration) with the ONNX model
   against the scikit-learn model, one `zero2one serve` worker each, one after the other.

    python benchmarks/compress_bench.py [--only vision tabular] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOALS = "INT8 file ≤ 26 % of FP32; accuracy ≥ 99 % of FP32; ≥ 1.5× ORT FP32 and ≥ 4× torch eager"


def _train(recipe: Path, overrides: list[str], out: Path) -> Path:
    from zero2one.api import train

    train(recipe, overrides=[*overrides, "track.enabled=false"], out=out)
    return out


def vision(work: Path) -> None:
    from zero2one.convert import CompressOptions, compress

    shapes = work / "shapes"
    subprocess.run([str(Path(sys.executable).parent / "zero2one"), "datasets", "make", "shapes",
                    str(shapes), "--size", "32", "--per-class", "1000", "--seed", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    jobs = {
        "digits (small-cnn, 8×8×1)": (REPO / "recipes/digits-cnn.yaml", []),
        "shapes (seed-cnn, the guide's CNN, 32×32×3)": (REPO / "recipes/shapes-cnn.yaml",
                                                        [f"data.source=folder:{shapes}"]),
        "shapes (small-cnn, 32×32×3)": (REPO / "recipes/shapes-cnn.yaml",
                                        [f"data.source=folder:{shapes}",
                                         "model.arch=small-cnn"]),
    }
    for number, (title, (recipe, overrides)) in enumerate(jobs.items()):
        started = time.perf_counter()
        model = _train(recipe, overrides, work / f"{number}-fp32")
        trained = time.perf_counter() - started
        runs = {}
        for method in ("static", "qat", "dynamic"):
            started = time.perf_counter()
            runs[method] = compress(str(model), method, options=CompressOptions(),
                                    overrides=overrides, out=work / f"{number}-{method}")
            runs[method].seconds = time.perf_counter() - started  # type: ignore[attr-defined]
        _vision_table(title, runs, trained)


def _vision_table(title: str, runs: dict[str, Any], trained: float) -> None:
    eager, fp32, _ = runs["static"].report
    print(f"\n### {title}: trained in {trained:.0f} s\n")
    print("model | size KB | × FP32 size | accuracy | × FP32 acc | p50 b1 ms | × ORT FP32 | "
          "× eager | b64 img/s | × ORT FP32 | × eager | goals | s to make")
    print("--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---")
    print(f"torch eager float32 | {eager['size_bytes'] / 1e3:.1f} | - | {eager['value']:.4f} | "
          f"- | {eager['p50_batch1_ms']:.3f} | - | 1.00 | "
          f"{eager['throughput_batch64_per_s']:.0f} | - | 1.00 | | ")
    print(f"onnxruntime float32 | {fp32['size_bytes'] / 1e3:.1f} | 100 % | {fp32['value']:.4f} | "
          f"1.000 | {fp32['p50_batch1_ms']:.3f} | 1.00 | "
          f"{fp32['speedup_batch1_vs_parent']:.2f} | {fp32['throughput_batch64_per_s']:.0f} | "
          f"1.00 | {fp32['speedup_batch64_vs_parent']:.2f} | | ")
    for method, result in runs.items():
        _, base, new = result.report  # ratios within the run that measured them
        size = new["size_bytes"] / base["size_bytes"]
        accuracy = new["value"] / base["value"]
        ratios = [new["speedup_batch1_vs_same_runtime"], new["speedup_batch1_vs_parent"],
                  new["speedup_batch64_vs_same_runtime"], new["speedup_batch64_vs_parent"]]
        met = [size <= 0.26, accuracy >= 0.99, ratios[0] >= 1.5, ratios[1] >= 4,
               ratios[2] >= 1.5, ratios[3] >= 4]
        marks = "".join("✓" if m else "✗" for m in met)
        print(f"int8 {method} | {new['size_bytes'] / 1e3:.1f} | {size:.1%} | "
              f"{new['value']:.4f} | {accuracy:.3f} | {new['p50_batch1_ms']:.3f} | "
              f"{ratios[0]:.2f} | {ratios[1]:.2f} | {new['throughput_batch64_per_s']:.0f} | "
              f"{ratios[2]:.2f} | {ratios[3]:.2f} | {marks} | {result.seconds:.0f}")
    print("\ngoals (✓/✗ in order): size ≤ 26 %, accuracy ≥ 99 %, b1 ≥ 1.5× ORT FP32, b1 ≥ 4× "
          "eager, b64 ≥ 1.5× ORT FP32, b64 ≥ 4× eager")


# ---- tabular ------------------------------------------------------------------------------

def tabular(work: Path, duration: int) -> None:
    from zero2one.convert import export

    model = _train(REPO / "recipes/iris-svc.yaml", [], work / "iris-sklearn")
    result = export(str(model), "onnx", out=work / "iris-onnx")
    sk, onnx = result.report
    print("\n### iris-svc: the pipeline, scikit-learn against ONNX Runtime (in process)\n")
    print("model | size KB | accuracy | p50 batch 1 ms | × scikit-learn | batch 64 rows/s | "
          "× scikit-learn")
    print("--- | --- | --- | --- | --- | --- | ---")
    for row in (sk, onnx):
        print(f"{row['model']} | {row['size_bytes'] / 1e3:.1f} | {row['value']:.4f} | "
              f"{row['p50_batch1_ms']:.3f} | {row['speedup_batch1_vs_parent']:.2f} | "
              f"{row['throughput_batch64_per_s']:.0f} | {row['speedup_batch64_vs_parent']:.2f}")
    if shutil.which("wrk") is None:
        print("\n(wrk not found: apt-get install wrk for the /predict load test)")
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_load import free_port, wrk

    body = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]})
    results = {}
    for label, directory in (("scikit-learn", model), ("onnxruntime", result.model_dir)):
        port = free_port()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "zero2one"), "serve", str(directory), "--port",
             str(port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            _wait(url, body)
            results[label] = wrk(url, body, 32, duration, work)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    base = results["scikit-learn"]["rps"]
    print(f"\n### /predict on one `zero2one serve` worker, wrk -c32, {duration} s each\n")
    print("model | req/s | × scikit-learn | p50 ms | p99 ms | errors")
    print("--- | --- | --- | --- | --- | ---")
    for label, r in results.items():
        print(f"{label} | {r['rps']:.0f} | {r['rps'] / base:.2f} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['errors']}")


def _wait(url: str, body: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, body.encode(),
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["vision", "tabular"],
                        default=["vision", "tabular"])
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per server")
    parser.add_argument("--bench-seconds", type=float, default=2.0,
                        help="least time spent timing each model at each batch size")
    args = parser.parse_args()
    import torch

    from zero2one import convert

    convert.MIN_BENCH_SECONDS = args.bench_seconds
    work = Path(tempfile.mkdtemp(prefix="z21-compress-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    print(f"{torch.get_num_threads()} threads; {GOALS}")
    try:
        if "vision" in args.only:
            vision(work)
        if "tabular" in args.only:
            tabular(work, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
