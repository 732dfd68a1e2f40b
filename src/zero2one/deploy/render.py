"""Render deployment files for a model reference.

``render_docker`` writes a build context: the verified model directory, zero2one's own source,
pinned requirements, a Dockerfile (slim Python, non-root, HEALTHCHECK) and ``.dockerignore``.
``render_k8s`` writes Deployment (probes, resources, hardened security context), Service,
HorizontalPodAutoscaler (CPU) and a Secret for the API key. Manifests are built as data and
dumped as YAML, never assembled from strings.
"""

from __future__ import annotations

import re
import secrets
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from zero2one import __version__
from zero2one.errors import UserError

PORT = 8000
# what the image needs to serve a tabular model (no MLflow, no plotting: the model is a directory)
SERVE_REQUIREMENTS = (
    "pydantic", "PyYAML", "typer", "rich", "numpy", "pandas", "scipy", "scikit-learn", "skops",
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "prometheus-client",
    "pydantic-settings", "orjson",
)
_NAME = re.compile(r"[^a-z0-9-]+")

DOCKERFILE = """\
# syntax=docker/dockerfile:1
# Built by `zero2one deploy docker {ref}` — zero2one {version}
FROM python:{python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY zero2one/ ./zero2one/
RUN pip install --no-cache-dir --no-deps ./zero2one

# the model is baked in, with its manifest; zero2one verifies every hash when it loads
COPY --chown=10001:10001 model/ ./model/

USER 10001
EXPOSE {port}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
# the API key, if any, comes from the ZERO2ONE_API_KEY environment variable at run time
CMD ["zero2one", "serve", "/app/model", "--host", "0.0.0.0", "--port", "{port}", "--workers", "{workers}"]
"""

DOCKERIGNORE = """\
**/__pycache__
**/*.pyc
.git
.zero2one
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "zero2one"
version = "{version}"
requires-python = ">=3.11"

[project.scripts]
zero2one = "zero2one.cli.main:main"

[tool.setuptools.packages.find]
where = ["src"]
"""


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another --out or pass --force")


def _model_dir(ref: str) -> tuple[Path, dict[str, Any]]:
    from zero2one.artifacts import verify
    from zero2one.refs import check_pinned, resolve

    resolved = resolve(ref)
    check_pinned(resolved)
    return resolved.path, verify(resolved.path)


def app_name(manifest: dict[str, Any], name: str | None = None) -> str:
    """A DNS-1123 name for Kubernetes objects."""
    raw = (name or manifest.get("name") or "model").lower()
    cleaned = _NAME.sub("-", raw).strip("-")[:50] or "model"
    return cleaned if cleaned[0].isalpha() else f"m-{cleaned}"


def requirements() -> str:
    lines = []
    for dist in SERVE_REQUIREMENTS:
        try:
            lines.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def render_docker(ref: str, out: str | Path, *, workers: int = 1,
                  overwrite: bool = False) -> list[Path]:
    """Write a Docker build context for ``ref`` into ``out``; returns the files written."""
    import platform

    import zero2one

    out = Path(out)
    _check_out(out, overwrite)
    model_dir, _ = _model_dir(ref)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "model", ignore_errors=True)
    shutil.copytree(model_dir, out / "model")
    source = out / "zero2one"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(Path(zero2one.__file__).parent, source / "src" / "zero2one",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "pyproject.toml").write_text(PYPROJECT.format(version=__version__))
    python = ".".join(platform.python_version_tuple()[:2])
    files = {
        "Dockerfile": DOCKERFILE.format(ref=ref, version=__version__, python=python, port=PORT,
                                        workers=workers),
        ".dockerignore": DOCKERIGNORE,
        "requirements.txt": requirements(),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files] + [out / "model", source]


def k8s_manifests(manifest: dict[str, Any], *, image: str, name: str, replicas: int,
                  min_replicas: int, max_replicas: int, cpu_target: int,
                  api_key: str | None) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "zero2one"}
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
             "timeoutSeconds": 2, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["zero2one", "serve", "/app/model", "--host", "0.0.0.0", "--port", str(PORT),
                 "--graceful-seconds", "25"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "ZERO2ONE_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": f"{name}-api-key", "key": "api-key"}}}] if api_key else [],
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "http"},
                           "initialDelaySeconds": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 15},
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        # requests drive the HPA's CPU percentage; one worker per pod, scale with replicas
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                      "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"zero2one/model": manifest.get("name", ""),
                                     "zero2one/task": manifest.get("task", "")}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                    "prometheus.io/path": "/metrics"}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {
                        "type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": labels,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": cpu_target}}}],
        },
    }
    objects = [deployment, service, hpa]
    if api_key:
        objects.insert(0, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{name}-api-key", "labels": labels},
            "stringData": {"api-key": api_key},
        })
    return objects


def render_k8s(ref: str, out: str | Path, *, image: str, name: str | None = None,
               replicas: int = 2, min_replicas: int = 2, max_replicas: int = 10,
               cpu_target: int = 70, api_key: str | None = None, auth: bool = True,
               overwrite: bool = False) -> list[Path]:
    """Write Kubernetes manifests for ``ref`` into ``out``; returns the files written.

    With ``auth`` (the default) and no ``api_key``, a random key is generated into the Secret.
    """
    out = Path(out)
    _check_out(out, overwrite)
    if not 1 <= min_replicas <= max_replicas:
        raise UserError(f"need 1 <= --min-replicas ({min_replicas}) <= --max-replicas "
                        f"({max_replicas})")
    _, manifest = _model_dir(ref)
    key = (api_key or secrets.token_urlsafe(32)) if auth else None
    objects = k8s_manifests(manifest, image=image, name=app_name(manifest, name),
                            replicas=replicas, min_replicas=min_replicas,
                            max_replicas=max_replicas, cpu_target=cpu_target, api_key=key)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for obj in objects:
        path = out / f"{obj['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        files.append(path)
    if key:
        (out / "secret.yaml").chmod(0o600)
    return files
