from pathlib import Path

import pandas as pd
import pytest

from zero2one.data import fingerprint, load_table, read_frame
from zero2one.errors import DataError


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "diabetes", "digits"])
def test_builtin_datasets_load_with_snake_case_columns(name: str) -> None:
    table = load_table(f"sklearn:{name}")
    assert table.default_target == "target"
    assert "target" in table.frame.columns
    assert all(c == c.lower() and " " not in c for c in table.frame.columns)
    assert (table.class_names is None) == (name == "diabetes")


def test_iris_columns_and_class_names() -> None:
    table = load_table("sklearn:iris")
    assert list(table.frame.columns) == ["sepal_length", "sepal_width", "petal_length",
                                         "petal_width", "target"]
    assert table.class_names == ["setosa", "versicolor", "virginica"]


def test_unknown_builtin() -> None:
    with pytest.raises(DataError, match="unknown built-in data set sklearn:irs; choose one of"):
        load_table("sklearn:irs")


def test_csv_and_parquet_read_alike_and_fingerprint_is_format_independent(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    csv, parquet = read_frame(tmp_path / "d.csv"), read_frame(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)
    assert fingerprint(csv)["sha256"] == fingerprint(parquet.astype(csv.dtypes))["sha256"]
    info = fingerprint(csv)
    assert (info["rows"], info["columns"]) == (3, 2)
    assert info["schema"]["a"] == "float64"


def test_fingerprint_changes_with_content() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    changed = frame.copy()
    changed.loc[1, "a"] = 5
    assert fingerprint(frame)["sha256"] != fingerprint(changed)["sha256"]
    assert fingerprint(frame)["sha256"] == fingerprint(frame.copy())["sha256"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_table(str(tmp_path / "nope.csv"))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        read_frame(tmp_path / "empty.csv")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        read_frame(tmp_path / "d.xlsx")


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read parquet data"):
        read_frame(tmp_path / "d.parquet")
