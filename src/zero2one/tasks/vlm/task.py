"""The vision-language task: answer questions about images.

    zero2one train recipes/digits-vlm.yaml      # after recipes/digits-cnn.yaml: its encoder
    zero2one generate models:/digits-vlm@latest --image 7.png -p "Which digit is this?"

A model directory holds the trained projector (safetensors), a copy of the vision encoder's
own model directory (``vision/``, verified on load like any model) and the name of the language
model with a digest of its weights: loading checks the language model found is the one the
projector was trained against. Held-out evaluation is exact-match answer accuracy per question
type, beside a text-only baseline that never sees the image: the most frequent training answer
to each question (the best any model reading the question alone can do on these data).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from zero2one.data import read_frame
from zero2one.errors import ArtifactError, IntegrityError, RecipeError, SchemaError, UserError
from zero2one.progress import Reporter
from zero2one.refs import load as load_ref
from zero2one.task import DeployFiles, Task, check_options
from zero2one.tasks.textgen.deployment import travelling_lm
from zero2one.tasks.textgen.models import load_lm
from zero2one.tasks.textgen.task import TextGeneration, weights_digest
from zero2one.tasks.textgen.train import quiet_peft
from zero2one.tasks.vision.data import open_image
from zero2one.tasks.vlm import report, serving, train
from zero2one.tasks.vlm.config import VLRecipe
from zero2one.tasks.vlm.data import Question, VLData, load_questions
from zero2one.tasks.vlm.flavor import VisionLanguageFlavor
from zero2one.tasks.vlm.model import (
    Projector,
    VisionLanguageModel,
    feature_extractor,
    generation_options,
    with_lora,
)
from zero2one.tasks.vlm.pretrained import PretrainedVLM
from zero2one.tasks.vlm.pretrained import claims as claims_pretrained
from zero2one.tasks.vlm.pretrained import load as load_pretrained

if TYPE_CHECKING:
    from zero2one.refs import Resolved
    from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)

PROJECTOR = "projector.safetensors"
LORA = "lora.safetensors"  # the language model's adapters, where the recipe tunes it
VISION = "vision"
LM_ENV = "ZERO2ONE_VLM_LM"  # a deployed image's copy of the language model


class VisionLanguage(VisionLanguageFlavor, Task):
    """``predict`` takes ``{"image": ..., "question": ...}`` (or a list of them; the image a
    path, bytes or a PIL image) and returns the answer (or a list); :meth:`chat` takes OpenAI-
    style messages whose content parts hold one image."""

    name = "vision-language"
    pipeline_tag = "image-text-to-text"
    config_model: ClassVar[type[VLRecipe]] = VLRecipe
    config: VLRecipe
    extra = "multimodal"
    requires = ("torch", "transformers", "tokenizers", "safetensors", "PIL")
    serve_requirements = ("numpy", "pillow", "safetensors", "tokenizers", "transformers",
                          "jinja2", "gguf", "filelock")
    needs_torch = True
    reproduce_tolerance = 0.02
    reads_images = True  # zero2one generate --image

    model_: VisionLanguageModel | PretrainedVLM
    answers_: list[dict[str, Any]] | None = None  # the last evaluation's, for the report
    metrics_: dict[str, float]
    vision_: Any  # the image-classification task whose features the model reads (trained)

    # ---- models zero2one did not train --------------------------------------------------------

    @classmethod
    def claims(cls, ref: str) -> bool:
        """A transformers image-text-to-text directory (its config has a ``vision_config``), or
        ``hf:ORG/NAME`` of one (:func:`~zero2one.tasks.textgen.pretrained.is_vision_language`)."""
        return claims_pretrained(ref)

    @classmethod
    def from_pretrained(cls, resolved: Resolved) -> Self:
        source = str(resolved.path) if resolved.path is not None \
            else resolved.ref.removeprefix("hf:")
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.display_name)[:100] or "model"
        # a pretrained model has no recipe of its own: this one names it, and evaluate()
        # takes the data it is given
        self = cls(VLRecipe.model_validate({"task": cls.name, "name": name,
                                            "data": {"source": ""},
                                            "model": {"vision": resolved.ref, "lm": ""}}))
        self.model_ = load_pretrained(source)
        self.vision_ = None
        return self

    # ---- data and training ----------------------------------------------------------------

    def load_data(self) -> VLData:
        return load_questions(self.config.data, self.config.seed)

    def data_paths(self) -> list[Path]:
        source = self.config.data.source
        for prefix in ("folder:", "jsonl:"):
            if source.startswith(prefix):
                return [Path(source.removeprefix(prefix))]
        return []

    def fit(self, data: VLData, *, reporter: Reporter) -> Self:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        with reporter.step("loading the vision encoder and the language model"):
            vision = self._vision(cfg.model.vision)
            lm, tokenizer = load_lm(cfg.model.lm)
        encoder = feature_extractor(vision.net_)
        pixels = vision.prepare(data.images)
        with torch.no_grad():
            maps = encoder(pixels[:1])
        if maps.ndim != 4:
            raise RecipeError(f"model.vision: the encoder's features are {tuple(maps.shape)}, "
                              "not a (B, C, H, W) feature map")
        projector = Projector(int(maps.shape[1]) + int(pixels.shape[1]),
                              int(lm.config.hidden_size), cfg.model.visual_tokens)
        self.lm_digest_ = weights_digest(lm)  # the base's, before any adapter
        self.model_ = VisionLanguageModel(encoder, projector, lm, tokenizer,
                                          system=cfg.model.system)
        self.model_.prepare_images = vision.prepare
        lora = cfg.model.lora
        if lora is not None:
            with quiet_peft():
                self.model_.lm = with_lora(lm, lora.r, lora.alpha, lora.target_modules)
        directory = self.checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.mark_run(directory)
        self.outcome_ = train.fit(self.model_, pixels, data.splits["train"], cfg.train,
                                  seed=cfg.seed, reporter=reporter, checkpoint_dir=directory,
                                  resume=self.resume)
        self.clear_checkpoints(directory)  # done: nothing left to resume
        self.lora_ = None
        if lora is not None:  # kept for saving; merged for fast answers
            from peft import get_peft_model_state_dict

            self.lora_ = {k: v.detach().clone().contiguous()
                          for k, v in get_peft_model_state_dict(self.model_.lm).items()}
            self.model_.lm = self.model_.lm.merge_and_unload().eval()
        self.vision_ = vision
        self.baseline_ = _majority(data.splits["train"])
        return self

    @staticmethod
    def _vision(ref: str) -> Any:
        vision = load_ref(ref)
        if vision.name != "image-classification" or vision.ref is None \
                or vision.ref.path is None or not vision.ref.has_manifest:
            raise RecipeError(f"model.vision: {ref} is a {vision.name} model; give a zero2one "
                              "image-classification model (models:/NAME@ALIAS, a run or its "
                              "directory)")
        if not hasattr(getattr(vision, "net_", None), "features"):
            raise RecipeError(f"model.vision: {ref} is not a torch seed-cnn or small-cnn "
                              "(ONNX and Keras classifiers have no feature map to read)")
        return vision

    # ---- evaluation -------------------------------------------------------------------------

    def evaluate(self, data: VLData) -> dict[str, float]:
        questions = data.splits["test"]
        answers = self._answer([data.images[q.image] for q in questions], questions)
        baseline = getattr(self, "baseline_", None) or _majority(data.splits["train"])
        right: dict[str, list[bool]] = defaultdict(list)
        guessed: dict[str, list[bool]] = defaultdict(list)
        self.answers_ = []  # for the report
        for q, answer in zip(questions, answers, strict=True):
            right[q.kind].append(_same(answer, q.answer))
            guessed[q.kind].append(_same(baseline.get(q.question, ""), q.answer))
            self.answers_.append({"image": q.image, "type": q.kind, "question": q.question,
                                  "expected": q.answer, "answer": answer,
                                  "correct": right[q.kind][-1]})
        metrics = {"accuracy": _mean([x for v in right.values() for x in v]),
                   "baseline_accuracy": _mean([x for v in guessed.values() for x in v])}
        if len(right) > 1:
            for kind in sorted(right):
                metrics[f"accuracy_{kind}"] = _mean(right[kind])
                metrics[f"baseline_accuracy_{kind}"] = _mean(guessed[kind])
        self.metrics_ = metrics
        return metrics

    def report(self, data: VLData, out_dir: Path) -> list[Path]:
        """accuracy.png (per question type, beside the text-only baseline), loss.png, and
        answers.csv: every held-out question with the expected and the given answer."""
        if self.answers_ is None:
            self.evaluate(data)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [report.plot_accuracy(self.metrics_, out_dir / "accuracy.png"),
                   report.write_answers(self.answers_ or [], out_dir / "answers.csv")]
        history = (getattr(self, "manifest", None) or {}).get("training", {}).get("history") \
            or (self.outcome_.history if getattr(self, "outcome_", None) else [])
        if history:
            written.append(report.plot_loss(history, out_dir / "loss.png"))
        return written

    def _answer(self, images: list[Any], questions: list[Question]) -> list[str]:
        size = self.config.eval.batch_size
        out: list[str] = []
        for start in range(0, len(questions), size):
            chunk = questions[start:start + size]
            out += self.answer(images[start:start + size], [q.question for q in chunk])
        return out

    def answer(self, images: list[Any], questions: list[str], **sampling: Any) -> list[str]:
        """Answers to ``questions``, one image each (PIL images); ``sampling``:
        ``max_new_tokens``, ``temperature`` (0, the default: greedy), ``top_p``, ``stop``."""
        tokenizer = self.model_.tokenizer
        return [tokenizer.decode(ids, skip_special_tokens=True).strip()
                for ids in self.generate_ids(images, questions, **sampling)]

    def generate_ids(self, images: list[Any], questions: list[str], *, streamer: Any = None,
                     **sampling: Any) -> list[list[int]]:
        """The answers' new token ids (``streamer``: transformers' streamer of the text)."""
        if len(images) != len(questions):
            raise SchemaError(f"{len(images)} images for {len(questions)} questions")
        sampling.setdefault("max_new_tokens", self.config.eval.max_new_tokens)
        try:
            options = generation_options(self.model_.tokenizer, streamer=streamer, **sampling)
        except TypeError as exc:
            raise UserError(f"generation settings: {exc}") from None
        return self.model_.generate(images, questions, **options)

    # ---- prediction ---------------------------------------------------------------------------

    def predict(self, inputs: Any, /, **sampling: Any) -> Any:
        one = isinstance(inputs, dict)
        rows = [inputs] if one else inputs
        if not isinstance(rows, list | tuple) or not rows:
            raise SchemaError("a vision-language model predicts {'image': ..., 'question': "
                              "...} or a list of them")
        images, questions = [], []
        for number, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) \
                    or "image" not in row:
                raise SchemaError(f"input {number}: needs an image and a question (a string)")
            images.append(open_image(row["image"]))
            questions.append(row["question"])
        answers = self.answer(images, questions, **sampling)
        return answers[0] if one else answers

    def predict_file(self, path: Path, *, reporter: Reporter | None = None,
                     **options: Any) -> Any:
        """A CSV or Parquet file with ``image`` (paths, relative to the file) and ``question``
        columns: the rows come back with an ``answer`` column (``max_new_tokens``)."""
        check_options(self, options, allowed=("max_new_tokens",))
        frame = read_frame(Path(path))
        missing = [c for c in ("image", "question") if c not in frame.columns]
        if missing:
            raise SchemaError(f"{path}: no {' or '.join(missing)} column (a row is an image "
                              "path and a question about it)")
        base = Path(path).parent
        rows = [{"image": base / str(image), "question": str(question)}
                for image, question in zip(frame["image"], frame["question"], strict=True)]
        answers: list[str] = []
        size = self.config.eval.batch_size
        for start in range(0, len(rows), size):
            answers += self.predict(rows[start:start + size],
                                    max_new_tokens=options.get("max_new_tokens") or 16)
        return frame.assign(answer=answers)

    def chat(self, messages: list[dict[str, Any]], **sampling: Any) -> str:
        """The answer to the last user message, whose content holds one image part
        (``{"type": "image", "image": PIL image | path | bytes}``) and text parts."""
        image, text = None, []
        for message in messages:
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for part in content:
                if part.get("type") == "image":
                    if image is not None:
                        raise SchemaError("this model reads one image per conversation")
                    image = open_image(part.get("image"))
                elif part.get("type") == "text":
                    text.append(str(part.get("text", "")))
        if image is None:
            raise SchemaError("no image part in the messages (type: image)")
        return str(self.answer([image], [" ".join(text).strip()], **sampling)[0])

    # ---- serving ----------------------------------------------------------------------------

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        return serving.VLAdapter(self, name, max_rows=settings.max_batch,
                                 max_pixels=settings.max_image_pixels,
                                 max_image_bytes=settings.image_bytes,
                                 allow_urls=settings.allow_image_urls)

    @classmethod
    def routes(cls) -> list[Any]:
        return serving.routes()

    @classmethod
    def deploy_requirements(cls, manifest: dict[str, Any]) -> list[str]:
        return list(cls.serve_requirements)

    @classmethod
    def deploy_files(cls, manifest: dict[str, Any]) -> DeployFiles:
        """The language model travels with the projector: the built-in one as its package, any
        other as a copy of its directory (the weights' digest still guards the pairing)."""
        return travelling_lm(str(manifest.get("lm", "")), folder="lm", env=LM_ENV,
                             role="the language model",
                             builtins=TextGeneration.builtin_models)

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        if not isinstance(self.model_, VisionLanguageModel):
            raise UserError("a pretrained vision-language model is served and evaluated from "
                            "its own directory; zero2one saves the models it trains")

        save_file({k: v.contiguous() for k, v in self.model_.projector.state_dict().items()},
                  str(path / PROJECTOR))
        if self.lora_:
            save_file(self.lora_, str(path / LORA))
        shutil.copytree(self.vision_.ref.path, path / VISION)  # whole: its manifest lists all
        outcome = getattr(self, "outcome_", None)
        saved = getattr(self, "manifest", None) or {}
        training = saved.get("training") or {}
        if outcome is not None:
            training = {"history": outcome.history, "steps": outcome.steps,
                        "resumed_from": outcome.resumed_from,
                        "trainable_parameters": outcome.trainable,
                        "seconds": round(outcome.train_seconds, 1)}
        return {"lm": self.config.model.lm, "lm_weights_sha256": self.lm_digest_,
                "channels": self.model_.projector.mlp[0].in_features,
                "baseline": self.baseline_, "training": training,
                "libraries": ["torch", "transformers", "safetensors", "tokenizers"]}

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        from safetensors.torch import load_file

        self = cls(cls.recipe_from(manifest, path))
        try:
            lm_ref, digest = manifest["lm"], manifest["lm_weights_sha256"]
            channels, self.baseline_ = int(manifest["channels"]), dict(manifest["baseline"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: incomplete vision-language manifest ({exc})") from None
        self.vision_ = load_ref(path / VISION)
        lm, tokenizer = load_lm(os.environ.get(LM_ENV) or lm_ref)
        if weights_digest(lm) != digest:
            raise IntegrityError(f"{path}: the projector was trained against other weights "
                                 f"than those of {lm_ref} here; refusing to load it")
        projector = Projector(channels, int(lm.config.hidden_size),
                              self.config.model.visual_tokens)
        projector.load_state_dict(load_file(str(path / PROJECTOR)))
        lora, self.lora_ = self.config.model.lora, None
        if lora is not None:  # the adapters, merged into the language model
            from peft import set_peft_model_state_dict

            self.lora_ = load_file(str(path / LORA))
            with quiet_peft():
                tuned = with_lora(lm, lora.r, lora.alpha, lora.target_modules)
                set_peft_model_state_dict(tuned, self.lora_)
            lm = tuned.merge_and_unload().eval()
        self.model_ = VisionLanguageModel(feature_extractor(self.vision_.net_),
                                          projector.eval(), lm, tokenizer,
                                          system=self.config.model.system)
        self.model_.prepare_images = self.vision_.prepare
        self.lm_digest_ = digest
        self.manifest = manifest
        return self


def _majority(questions: list[Question]) -> dict[str, str]:
    """The most frequent training answer to each question (ties: the first seen)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for q in questions:
        counts[q.question][q.answer] += 1
    return {question: c.most_common(1)[0][0] for question, c in counts.items()}


def _same(answer: str, expected: str) -> bool:
    """Exact match, ignoring case, surrounding space and a final full stop."""
    def norm(text: str) -> str:
        return " ".join(text.strip().rstrip(".").lower().split())
    return norm(answer) == norm(expected)


def _mean(values: list[bool]) -> float:
    return float(sum(values) / len(values)) if values else 0.0

