"""Tables split over many files, read as partitions: globs and folders of CSV or Parquet.

Every file must have the same columns with the same types; a file that differs is named before
any work starts. CSV numeric columns are read as float64 in every partition, so a column with a
missing value in one file and none in another is still one type.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import DataError, require

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_SAMPLE_ROWS = 2_000  # rows of each CSV file read to check its columns and types
BLOCKSIZE = "64MiB"  # CSV partition size: a worker holds a few such partitions at a time


def is_glob(source: str) -> bool:
    return any(ch in source for ch in "*?[")


def expand(source: str) -> list[Path]:
    """The files a source names: one file, a folder's CSV/Parquet files, or a glob's matches
    (sorted, so partitions come in a stable order)."""
    path = Path(source)
    if is_glob(source):
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"{source}: no file matches this pattern")
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{source}: the folder has no .csv or .parquet files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"data file not found: {source}")
    kinds = {SUFFIXES.get(p.suffix.lower()) for p in files}
    if None in kinds:
        odd = next(p for p in files if p.suffix.lower() not in SUFFIXES)
        raise DataError(f"{odd}: unsupported file type {odd.suffix or '(none)'!r}; a data "
                        "source's files must all be .csv or all .parquet/.pq")
    if len(kinds) > 1:
        raise DataError(f"{source}: mixes CSV and Parquet files; use one format")
    return files


def source_bytes(source: str) -> int:
    """Bytes on disk of what a file, folder or glob source names (0 for sklearn:NAME)."""
    if source.startswith("sklearn:"):
        return 0
    return sum(p.stat().st_size for p in expand(source))


def read_frames(source: str, *, blocksize: str | int = BLOCKSIZE) -> dd.DataFrame:
    """A Dask DataFrame over every file of ``source``, after checking that the files agree."""
    require("dask", "scale")
    import dask.dataframe as dd

    files = expand(source)
    paths = [str(p.resolve()) for p in files]  # workers have working directories of their own
    if SUFFIXES[files[0].suffix.lower()] == "parquet":
        _check_parquet(files)
        return dd.read_parquet(paths)
    dtypes = _check_csv(files)
    return dd.read_csv(paths, dtype=dtypes, blocksize=blocksize, assume_missing=True)


def read_pandas(source: str) -> pd.DataFrame:
    """Every file of ``source`` in one pandas frame (small multi-file sources)."""
    import pandas as pd

    files = expand(source)
    if len(files) == 1:
        return read_frame(files[0])
    if SUFFIXES[files[0].suffix.lower()] == "csv":
        dtypes = _check_csv(files)
        return pd.concat([pd.read_csv(p, dtype=dtypes) for p in files], ignore_index=True)
    _check_parquet(files)
    return pd.concat([read_frame(p) for p in files], ignore_index=True)


def _check_parquet(files: list[Path]) -> None:
    import pyarrow.parquet as pq

    first: Any = None
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read parquet data: {str(exc).splitlines()[0]}") \
                from None
        fields = {f.name: _arrow_kind(f.type) for f in schema if not f.name.startswith("__")}
        if first is None:
            first = (path, fields)
            continue
        _compare(first[0], first[1], path, fields)


def _arrow_kind(kind: Any) -> str:
    """An Arrow type as what matters for a column: int64 in one file and double in another
    (a column with gaps) are both numbers; string and large_string are both text."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return str(kind)


def check_unique_columns(path: Path, names: list[Any] | None = None) -> None:
    """Refuse a table whose header names a column twice: pandas would rename the second
    ``a.1`` and train on it silently. ``names``: the columns as read (Parquet); a CSV's header
    line is read as written."""
    if names is None:
        import csv

        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            names = next(csv.reader(handle), [])
    from collections import Counter

    twice = sorted(name for name, count in Counter(map(str, names)).items() if count > 1)
    if twice:
        raise DataError(f"{path}: the header names column(s) {', '.join(map(repr, twice))} more "
                        "than once; give each column its own name")


def _check_csv(files: list[Path]) -> dict[str, str]:
    """Column names and kinds (number or text) of each file's first rows; the dtypes to read
    every partition with: float64 for numbers, object for text."""
    import pandas as pd

    first: tuple[Path, dict[str, str]] | None = None
    for path in files:
        check_unique_columns(path)
        try:
            head = pd.read_csv(path, nrows=CSV_SAMPLE_ROWS)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty") from None
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataError(f"{path}: cannot read csv data: {str(exc).splitlines()[0]}") \
                from None
        kinds = {str(c): _kind(head[c]) for c in head.columns}
        if first is None:
            first = (path, kinds)
            continue
        _compare(first[0], first[1], path, kinds, loose=True)
        for name, kind in kinds.items():
            if first[1][name] == "empty":
                first[1][name] = kind
    assert first is not None
    # a column empty in the first file's sample takes its kind from another file's
    return {name: ("float64" if kind in ("number", "empty") else "object")
            for name, kind in first[1].items()}


def _kind(series: pd.Series) -> str:
    import pandas as pd

    if series.isna().all():
        return "empty"
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return "number"
    return "text"


def _compare(ref: Path, expected: dict[str, str], path: Path, found: dict[str, str], *,
             loose: bool = False) -> None:
    if list(found) != list(expected):
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"extra {', '.join(extra)}" if extra else "",
            "" if missing or extra else "the columns are in another order") if part)
        raise DataError(f"{path}: its columns differ from {ref.name}'s ({detail}); every "
                        "file of a data source needs the same columns")
    for name, kind in expected.items():
        other = found[name]
        if kind != other and not (loose and "empty" in (kind, other)):
            raise DataError(f"{path}: column {name!r} is {other} but {kind} in {ref.name}; "
                            "every file of a data source needs the same column types")


TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, with errors that name the file and the problem."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .parquet or .pq, "
            "or sklearn:NAME (iris, wine, breast_cancer, diabetes, digits)"
        )
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        if suffix == ".csv":
            check_unique_columns(path)
            return pd.read_csv(path)
        frame = pd.read_parquet(path)
        check_unique_columns(path, list(frame.columns))
        return frame
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read {suffix[1:]} data: {first}") from None
    except ImportError as exc:  # pyarrow missing
        raise DataError(f"{path}: {exc}") from None
