"""Model directories from the artifact store: the local directory itself, or a copy cached in
the workspace per verified manifest digest."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from zero2one.artifacts import MANIFEST, sha256_file
from zero2one.errors import ModelRefError
from zero2one.paths import workspace
from zero2one.tracking import sql, store


def download(uri: str, *, expected_manifest: str | None = None) -> Path:
    """A local directory with the artifacts at ``uri``: the directory itself for a local
    artifact store, else a copy in the workspace's cache. A model whose manifest digest is
    known (``expected_manifest``, as the registry and runs record it) is downloaded once and
    reused by every later command and server worker while its manifest still has that digest
    (loading verifies every file against it); anything else is fetched afresh. Downloads land
    in a temporary folder renamed into place, so concurrent processes never see half a copy."""
    local = sql.local_path(uri)
    if local is not None:  # a local artifact store: the directory itself, no MLflow import
        if not local.exists():
            raise ModelRefError(f"{uri}: the artifact store has no such directory")
        return local

    cache = workspace() / "cache"
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    def cached(target: Path) -> Path | None:
        found = next(target.glob(f"*/{MANIFEST}"), None) if target.is_dir() else None
        return found.parent if found is not None and sha256_file(found) == expected_manifest \
            else None

    if expected_manifest:
        target = cache / f"{key}-{expected_manifest[:16]}"
        if (hit := cached(target)) is not None:
            return hit
    else:
        target = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        fetched = fetch(uri, staging)
        inside = fetched.relative_to(staging)
        if expected_manifest is None or cached(target) is None:
            shutil.rmtree(target, ignore_errors=True)  # stale, or a copy of something else
        try:
            staging.rename(target)
        except OSError:  # another process put the same version there first: use that one
            shutil.rmtree(staging, ignore_errors=True)
        return target / inside
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise



def fetch(uri: str, directory: Path) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(directory), tracking_uri=store.tracking_uri()))
    except (MlflowException, OSError) as exc:
        raise ModelRefError(f"cannot fetch {uri}: {str(exc).splitlines()[0]}") from None
