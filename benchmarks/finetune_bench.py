"""LoRA against full fine-tuning of the built-in SmolLM2-135M-Instruct on this machine: the same
data (examples/zero2one-qa), the same optimizer steps and batches; each in its own process so
peak RSS is its own. Learning rates differ as each method needs (LoRA 2e-3 as in the recipe,
full 5e-5).

    python benchmarks/finetune_bench.py [--steps 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "smollm2-lora.yaml"

CHILD = """
import json, resource, sys
from zero2one.api import train
result = train(sys.argv[1], overrides=json.loads(sys.argv[2]), out=sys.argv[3])
print(json.dumps({"metrics": result.metrics, "fit_s": result.seconds["fit"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(method: str, lr: float, steps: int, work: Path) -> dict:
    overrides = [f"model.method={method}", f"train.lr={lr}", f"train.max_steps={steps}",
                 "track.enabled=false", "eval.samples=0", "train.save_steps=1000"]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(RECIPE), json.dumps(overrides), str(work / method)],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "ZERO2ONE_HOME": str(work / ".zero2one")})
    return json.loads(done.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-ft-bench-"))
    rows = {"lora": run("lora", 2e-3, args.steps, work), "full": run("full", 5e-5, args.steps,
                                                                     work)}
    print(f"\nSmolLM2-135M-Instruct, examples/zero2one-qa (40 train / 15 held-out chats), "
          f"{args.steps} optimizer steps of 4 × 2 chats, CPU\n")
    print("method | trainable params | peak RSS MB | train tokens/s | fit s | "
          "val perplexity before → after | saved MB")
    print("--- | --- | --- | --- | --- | --- | ---")
    for method, row in rows.items():
        m = row["metrics"]
        print(f"{method} | {m['trainable_share']:.2%} | {row['peak_rss_mb']:.0f} | "
              f"{m['train_tokens_per_second']:.0f} | {row['fit_s']:.0f} | "
              f"{m['base_val_perplexity']:.1f} → {m['val_perplexity']:.1f} | "
              f"{size_mb(work / method):.1f}")


if __name__ == "__main__":
    main()
