"""Vision-language models zero2one did not train: any transformers image-text-to-text model
(``AutoModelForImageTextToText`` with its ``AutoProcessor``: SmolVLM, Qwen2.5-VL, LLaVA, ...)
from a local ``save_pretrained`` directory or ``hf:ORG/NAME``, safetensors weights only.

It answers through its own processor and chat template, behind the same interface as the model
trained here (:class:`~zero2one.tasks.vlm.model.VisionLanguageModel`): ``generate`` (new token
ids per question about its image), ``count`` and ``tokenizer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zero2one.errors import ModelRefError, UserError, require
from zero2one.paths import expand
from zero2one.tasks.textgen.pretrained import HUB_PREFIX, is_vision_language


def claims(ref: str) -> bool:
    """A transformers directory (or a Hugging Face id) whose config has a ``vision_config``:
    an image-text-to-text model."""
    if ref.startswith(HUB_PREFIX) or (expand(ref).is_dir() and not
                                      (expand(ref) / "manifest.json").exists()):
        return is_vision_language(ref)
    return False


def load(source: str | Path) -> PretrainedVLM:
    require("transformers", "text")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(source)
    if path.is_dir() and not any(path.glob("*.safetensors")):
        raise ModelRefError(f"{source}: no .safetensors weights (zero2one loads no pickled "
                            "weights: save the model with safe_serialization=True)")
    try:
        processor = AutoProcessor.from_pretrained(str(source))
        model = AutoModelForImageTextToText.from_pretrained(str(source), dtype=torch.float32,
                                                            use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelRefError(f"cannot load {source} as an image-text-to-text model: "
                            f"{str(exc).splitlines()[0]}") from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or not getattr(processor, "chat_template", None):
        raise ModelRefError(f"{source}: the processor has no tokenizer or chat template")
    return PretrainedVLM(model.eval(), processor)


class PretrainedVLM:
    def __init__(self, model: Any, processor: Any) -> None:
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues each row's end
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _texts(self, questions: Sequence[str]) -> list[str]:
        return [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True, tokenize=False) for q in questions]

    def _inputs(self, images: Sequence[Any], questions: Sequence[str]) -> Any:
        try:
            return self.processor(images=[[image.convert("RGB")] for image in images],
                                  text=self._texts(questions), return_tensors="pt",
                                  padding=True)
        except (ValueError, TypeError) as exc:
            raise UserError(f"the model's processor refused the input: {exc}") from None

    def count(self, question: str) -> int:
        from PIL import Image

        blank = Image.new("RGB", (32, 32))
        return int(self._inputs([blank], [question])["input_ids"].shape[1])

    def generate(self, images: Sequence[Any], questions: Sequence[str],
                 **options: Any) -> list[list[int]]:
        import torch

        inputs = self._inputs(images, questions)
        with torch.no_grad():
            out = self.model.generate(**inputs, **options)
        start = inputs["input_ids"].shape[1]  # the prompt comes back before the answer
        return [row[start:].tolist() for row in out]

