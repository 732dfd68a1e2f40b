"""Data sources and fingerprints."""

from zero2one.data.sources import SKLEARN_DATASETS, Table, fingerprint, load_table, read_frame

__all__ = ["SKLEARN_DATASETS", "Table", "fingerprint", "load_table", "read_frame"]
