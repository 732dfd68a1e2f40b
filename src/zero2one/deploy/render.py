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

import zero2one
from zero2one.artifacts import verify
from zero2one.catalog import TASK_GROUP, get_task
from zero2one.deploy import grafana
from zero2one.errors import UserError
from zero2one.refs import check_pinned, resolve
from zero2one.version import __version__

PORT = 8000
# what every image needs to serve a model (no MLflow, no plotting: the model is a directory);
# the model's task adds its own (Task.deploy_requirements)
SERVE_REQUIREMENTS = (
    "pydantic", "PyYAML", "typer", "rich", "numpy", "pandas", "fastapi", "starlette", "uvicorn",
    "uvloop", "httptools", "prometheus-client", "pydantic-settings", "orjson",
)
# torch's CPU wheels: a plain `torch` requirement pulls a multi-GB CUDA build
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
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

{torch}COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
{no_deps}COPY zero2one/ ./zero2one/
RUN pip install --no-cache-dir --no-deps ./zero2one
{packages}
# the model is baked in, with its manifest; zero2one verifies every hash when it loads
COPY --chown=10001:10001 model/ ./model/
{extra}
USER 10001
EXPOSE {port}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
# the API key, if any, comes from the ZERO2ONE_API_KEY environment variable at run time
CMD ["zero2one", "serve", "/app/model", "--host", "0.0.0.0", "--port", "{port}", "--workers", "{workers}"]
"""

ENGINE_DOCKERFILE = """\
# syntax=docker/dockerfile:1
# Built by `zero2one deploy docker {ref} --engine {engine}` — zero2one {version}
FROM {image}

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app
# the model files, checked against their manifests when this context was written
{copies}
# caches go to /tmp, the one writable place (the root file system can be read-only)
ENV HOME=/tmp/home \\
    XDG_CACHE_HOME=/tmp/cache{env}
USER 10001
EXPOSE {port}
HEALTHCHECK --interval=15s --timeout=3s --start-period=600s --retries=3 \\
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}{health}', timeout=2).status != 200)"]
# the API key, if any, comes from the {api_key_env} environment variable at run time
ENTRYPOINT []
CMD {command}
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
{entry_points}
[tool.setuptools.packages.find]
where = ["src"]
"""


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another --out or pass --force")


def _model_dir(ref: str) -> tuple[Path, dict[str, Any]]:
    resolved = resolve(ref)
    if not resolved.has_manifest or resolved.path is None:
        raise UserError(f"{ref} is not a zero2one model; deploy a model zero2one trained or "
                        "registered (models:/..., runs:/..., a model directory)")
    check_pinned(resolved)
    return resolved.path, verify(resolved.path)


def _task(manifest: dict[str, Any]) -> Any:
    return get_task(str(manifest["task"]))


def task_distribution(task: str) -> metadata.Distribution | None:
    """The installed distribution that declares ``task`` (None: zero2one's own, or a task
    registered at run time, which an image cannot have)."""
    for dist in metadata.distributions():
        if any(p.group == TASK_GROUP and p.name == task for p in dist.entry_points):
            name = dist.metadata["Name"]
            return None if name == "zero2one" else dist
    raise UserError(f"task {task!r} is not declared by an installed package (registered at run "
                    "time?); an image could not load it — package it with a zero2one.tasks "
                    "entry point")


def _local_project(dist: metadata.Distribution) -> Path | None:
    """The project directory a distribution was installed from (pip install DIR or -e DIR)."""
    import json
    from urllib.parse import unquote, urlparse

    text = dist.read_text("direct_url.json")
    if not text:
        return None
    url = json.loads(text).get("url", "")
    if not url.startswith("file://"):
        return None
    path = Path(unquote(urlparse(url).path))
    return path if (path / "pyproject.toml").exists() or (path / "setup.py").exists() else None


def app_name(manifest: dict[str, Any], name: str | None = None) -> str:
    """A DNS-1123 name for Kubernetes objects."""
    raw = (name or manifest.get("name") or "model").lower()
    cleaned = _NAME.sub("-", raw).strip("-")[:50] or "model"
    return cleaned if cleaned[0].isalpha() else f"m-{cleaned}"


def requirements(extra: list[str] | tuple[str, ...] = ()) -> str:
    """Pinned to the versions installed here, where the model was verified to load."""
    lines = []
    for dist in dict.fromkeys([*SERVE_REQUIREMENTS, *extra]):
        try:
            lines.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def _pin(dist: str) -> str:
    """``dist==VERSION`` without a local label (``2.13.0+cpu`` -> ``2.13.0``)."""
    try:
        return f"{dist}=={metadata.version(dist).split('+')[0]}"
    except metadata.PackageNotFoundError:
        return dist


def _entry_points() -> str:
    """zero2one's own entry-point tables (its tasks and commands), for the image's copy."""
    groups: dict[str, list[str]] = {}
    try:
        points = metadata.distribution("zero2one").entry_points
    except metadata.PackageNotFoundError:
        return ""
    for point in points:
        if point.group.startswith("zero2one."):
            groups.setdefault(point.group, []).append(f'{point.name} = "{point.value}"')
    return "".join(f'\n[project.entry-points."{group}"]\n' + "\n".join(lines) + "\n"
                   for group, lines in groups.items())


def engine_spec(ref: str, engine: str, also: list[str] | tuple[str, ...] = (), *,
                name: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The model's task's deployment on ``engine`` (``Task.engine_deployment``) for ``ref``
    and the models in ``also`` served beside it; every model directory verified first."""
    model_dir, manifest = _model_dir(ref)
    task = _task(manifest)
    if engine not in task.serving_engines:
        others = ", ".join(["zero2one", *task.serving_engines])
        raise UserError(f"--engine {engine}: {task.name} models deploy on {others}")
    models = [(model_dir, manifest)]
    for other in also:
        path, other_manifest = _model_dir(other)
        if other_manifest.get("task") != manifest.get("task"):
            raise UserError(f"--also {other}: a {other_manifest.get('task')} model cannot be "
                            f"served beside a {manifest.get('task')} model")
        models.append((path, other_manifest))
    return task.engine_deployment(engine, models, name=app_name(manifest, name)), manifest


def render_docker(ref: str, out: str | Path, *, workers: int = 1, overwrite: bool = False,
                  torch_index: str = TORCH_CPU_INDEX, engine: str = "zero2one",
                  also: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Write a Docker build context for ``ref`` into ``out``; returns the files written.

    The image installs what the model's task declares (``Task.deploy_requirements``; torch
    from ``torch_index``, the CPU wheels by default) and carries what it declares beside the
    model (``Task.deploy_files``: a LoRA model's base, ...). Another ``engine`` (one of the
    task's ``serving_engines``) makes an image of that server instead, with ``also``'s models
    served beside ``ref``.
    """
    import platform

    out = Path(out)
    _check_out(out, overwrite)
    if engine != "zero2one":
        return _render_engine_docker(ref, out, engine, also)
    if also:
        raise UserError("--also serves models beside another on an --engine that can")
    model_dir, manifest = _model_dir(ref)
    task = _task(manifest)
    extras = task.deploy_files(manifest)
    needs = task.deploy_requirements(manifest)
    packages = ""
    dist = task_distribution(task.name)
    if dist is not None:  # a task from another package: the image installs that package too
        project = _local_project(dist)
        if project is None:
            needs = [*needs, dist.metadata["Name"]]
        else:  # installed from a directory here: its source travels in the build context
            name = _NAME.sub("-", dist.metadata["Name"].lower())
            extras.copy[f"packages/{name}"] = project
            packages = (f"COPY packages/{name}/ ./packages/{name}/\n"
                        f"RUN pip install --no-cache-dir --no-deps ./packages/{name}\n")
    out.mkdir(parents=True, exist_ok=True)
    copies = {"model": model_dir, **extras.copy}
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".git", "build",
                                    ".venv", ".zero2one")
    for name, source_dir in copies.items():
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(source_dir, out / name, ignore=None if name == "model" else ignore)
    source = out / "zero2one"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(Path(zero2one.__file__).parent, source / "src" / "zero2one",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "pyproject.toml").write_text(PYPROJECT.format(version=__version__,
                                                            entry_points=_entry_points()))
    python = ".".join(platform.python_version_tuple()[:2])
    torch = (f"# torch's CPU wheels (a plain requirement pulls a CUDA build)\n"
             f"RUN pip install --no-cache-dir --index-url {torch_index} {_pin('torch')}\n"
             if task.needs_torch else "")
    no_deps = "".join(f"RUN pip install --no-cache-dir --no-deps {_pin(d)}\n"
                      for d in extras.no_deps)
    extra = "".join(f"COPY --chown=10001:10001 {name}/ ./{name}/\n" for name in extras.copy
                    if not name.startswith("packages/"))
    extra += "".join(f"ENV {key}={value}\n" for key, value in extras.env.items())
    files = {
        "Dockerfile": DOCKERFILE.format(ref=ref, version=__version__, python=python, port=PORT,
                                        workers=workers, torch=torch, no_deps=no_deps,
                                        packages=packages, extra=extra),
        ".dockerignore": DOCKERIGNORE,
        "requirements.txt": requirements(needs),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files] + [out / name for name in copies] + [source]


def _render_engine_docker(ref: str, out: Path, engine: str, also: list[str] | tuple[str, ...]
                          ) -> list[Path]:
    import json

    spec, _ = engine_spec(ref, engine, also)
    out.mkdir(parents=True, exist_ok=True)
    for name, source_dir in spec.copy.items():
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(source_dir, out / name)
    copies = "\n".join(f"COPY --chown=10001:10001 {name}/ ./{name}/" for name in spec.copy)
    env = "".join(f" \\\n    {key}={value}" for key, value in spec.env.items())
    files = {
        "Dockerfile": ENGINE_DOCKERFILE.format(
            ref=ref, engine=engine, version=__version__, image=spec.image, copies=copies,
            env=env, port=spec.port, health=spec.health, api_key_env=spec.api_key_env,
            command=json.dumps(spec.command)),
        ".dockerignore": DOCKERIGNORE,
        # what a check outside Docker needs to start the same server (see benchmarks/)
        "engine.json": json.dumps({"engine": engine, "image": spec.image,
                                   "command": spec.command, "port": spec.port,
                                   "copy": sorted(spec.copy), "env": spec.env}, indent=2) + "\n",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files] + [out / name for name in spec.copy]


def k8s_manifests(manifest: dict[str, Any], *, image: str, name: str, replicas: int,
                  min_replicas: int, max_replicas: int, cpu_target: int,
                  api_key: str | None,
                  memory: dict[str, str] | None = None) -> list[dict[str, Any]]:
    memory = memory or {"memory_request": "256Mi", "memory_limit": "1Gi"}
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
        # memory from the model's task and size (Task.deploy_resources)
        "resources": {"requests": {"cpu": "500m", "memory": memory["memory_request"]},
                      "limits": {"cpu": "1", "memory": memory["memory_limit"]}},
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


def engine_manifests(spec: Any, manifest: dict[str, Any], *, image: str, name: str,
                     replicas: int, min_replicas: int, max_replicas: int,
                     api_key: str | None) -> list[dict[str, Any]]:
    """Deployment (GPUs, probes on the engine's health route, /dev/shm), Service, an
    autoscaler on the engine's queue metric when it has one, and the Secret."""
    objects = k8s_manifests(manifest, image=image, name=name, replicas=replicas,
                            min_replicas=min_replicas, max_replicas=max_replicas,
                            cpu_target=70, api_key=api_key, memory=spec.memory)
    by_kind = {obj["kind"]: obj for obj in objects}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    probe = {"httpGet": {"path": spec.health, "port": "http"}, "periodSeconds": 10,
             "timeoutSeconds": 2, "failureThreshold": 3}
    container.update({
        "args": spec.command,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [{"name": key, "value": value} for key, value in spec.env.items()]
        + [{"name": "HOME", "value": "/tmp/home"}, {"name": "XDG_CACHE_HOME",
                                                    "value": "/tmp/cache"}]
        + ([{"name": spec.api_key_env, "valueFrom": {"secretKeyRef": {
            "name": f"{name}-api-key", "key": "api-key"}}}] if api_key else []),
        "readinessProbe": {**probe, "initialDelaySeconds": 10},
        "livenessProbe": {**probe, "initialDelaySeconds": 30},
        # loading weights and compiling take minutes: up to 20 before liveness counts
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 240},
        "resources": {
            "requests": {"cpu": "2", "memory": spec.memory["memory_request"],
                         **({"nvidia.com/gpu": str(spec.gpus)} if spec.gpus else {})},
            "limits": {"memory": spec.memory["memory_limit"],
                       **({"nvidia.com/gpu": str(spec.gpus)} if spec.gpus else {})}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    })
    pod["volumes"] = [{"name": "tmp", "emptyDir": {}},
                      {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    pod["terminationGracePeriodSeconds"] = 60
    template = by_kind["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    template["prometheus.io/port"] = str(spec.port)
    by_kind["Deployment"]["metadata"]["annotations"]["zero2one/engine"] = spec.image
    if spec.scale_metric is None:
        return [obj for obj in objects if obj["kind"] != "HorizontalPodAutoscaler"]
    metric, target = spec.scale_metric
    by_kind["HorizontalPodAutoscaler"]["spec"]["metrics"] = [{"type": "Pods", "pods": {
        "metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": target}}}]
    return objects


def render_k8s(ref: str, out: str | Path, *, image: str, name: str | None = None,
               replicas: int = 2, min_replicas: int = 2, max_replicas: int = 10,
               cpu_target: int = 70, api_key: str | None = None, auth: bool = True,
               overwrite: bool = False, engine: str = "zero2one",
               also: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Write Kubernetes manifests for ``ref`` into ``out``; returns the files written.

    With ``auth`` (the default) and no ``api_key``, a random key is generated into the Secret.
    Another ``engine`` runs that server (the image from ``deploy docker --engine``) with GPUs.
    """
    out = Path(out)
    _check_out(out, overwrite)
    if not 1 <= min_replicas <= max_replicas:
        raise UserError(f"need 1 <= --min-replicas ({min_replicas}) <= --max-replicas "
                        f"({max_replicas})")
    key = (api_key or secrets.token_urlsafe(32)) if auth else None
    if engine != "zero2one":
        spec, manifest = engine_spec(ref, engine, also, name=name)
        objects = engine_manifests(spec, manifest, image=image, name=app_name(manifest, name),
                                   replicas=replicas, min_replicas=min_replicas,
                                   max_replicas=max_replicas, api_key=key)
    else:
        if also:
            raise UserError("--also serves models beside another on an --engine that can")
        model_dir, manifest = _model_dir(ref)
        size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
        objects = k8s_manifests(manifest, image=image, name=app_name(manifest, name),
                                replicas=replicas, min_replicas=min_replicas,
                                max_replicas=max_replicas, cpu_target=cpu_target, api_key=key,
                                memory=_task(manifest).deploy_resources(manifest, size))
    out.mkdir(parents=True, exist_ok=True)
    zero2one_server = engine == "zero2one"  # the dashboard reads zero2one's own metrics
    if zero2one_server:
        objects.append(grafana.config_map(app_name(manifest, name)))
    files = []
    for obj in objects:
        path = out / f"{obj['kind'].lower()}.yaml"
        path.write_text(yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False))
        files.append(path)
    if key:
        (out / "secret.yaml").chmod(0o600)
    return [*files, grafana.write(out, app_name(manifest, name))] if zero2one_server else files


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (``&id001``/``*id001`` where the manifests share a
    dict, such as the labels): every manifest reads as written by hand, and kubectl diffs
    stay plain."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
