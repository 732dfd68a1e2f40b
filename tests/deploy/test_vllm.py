"""``deploy docker|k8s --engine vllm``: a language model on vLLM's OpenAI server — merged, or a
base with LoRA adapters that share it — validated like the other deployment files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from zero2one.deploy import render_docker, render_k8s
from zero2one.errors import UserError

from .test_render import K8S_VERSION, hadolint, load_all

pytestmark = pytest.mark.slow


def renamed_copy(model: Path, target: Path, **fields: Any) -> Path:
    """The same model directory under another name (or base): the manifest's fields change,
    the files it hashes do not."""
    shutil.copytree(model, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(fields)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_lora_models_share_one_base_on_vllm(trained: Any, tiny_lm: Path, tmp_path: Path
                                            ) -> None:
    lora = trained("text-generation").directory
    other = renamed_copy(lora, tmp_path / "support-bot", name="support-bot")
    out = tmp_path / "ctx"
    render_docker(str(lora), out, engine="vllm", also=[str(other)])
    engine = json.loads((out / "engine.json").read_text())
    command = engine["command"]
    name = json.loads((lora / "manifest.json").read_text())["name"]
    assert command[:3] == ["vllm", "serve", "/app/base"]
    assert "--enable-lora" in command
    modules = command[command.index("--lora-modules") + 1: command.index("--host")]
    assert modules == [f"{name}=/app/adapters/{name}", "support-bot=/app/adapters/support-bot"]
    assert command[command.index("--max-lora-rank") + 1] in ("8", "16")
    assert (out / "base" / "config.json").exists()  # the base's weights travel once
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted([name, "support-bot"])
    assert (out / "adapters" / name / "adapter_config.json").exists()
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM vllm/vllm-openai:v" in dockerfile and "USER 10001" in dockerfile
    assert json.dumps(command) in dockerfile
    lint = subprocess.run([hadolint(), "--failure-threshold", "info", str(out / "Dockerfile")],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    k8s = tmp_path / "k8s"
    render_k8s(str(lora), k8s, image="registry.example/lm:1", api_key="k3y",
               also=[str(other)], engine="vllm")
    objects = load_all(k8s)
    assert set(objects) == {"deployment.yaml", "service.yaml", "horizontalpodautoscaler.yaml",
                            "secret.yaml"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    pod = objects["deployment.yaml"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == command
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"][
        "periodSeconds"] >= 600  # minutes to load and compile
    key = next(e for e in container["env"] if e["name"] == "VLLM_API_KEY")
    assert key["valueFrom"]["secretKeyRef"]["name"].endswith("-api-key")
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    metric = objects["horizontalpodautoscaler.yaml"]["spec"]["metrics"][0]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"


def test_a_merged_model_is_served_alone(workspace: Path, tiny_lm: Path, tmp_path: Path) -> None:
    from zero2one.api import train

    from ..cases import CASES

    case = CASES["text-generation"]
    overrides = [o.format(tiny_lm=tiny_lm) for o in case.overrides]
    model = train(case.recipe, overrides=[*overrides, "model.save_merged=true",
                                          "track.enabled=false"], out=tmp_path / "m").model_dir
    out = tmp_path / "ctx"
    render_docker(str(model), out, engine="vllm")
    command = json.loads((out / "engine.json").read_text())["command"]
    assert command[:3] == ["vllm", "serve", "/app/model"]
    assert "--enable-lora" not in command
    assert (out / "model" / "config.json").exists() and not (out / "base").exists()


def test_what_vllm_cannot_serve_is_refused(trained: Any, iris_model: Path,
                                           tmp_path: Path) -> None:
    lora = trained("text-generation").directory
    with pytest.raises(UserError, match="tabular-classification models deploy on zero2one"):
        render_docker(str(iris_model), tmp_path / "a", engine="vllm")
    stranger = renamed_copy(lora, tmp_path / "stranger", name="stranger",
                            base="other/base-model")
    with pytest.raises(UserError, match="models served together share a base"):
        render_k8s(str(lora), tmp_path / "b", image="x:1", engine="vllm", also=[str(stranger)])
    with pytest.raises(UserError, match="cannot be served beside"):
        render_docker(str(lora), tmp_path / "c", engine="vllm", also=[str(iris_model)])
    with pytest.raises(UserError, match="--also serves models beside another"):
        render_docker(str(iris_model), tmp_path / "d", also=[str(iris_model)])
    same = renamed_copy(lora, tmp_path / "same")
    with pytest.raises(UserError, match="are both named"):
        render_docker(str(lora), tmp_path / "e", engine="vllm", also=[str(same)])
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir())
                   for d in "abcde")
