"""Language models on vLLM (``zero2one deploy docker|k8s MODEL --engine vllm``).

vLLM is the standard server for language models on GPUs: an OpenAI-compatible API
(``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``), continuous batching and paged
attention. A fully fine-tuned (or merged) model is served as it is; a LoRA model is served as
its base plus the adapter (``--enable-lora --lora-modules NAME=DIR``), so several fine-tuned
versions of one base share its weights on one GPU. zero2one's own server stays the default on
CPUs, where it measured faster (see the README).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zero2one.errors import UserError
from zero2one.task import EngineDeployment
from zero2one.tasks.textgen.models import resolve_lm

IMAGE = "vllm/vllm-openai:v0.32.0"  # the release whose CPU build was checked against zero2one
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank takes
# the autoscaler's metric: requests waiting per pod, as a Prometheus adapter names vLLM's
# vllm:num_requests_waiting gauge in the custom metrics API
QUEUE_METRIC = ("vllm_num_requests_waiting", "4")


def deployment(models: list[tuple[Path, dict[str, Any]]], *, name: str) -> EngineDeployment:
    (first_dir, first), *others = models
    for path, manifest in models:
        if "int8" in manifest.get("parts", {}):
            raise UserError(f"{path}: an int8-weights model runs on zero2one's server; deploy "
                            "the model it was compressed from on vLLM")
    command = ["vllm", "serve"]
    copy: dict[str, Path] = {}
    parts = first.get("parts", {})
    if "merged" in parts and not others:
        copy["model"] = first_dir / parts["merged"]
        command += ["/app/model", "--served-model-name", name]
    else:
        base, digest = first.get("base"), first.get("base_weights_sha256")
        adapters: dict[str, Path] = {}
        for path, manifest in models:
            if "adapter" not in manifest.get("parts", {}):
                raise UserError(f"{path}: not a LoRA model; only LoRA models of one base are "
                                "served side by side (--also)")
            if (manifest.get("base"), manifest.get("base_weights_sha256")) != (base, digest):
                raise UserError(f"{path}: its base ({manifest.get('base')}) is not "
                                f"{first_dir}'s ({base}); models served together share a base")
            adapter = _served_name(manifest, path)
            if adapter in adapters:
                raise UserError(f"two models are both named {adapter!r}; register them under "
                                "different names")
            adapters[adapter] = path / manifest["parts"]["adapter"]
        source = resolve_lm(str(base))
        if not isinstance(source, Path):
            raise UserError(f"the base model {base!r} is a Hugging Face id; save it with "
                            "save_pretrained and fine-tune from that directory to deploy it")
        copy["base"] = source
        for adapter, path in adapters.items():
            copy[f"adapters/{adapter}"] = path
        rank = max(_rank(path) for path in adapters.values())
        command += ["/app/base", "--served-model-name", f"{name}-base", "--enable-lora",
                    "--max-lora-rank", str(next(r for r in LORA_RANKS if r >= rank)),
                    "--max-loras", str(len(adapters)),
                    "--lora-modules", *(f"{a}=/app/adapters/{a}" for a in adapters)]
    command += ["--host", "0.0.0.0", "--port", "8000", "--dtype", "auto",
                "--generation-config", "vllm"]
    served = [a.removeprefix("adapters/") for a in copy if a.startswith("adapters/")] or [name]
    size = sum(f.stat().st_size for d in copy.values() for f in d.rglob("*") if f.is_file())
    request = max(8, int(size * 3 / 2**30) + 6)
    return EngineDeployment(
        image=IMAGE, command=command, copy=copy, port=8000, health="/health",
        api_key_env="VLLM_API_KEY", gpus=1, scale_metric=QUEUE_METRIC,
        memory={"memory_request": f"{request}Gi", "memory_limit": f"{request * 2}Gi"},
        notes=["vLLM serves /v1/chat/completions, /v1/completions and /v1/models (not /predict "
               "nor zero2one's moderation and feedback routes); ask for the model by name: "
               + ", ".join(served)])


def _served_name(manifest: dict[str, Any], path: Path) -> str:
    import re

    raw = str(manifest.get("name") or path.name).lower()
    return re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-") or "model"


def _rank(adapter: Path) -> int:
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{adapter}: no readable adapter_config.json ({exc})") from None
