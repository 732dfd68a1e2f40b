"""Model references: one string form accepted everywhere a model is named.

    models:/NAME/VERSION     a registered version
    models:/NAME@ALIAS       the version an alias points to (champion, ...)
    runs:/RUN_ID/model       the model a run logged
    PATH                     a model directory
    builtin:NAME             a model that ships with an installed package (generative tasks)

Registry and run references are checked against the manifest sha256 recorded when the model was
logged, so a model directory swapped or edited in the artifact store is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zero2one.errors import IntegrityError, ModelRefError

# builtin name -> function returning the model's local directory; filled by task packages
BUILTINS: dict[str, Callable[[], Path]] = {}

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-fA-F]{8,64})/(?P<path>[\w./-]+)$")


@dataclass(frozen=True)
class Resolved:
    path: Path  # local model directory
    ref: str  # as the user wrote it
    name: str | None = None  # registered model name
    version: str | None = None  # registered version
    expected_manifest: str | None = None  # sha256 recorded at logging time


def resolve(ref: str | Path) -> Resolved:
    """Turn a model reference into a local directory (downloading it if the store is remote)."""
    from zero2one import tracking

    text = str(ref)
    if match := _MODELS.match(text):
        mv = tracking.model_version(match["name"], version=match["version"], alias=match["alias"])
        path = tracking.download(mv.source)
        return Resolved(path, text, match["name"], str(mv.version),
                        (mv.tags or {}).get(tracking.MANIFEST_TAG))
    if text.startswith("models:/"):
        raise ModelRefError(f"bad model reference {text!r}; use models:/NAME/VERSION or "
                            "models:/NAME@ALIAS")
    if match := _RUNS.match(text):
        tags = tracking.run_tags(match["run"])
        path = tracking.download(tracking.run_artifact_uri(match["run"], match["path"]))
        expected = tags.get(tracking.MANIFEST_TAG) if match["path"] == tracking.MODEL_PATH else None
        return Resolved(path, text, expected_manifest=expected)
    if text.startswith("runs:/"):
        raise ModelRefError(f"bad run reference {text!r}; use runs:/RUN_ID/model")
    if text.startswith("builtin:"):
        name = text.removeprefix("builtin:")
        if name not in BUILTINS:
            known = ", ".join(sorted(BUILTINS)) or "none installed"
            raise ModelRefError(f"unknown built-in model {name!r}; built-in models: {known}")
        return Resolved(BUILTINS[name](), text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelRefError(
            f"model {text!r} not found: not a directory, nor models:/NAME/VERSION, "
            "models:/NAME@ALIAS, runs:/RUN_ID/model or builtin:NAME"
        )
    if not path.is_dir():
        raise ModelRefError(f"{text} is a file; a model reference names a model directory")
    return Resolved(path, text)


def check_pinned(resolved: Resolved) -> None:
    """Refuse a registry or run model whose manifest changed since it was logged."""
    from zero2one.artifacts import manifest_digest, read_manifest

    if resolved.expected_manifest is None:
        return
    read_manifest(resolved.path)
    actual = manifest_digest(resolved.path)
    if actual != resolved.expected_manifest:
        raise IntegrityError(
            f"{resolved.ref}: manifest.json changed since the model was logged "
            f"(sha256 {actual[:12]}…, recorded {resolved.expected_manifest[:12]}…); "
            "refusing to load it"
        )
