"""Batch scoring over partitions on a Dask cluster: ``zero2one predict --engine dask``.

The model travels as its directory's files (the manifest's hashes are checked again on every
worker, as any load checks them; nothing is unpickled from the model); each worker loads it
once and scores partition after partition, writing one Parquet file per input partition under a
temporary folder that becomes ``--output`` only when every partition is written. A task that
fails on a lost worker runs again elsewhere and writes the same file, so each row is in the
output exactly once.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one import scale
from zero2one.artifacts import MANIFEST, manifest_digest
from zero2one.errors import DataError, IntegrityError, UserError
from zero2one.refs import load

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.progress import Reporter
    from zero2one.task import Task

log = logging.getLogger(__name__)

PART = "part-{:05d}.parquet"


@dataclass
class Scored:
    output: Path
    rows: int
    partitions: int


def score_partitions(model: Task, source: str, output: Path, *, options: dict[str, Any],
                     trust: tuple[str, ...] = (), reporter: Reporter) -> Scored:
    """Score every row of ``source`` (a file, folder or glob of CSV/Parquet) with ``model`` on
    the current cluster; write ``output/part-NNNNN.parquet``, one per input partition."""
    import dask
    from distributed import as_completed

    if not model.row_inputs:
        raise UserError(f"--engine dask scores the rows of tables; {model.name} models read "
                        "other inputs (leave out --engine)")
    directory = model.ref.path if model.ref is not None else None
    if directory is None or not (Path(directory) / MANIFEST).is_file():
        raise UserError("--engine dask needs a saved model (models:/..., runs:/... or a model "
                        "directory) to send to the workers")
    output = Path(output)
    if output.exists():
        raise UserError(f"--output {output} already exists; choose a new folder (nothing is "
                        "overwritten)")
    if not output.parent.is_dir():
        raise DataError(f"--output {output}: directory {output.parent} does not exist")
    model.check_row_options(options)
    frames = scale.read_frames(source)
    client = scale.client(reporter)
    files = {p.relative_to(directory).as_posix(): p.read_bytes()
             for p in sorted(Path(directory).rglob("*")) if p.is_file()}
    shipped = client.scatter(files, broadcast=True, hash=False)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-",
                                 dir=output.parent.resolve()))
    score = dask.delayed(_ScoreBlock(manifest_digest(directory), tuple(trust), options,
                                     str(work)), pure=False)
    blocks = frames.to_delayed()
    futures = client.compute([score(block, shipped, i) for i, block in enumerate(blocks)])
    rows = 0
    try:
        with reporter.step(f"scoring {len(blocks)} partitions on the cluster",
                           total=len(blocks)) as step:
            for future in as_completed(futures):
                rows += int(future.result())
                step.advance()
    except BaseException:
        client.cancel(futures)
        shutil.rmtree(work, ignore_errors=True)
        raise
    for leftover in work.glob("*.tmp"):  # from attempts on workers that were lost
        leftover.unlink()
    os.replace(work, output)
    return Scored(output, rows, len(blocks))


_models: dict[str, Any] = {}  # on each worker: manifest sha256 -> loaded model


@dataclass(frozen=True)
class _ScoreBlock:
    digest: str
    trust: tuple[str, ...]
    options: dict[str, Any]
    folder: str

    def __call__(self, part: pd.DataFrame, files: dict[str, bytes], index: int) -> int:
        model = _worker_model(self.digest, files, self.trust)
        scored = model.predict_rows(part, **self.options)
        target = Path(self.folder) / PART.format(index)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        scored.to_parquet(tmp, index=False)
        os.replace(tmp, target)  # a retried partition replaces, never duplicates
        return len(scored)


def _worker_model(digest: str, files: dict[str, bytes], trust: tuple[str, ...]) -> Any:
    """The model whose manifest hashes to ``digest``, loaded once per worker process from the
    shipped files and verified like any model directory."""
    if digest in _models:
        return _models[digest]
    directory = Path(tempfile.mkdtemp(prefix="zero2one-model-"))
    for name, data in files.items():
        path = directory / name
        if not path.resolve().is_relative_to(directory.resolve()):
            raise IntegrityError(f"shipped model file {name!r} points outside its folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if manifest_digest(directory) != digest:
        raise IntegrityError("the model files a worker received differ from the client's")
    _models[digest] = load(directory, trust=trust)
    return _models[digest]
