"""Language models zero2one did not train: the built-in one, ``.gguf`` files, transformers
directories and Hugging Face ids (``hf:ORG/NAME``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from zero2one.paths import expand
from zero2one.task import Pretrained
from zero2one.tasks.textgen.config import TextGenRecipe
from zero2one.tasks.textgen.models import load_lm

if TYPE_CHECKING:
    from zero2one.refs import Resolved

HUB_PREFIX = "hf:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class TextPretrained(Pretrained):
    """The pretrained-models capability of
    :class:`~zero2one.tasks.textgen.task.TextGeneration`."""

    model_: Any
    tokenizer_: Any
    kind_: str
    source_gguf_: Path | None = None  # the GGUF a pretrained model was read from

    @classmethod
    def claims(cls, ref: str) -> bool:
        """A ``.gguf`` file, a transformers directory (``config.json``, no zero2one manifest)
        or ``hf:ORG/NAME``, a Hugging Face id (explicit: a mistyped local path must not turn
        into a minute of network time-outs)."""
        if ref.startswith(HUB_PREFIX):
            return bool(_HUB_ID.match(ref.removeprefix(HUB_PREFIX))) and \
                not is_vision_language(ref)
        path = expand(ref)
        return path.suffix == ".gguf" or (path.is_dir() and (path / "config.json").exists()
                                          and not is_vision_language(ref))

    @classmethod
    def from_pretrained(cls, resolved: Resolved) -> Self:
        source = (str(resolved.path) if resolved.path is not None
                  else resolved.ref.removeprefix(HUB_PREFIX))
        model, tokenizer = load_lm(source)
        name = resolved.display_name
        # a pretrained model has no recipe of its own: this one names it as the base, and
        # evaluate() takes the data it is given
        self = cls(TextGenRecipe.model_validate({
            "task": cls.name, "name": re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:100] or "model",
            "data": {"source": ""}, "model": {"base": resolved.ref}}))
        self.model_, self.tokenizer_ = model, tokenizer
        self.kind_ = "chat" if getattr(tokenizer, "chat_template", None) else "text"
        if resolved.ref.startswith("builtin:"):
            builtin = cls.builtin_models.get(resolved.ref.removeprefix("builtin:"))
            self.source_gguf_ = builtin.file() if builtin else None
        elif resolved.path is not None and resolved.path.suffix == ".gguf":
            self.source_gguf_ = resolved.path
        return self


def is_vision_language(ref: str) -> bool:
    """A transformers model whose config has a ``vision_config`` (an image-text-to-text model:
    the vision-language task's), from its directory or, for ``hf:ORG/NAME``, the local Hugging
    Face cache (an id not cached yet is taken for a language model)."""
    if ref.startswith(HUB_PREFIX):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.removeprefix(HUB_PREFIX), "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    else:
        path = expand(ref) / "config.json"
    if path is None or not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict)
