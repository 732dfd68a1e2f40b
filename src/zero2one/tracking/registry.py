"""The model registry: versions of named models, their aliases, and the listings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from zero2one.errors import ModelRefError
from zero2one.tracking import sql, store
from zero2one.tracking.runs import Run
from zero2one.tracking.store import CONVERSION_TAG, MANIFEST_TAG, PARENT_TAG

log = logging.getLogger(__name__)


def register_model(name: str, run: Run, *, manifest_sha256: str,
                   tags: Mapping[str, str] | None = None) -> str:
    """A new version of registered model ``name`` from the run's model; returns the version.
    ``tags`` are added to the version's (a converted model's parent, ...)."""
    from mlflow.exceptions import MlflowException

    with run._timed():
        c = run._client
        created = False
        try:
            c.get_registered_model(name)
        except MlflowException:
            c.create_registered_model(name)
            created = True
        try:
            version = c.create_model_version(
                name,
                source=run.model_artifact_uri,
                run_id=run.run_id,
                tags={**(tags or {}), MANIFEST_TAG: manifest_sha256},
            )
        except Exception:
            if created:  # no registered model without versions is left behind
                try:
                    c.delete_registered_model(name)
                except Exception as exc:
                    log.warning("registered model %s has no versions and could not be removed "
                                "(%s)", name, str(exc).splitlines()[0])
            raise
    return str(version.version)


def set_alias(name: str, alias: str, version: str) -> str:
    """Point ``alias`` at ``version`` (a number, or ``latest``); returns the version."""
    probe = store.read_only()  # a store tracking.sql reads: the alias is written without MLflow
    if probe is not None:
        probe.close()
        done = sql.set_alias(name, alias, version)
        if done == "":
            raise ModelRefError(f"model {name!r} has no version {version!r}")
        if done is not None:
            return done
    from mlflow.exceptions import MlflowException

    c = store.client()
    if version == "latest":
        versions = [int(v["version"]) for v in model_versions(name)]
        version = str(max(versions))
    try:
        c.get_model_version(name, version)
    except MlflowException:
        raise ModelRefError(f"model {name!r} has no version {version!r}") from None
    c.set_registered_model_alias(name, alias, version)
    return version


def model_version(name: str, *, version: str | None = None, alias: str | None = None) -> Any:
    """A registered model version by number, by ``latest`` (the highest number) or by alias."""
    if version == "latest":
        numbers = [int(v["version"]) for v in model_versions(name)]
        if not numbers:
            known = ", ".join(m["name"] for m in list_models()) or "none yet"
            raise ModelRefError(f"model {name!r} has no versions in {store.tracking_uri()} "
                                f"(registered models: {known})")
        version = str(max(numbers))
    found = store.fast(sql.model_version, name, version=version, alias=alias)
    if found is not store.ASK_MLFLOW and found is not None:
        return found  # a miss: MLflow says what is missing, in the message below
    from mlflow.exceptions import MlflowException

    c = store.client()
    try:
        if alias is not None:
            return c.get_model_version_by_alias(name, alias)
        return c.get_model_version(name, str(version))
    except MlflowException:
        what = f"alias {alias!r}" if alias is not None else f"version {version!r}"
        known = ", ".join(m["name"] for m in list_models()) or "none yet"
        raise ModelRefError(
            f"model {name!r} has no {what} in {store.tracking_uri()} (registered models: {known})"
        ) from None


def list_models() -> list[dict[str, Any]]:
    models = store.fast(sql.list_models)
    if models is not store.ASK_MLFLOW:
        return models
    c = store.client()
    models = []
    for m in c.search_registered_models():
        versions = c.search_model_versions(f"name='{m.name}'")
        models.append({
            "name": m.name,
            "latest_version": max((int(v.version) for v in versions), default=None),
            "versions": len(versions),
            "aliases": dict(m.aliases or {}),
        })
    return sorted(models, key=lambda m: m["name"])


def model_versions(name: str) -> list[dict[str, Any]]:
    found = store.fast(sql.model_versions, name)
    if found is None:
        raise ModelRefError(f"no registered model named {name!r} in {store.tracking_uri()}")
    if found is not store.ASK_MLFLOW:
        return found
    from mlflow.exceptions import MlflowException

    c = store.client()
    try:
        registered = c.get_registered_model(name)
    except MlflowException:
        raise ModelRefError(f"no registered model named {name!r} in "
                            f"{store.tracking_uri()}") from None
    by_version: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    versions = c.search_model_versions(f"name='{name}'")
    return [
        {
            "version": str(v.version),
            "aliases": sorted(by_version.get(str(v.version), [])),
            "run_id": v.run_id,
            "created": v.creation_timestamp,
            "source": v.source,
            "parent": (v.tags or {}).get(PARENT_TAG),
            "conversion": (v.tags or {}).get(CONVERSION_TAG),
        }
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True)
    ]
