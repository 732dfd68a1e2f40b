"""Language models zero2one did not train: the built-in one, ``.gguf`` files, transformers
directories and Hugging Face ids (``hf:ORG/NAME``)."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from zero2one.paths import expand
from zero2one.task import Pretrained
from zero2one.tasks.textgen.config import TextGenRecipe
from zero2one.tasks.textgen.models import load_lm, weights_state

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
    source_state_: tuple[int, int] | None = None  # its weights as read (weights_state)

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
        self.source_state_ = weights_state(model)
        return self

    def as_read(self) -> Path | None:
        """The GGUF file this model was read from, while its weights are still the file's (no
        parameter added, none changed in place since); None otherwise."""
        if self.source_gguf_ is None or self.source_state_ != weights_state(self.model_):
            return None
        return self.source_gguf_


def is_vision_language(ref: str) -> bool:
    """A transformers model whose config has a ``vision_config`` (an image-text-to-text model:
    the vision-language task's), from its directory or, for ``hf:ORG/NAME``, the local Hugging
    Face cache or the hub (its config.json alone; where the hub cannot be reached the id is
    taken for a language model, whose load then says why)."""
    if ref.startswith(HUB_PREFIX):
        from huggingface_hub import try_to_load_from_cache

        repo = ref.removeprefix(HUB_PREFIX)
        if not _HUB_ID.match(repo):  # not a hub id: nothing to ask
            return False
        try:
            cached = try_to_load_from_cache(repo, "config.json")
        except ValueError:  # a name the hub refuses (HFValidationError): the load says so
            return False
        config = _read_json(Path(cached)) if isinstance(cached, str) else hub_config(repo)
    else:
        config = _read_json(expand(ref) / "config.json")
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict)


def hub_config(repo: str, timeout: float = 5.0) -> Any:
    """A hub model's config.json, in one try of at most ``timeout`` seconds all told — the
    name lookup included, which a socket's time-out does not bound (huggingface_hub's own
    download retries for 23 s where there is no network); None when it cannot be had in that
    time or with ``HF_HUB_OFFLINE``."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    token = os.environ.get("HF_TOKEN")
    request = urllib.request.Request(f"{endpoint}/{repo}/resolve/main/config.json",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    found: list[Any] = []

    def ask() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                found.append(json.loads(response.read(1 << 20)))
        except (OSError, ValueError):  # offline, unknown or gated id, not JSON
            pass

    # a daemon thread: one that hangs in the name lookup is left behind, not waited for
    asking = threading.Thread(target=ask, name="zero2one-hub-config", daemon=True)
    asking.start()
    asking.join(timeout)
    return found[0] if found else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
