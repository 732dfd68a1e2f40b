"""Scoring files with a model: a file or folder the task reads, a table larger than memory on
Dask, and atomic writes of the scored rows."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one import scale
from zero2one.errors import DataError
from zero2one.partitions import score_partitions
from zero2one.progress import Reporter, default_reporter
from zero2one.refs import load
from zero2one.task import Task

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.partitions import Scored


def predict_file(
    ref: str | Path | Task,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    trust: Iterable[str] = (),
    **options: Any,
) -> pd.DataFrame:
    """Score a file (or a folder, for tasks whose inputs are files) with a model: the task
    reads it (:meth:`Task.predict_file`); ``options`` are the task's (``allow_extra``,
    ``top_k``, ``max_new_tokens``, ...). The output, if given, is written atomically."""
    if output_path is not None:
        check_output_path(Path(output_path))  # before any work: a bad path should fail fast
    model = ref if isinstance(ref, Task) else load(ref, trust=trust)
    scored = model.predict_file(Path(input_path), **options)
    if output_path is not None:
        write_frame(scored, Path(output_path))
    return scored


def predict_partitions(
    ref: str | Path | Task,
    source: str | Path,
    output: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    trust: Iterable[str] = (),
    reporter: Reporter | None = None,
    **options: Any,
) -> Scored:
    """Score a table larger than memory (a file, folder or glob of CSV/Parquet) on a Dask
    cluster — ``scheduler``, else DASK_SCHEDULER_ADDRESS, else a local one of ``workers``
    processes — into a new folder of Parquet files, one per partition (see
    :mod:`zero2one.partitions`)."""
    reporter = reporter or default_reporter()
    with scale.using(scheduler, workers=workers, say=reporter.info):
        model = ref if isinstance(ref, Task) else load(ref, trust=trust)
        return score_partitions(model, str(source), Path(output), options=options,
                                trust=tuple(trust), reporter=reporter)


def check_output_path(path: Path) -> None:
    """A scored-rows destination must be .csv/.parquet/.pq in an existing directory."""
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: output must end in .csv, .parquet or .pq")
    if not path.parent.is_dir():
        raise DataError(f"{path}: directory {path.parent} does not exist")


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet via a temporary file and a rename: never a half-written file."""
    check_output_path(path)
    suffix = path.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
