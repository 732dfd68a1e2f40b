"""Text-to-image from scratch: prompt adherence by guidance scale, the pull of a negative prompt,
CPU training time, and sampling speed against diffusers' DDPM defaults — in one run.

    python benchmarks/imagegen_bench.py --data digits   # recipes/digits-diffusion.yaml
    python benchmarks/imagegen_bench.py --data shapes   # recipes/shapes-diffusion.yaml

Trains the recipe untracked (or loads --model DIR), then:
- adherence: the share of images a held-out judge classifier (zero2one's image-classification
  task trained on images the generator never saw) reads as the prompted class, per guidance scale;
- negative prompt: a prompt naming no class ("a handwritten digit") draws mostly one class; the
  share of that class without, and with that class's caption as the negative prompt;
- images/s: DDIM 20 steps (the recipe's sampler) against the same model sampled with diffusers'
  DDPM pipeline defaults (DDPMScheduler, 1000 steps), same batch, same guidance.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETS = {
    "digits": {"recipe": "recipes/digits-diffusion.yaml", "open": "a handwritten digit"},
    "shapes": {"recipe": "recipes/shapes-diffusion.yaml", "open": "a red shape"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SETS), default="digits")
    parser.add_argument("--model", type=Path, help="a trained model directory (skip training)")
    parser.add_argument("--images", type=int, default=100, help="images per negative-prompt arm")
    parser.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE")
    parser.add_argument("--no-speed", action="store_true", help="skip the sampling-speed table")
    args = parser.parse_args()
    os.environ.setdefault("ZERO2ONE_HOME", tempfile.mkdtemp(prefix="z21-bench-"))
    os.chdir(REPO)

    import torch

    from zero2one.api import load, train
    from zero2one.catalog import load_recipe

    spec = SETS[args.data]
    threads = torch.get_num_threads()
    if args.model is None:
        out = Path(tempfile.mkdtemp(prefix="z21-model-")) / "model"
        started = time.perf_counter()
        result = train(spec["recipe"], overrides=[*args.set, "track.enabled=false"], out=out)
        total = time.perf_counter() - started
        print(f"trained {spec['recipe']} in {result.seconds['fit'] / 60:.1f} min (fit), "
              f"{total / 60:.1f} min with data, evaluation and report; {threads} threads")
        model = load(out)
    else:
        model = load(args.model)
    config = load_recipe(spec["recipe"], [*args.set, "track.enabled=false"])
    model.config = config
    data = model.load_data()
    metrics = model.evaluate(data)
    judge = model._judge(data)

    print(f"\n## {args.data}: prompt adherence (judge accuracy on real held-out images "
          f"{metrics.get('judge_accuracy', float('nan')):.3f}; {config.eval.images_per_prompt} "
          f"images per prompt, DDIM {model.defaults_.steps} steps)\n")
    print("guidance scale | adherence")
    print("--- | ---")
    for scale in config.eval.guidance_scales:
        print(f"{scale:g} | {metrics[f'adherence_g{scale:g}']:.3f}")
    print(f"\ndiversity at guidance {model.defaults_.guidance_scale:g}: "
          f"{metrics['diversity']:.3f} (real held-out images: {metrics['real_diversity']:.3f})")

    # the pull of a negative prompt: a prompt naming no class draws mostly one class; naming that
    # class in the negative prompt should move the images away from it
    print(f"\n## negative prompt: prompt {spec['open']!r}, the class it draws most named in the "
          f"negative prompt ({args.images} images each)\n")
    print("guidance | most drawn without negative | its share | share with it as negative | "
          "most drawn with negative")
    print("--- | --- | --- | --- | ---")

    def shares(negative: str | None, scale: float) -> np.ndarray:
        images = [im for start in range(0, args.images, 50)
                  for im in model.generate(spec["open"], negative_prompt=negative,
                                           guidance_scale=scale, seed=1000 + start,
                                           n=min(50, args.images - start))]
        predicted = np.asarray(judge.predict(images))
        return np.bincount(predicted[predicted >= 0], minlength=len(data.prompts)) / len(images)

    for scale in (3.0, 5.0):
        before = shares(None, scale)
        top = int(before.argmax())
        after = shares(data.prompts[top], scale)
        print(f"{scale:g} | {data.prompts[top]} | {before[top]:.2f} | {after[top]:.2f} | "
              f"{data.prompts[int(after.argmax())]} ({after.max():.2f})")

    if args.no_speed:
        return
    # sampling speed: DDIM 20 against diffusers' DDPM pipeline defaults (1000 steps)
    batch = 20
    print(f"\n## sampling speed ({batch} images per call, guidance "
          f"{model.defaults_.guidance_scale:g}, {threads} threads)\n")
    print("sampler | steps | images/s | ×")
    print("--- | --- | --- | ---")
    rates = {}
    for name, scheduler, steps in (("DDPM (diffusers' default)", "ddpm", 1000),
                                   ("DDIM (recipe)", "ddim", model.defaults_.steps),
                                   ("DPM-Solver++", "dpm++", model.defaults_.steps)):
        model.generate(data.prompts[0], steps=2, scheduler=scheduler, n=batch, seed=0)  # warm
        start = time.perf_counter()
        model.generate(data.prompts[0], steps=steps, scheduler=scheduler, n=batch, seed=0)
        rates[name] = batch / (time.perf_counter() - start)
        base = rates["DDPM (diffusers' default)"]
        print(f"{name} | {steps} | {rates[name]:.2f} | {rates[name] / base:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
