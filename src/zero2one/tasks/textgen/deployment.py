"""How a language model is deployed: what its image installs and carries (a LoRA model's base
travels with it), its memory, and vLLM as another server."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zero2one.errors import UserError
from zero2one.task import BuiltinModel, DeployFiles, Deployment
from zero2one.tasks.textgen import vllm
from zero2one.tasks.textgen.models import resolve_lm

BASE_ENV = "ZERO2ONE_TEXTGEN_BASE"  # a deployed image's copy of a LoRA model's base


class TextDeployment(Deployment):
    """The deployment capability of :class:`~zero2one.tasks.textgen.task.TextGeneration`."""

    @classmethod
    def deploy_requirements(cls, manifest: dict[str, Any]) -> list[str]:
        needs = list(cls.serve_requirements)
        if "gguf" in manifest.get("parts", {}):
            return [*needs, "gguf"]
        if not {"merged", "int8"} & set(manifest.get("parts", {})):  # adapter merged at load
            needs.append("peft")
            if str(manifest.get("base", "")).startswith("builtin:"):
                needs.append("gguf")  # the built-in base is converted from GGUF on first load
        return needs

    @classmethod
    def deploy_files(cls, manifest: dict[str, Any]) -> DeployFiles:
        """A LoRA model's base travels with it: a built-in base as its package, any other as a
        copy of its directory (the adapter's base-weights hash still guards the pairing)."""

        base = str(manifest.get("base", ""))
        if {"merged", "int8", "gguf"} & set(manifest.get("parts", {})) or not base:
            return DeployFiles()
        return travelling_lm(base, folder="base", env=BASE_ENV, role="the base model",
                             builtins=cls.builtin_models)

    @classmethod
    def engine_deployment(cls, engine: str, models: list[tuple[Path, dict[str, Any]]], *,
                          name: str) -> Any:
        return vllm.deployment(models, name=name)

    @classmethod
    def deploy_resources(cls, manifest: dict[str, Any], model_bytes: int) -> dict[str, str]:
        """The whole language model is in memory (a LoRA directory holds only the adapter):
        float32 weights, the decoding step's bfloat16 copy and fused matrices, the KV caches
        (SmolLM2-135M peaked at 1.28 GB serving here)."""
        parameters = int((manifest.get("training") or {}).get("total_parameters") or 0)
        weights_mib = max(parameters * 4, model_bytes) / 2**20
        request = int(weights_mib * 2.5 + 512)
        return {"memory_request": f"{request}Mi", "memory_limit": f"{request * 2}Mi"}


def travelling_lm(ref: str, *, folder: str, env: str, role: str,
                  builtins: Mapping[str, BuiltinModel]) -> DeployFiles:
    """A language model a deployed image needs beside the model directory: a built-in one as
    its package, any other as a copy of its directory in ``/app/FOLDER`` (named to the server
    by ``env``); a Hugging Face id is refused, since the image would download it at start-up."""
    if ref.startswith("builtin:"):
        model = builtins.get(ref.removeprefix("builtin:"))
        return DeployFiles(no_deps=[model.distribution] if model else [])
    source = resolve_lm(ref)
    if not isinstance(source, Path):
        raise UserError(f"{role} {ref!r} is a Hugging Face id; the image would download it at "
                        "start-up. Save it with save_pretrained and train from that directory "
                        "to deploy it")
    return DeployFiles(copy={folder: source}, env={env: f"/app/{folder}"})
