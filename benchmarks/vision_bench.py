"""Image classification: accuracy, and zero2one's training loop against a minimal hand-written
PyTorch loop with the same model, data and batch size.

1. digits: the shipped recipe (recipes/digits-cnn.yaml) end to end — test accuracy, with an SVC
   on the same test split for reference; then time per epoch, zero2one vs the hand-written loop,
   both for EPOCHS epochs with no augmentation or early stopping (same work per epoch).
2. shapes (generated, 32×32×3, 1000 per class): seed-cnn vs small-cnn — test accuracy, training
   images/s, prediction images/s (tensors in memory, and PNG files end to end).

    python benchmarks/vision_bench.py [--epochs 10] [--shapes-epochs 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zero2one.tasks.vision.models import SmallCNN

REPO = Path(__file__).resolve().parents[1]


def digits_recipe() -> dict[str, Any]:
    import zero2one

    recipe = zero2one.load_recipe(REPO / "recipes/digits-cnn.yaml").model_dump(
        mode="json", by_alias=True)
    recipe["track"] = {"enabled": False}
    recipe["register"] = None
    return recipe


def hand_loop(recipe: dict[str, Any], epochs: int) -> list[float]:
    """The minimal loop: same split, normalisation, model, optimizer and batch size."""
    from zero2one.catalog import get_task, validate

    config = validate(recipe)
    data = get_task(config.task)(config).load_data()  # identical tensors to zero2one's
    (x, y), (xv, yv) = data.splits["train"], data.splits["val"]
    torch.manual_seed(config.seed)
    model = SmallCNN(data.channels, len(data.class_names), data.image_size,
                     **config.model.params)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    batch = config.train.batch_size
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            index = order[i: i + batch]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(xv), yv)
        times.append(time.perf_counter() - start)
    return times


def svc_accuracy(recipe: dict[str, Any]) -> float:
    from sklearn.svm import SVC

    from zero2one.catalog import get_task, validate

    config = validate(recipe)
    data = get_task(config.task)(config).load_data()
    (x, y), (xt, yt) = data.splits["train"], data.splits["test"]
    model = SVC(gamma="scale").fit(x.flatten(1).numpy(), y.numpy())
    return float((model.predict(xt.flatten(1).numpy()) == yt.numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--shapes-epochs", type=int, default=8)
    args = parser.parse_args()

    import zero2one
    from zero2one.tasks.vision.predict import predict_images
    from zero2one.tasks.vision.shapes import make_shapes

    work = Path(tempfile.mkdtemp(prefix="z21-vision-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    torch.set_num_threads(os.cpu_count() or 1)

    # 1. digits: the recipe as shipped
    recipe = digits_recipe()
    shipped = zero2one.train(recipe, out=work / "digits")
    svc = svc_accuracy(recipe)
    # time per epoch on identical work
    same = {**recipe, "train": {**recipe["train"], "epochs": args.epochs, "augment": {},
                                "early_stopping": None, "scheduler": "none"}}
    hand = hand_loop(same, args.epochs)
    ours = zero2one.train(same, out=work / "digits-timed")
    ours_epochs = [h["seconds"] for h in zero2one.load(work / "digits-timed")
                   .manifest["training"]["history"]]
    print("\n## digits (8×8, 1797 images; test split 15 %)\n")
    print("model | test accuracy | epochs run | best epoch")
    print("--- | --- | --- | ---")
    print(f"zero2one small-cnn (recipes/digits-cnn.yaml) | {shipped.metrics['accuracy']:.4f} | "
          f"{shipped.metrics['epochs']:.0f} | {shipped.metrics['best_epoch']:.0f}")
    print(f"SVC (scikit-learn defaults, same split) | {svc:.4f} | - | -")
    print(f"\ntime per epoch, {args.epochs} epochs, no augmentation (median s):\n")
    print("hand-written loop | zero2one | ratio")
    print("--- | --- | ---")
    h, z = statistics.median(hand), statistics.median(ours_epochs)
    print(f"{h:.3f} | {z:.3f} | {z / h:.3f}×  (zero2one test accuracy "
          f"{ours.metrics['accuracy']:.4f})")

    # 2. shapes
    shapes = work / "shapes"
    make_shapes(shapes, size=32, per_class=1000, seed=0)
    print(f"\n## shapes (32×32×3, 4 classes × 1000, {args.shapes_epochs} epochs max)\n")
    print("arch | params | test accuracy | train images/s | predict images/s (tensors) | "
          "predict images/s (PNG files)")
    print("--- | --- | --- | --- | --- | ---")
    for arch in ("seed-cnn", "small-cnn"):
        config = zero2one.load_recipe(REPO / "recipes/shapes-cnn.yaml", [
            f"data.source=folder:{shapes}", f"model.arch={arch}",
            f"train.epochs={args.shapes_epochs}", "track.enabled=false"])
        result = zero2one.train(config, out=work / arch)
        model = zero2one.load(work / arch)
        history = model.manifest["training"]["history"]
        n_train = round(4000 * (1 - config.data.val_size - config.data.test_size))
        train_rate = n_train * len(history) / sum(h["seconds"] for h in history)
        x = torch.randn(2000, 3, 32, 32)
        model.probabilities(x[:64])
        start = time.perf_counter()
        model.probabilities(x)
        tensor_rate = len(x) / (time.perf_counter() - start)
        start = time.perf_counter()
        scored = predict_images(model, shapes / "star")  # 1000 PNG files: read, decode, predict
        file_rate = len(scored) / (time.perf_counter() - start)
        params = sum(p.numel() for p in model.net_.parameters())
        print(f"{arch} | {params:,} | {result.metrics['accuracy']:.4f} | {train_rate:,.0f} | "
              f"{tensor_rate:,.0f} | {file_rate:,.0f}")


if __name__ == "__main__":
    main()
