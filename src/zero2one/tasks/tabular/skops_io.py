"""Import ``skops.io`` without importing torch, jax, cupy or dask.

skops computes its trusted types at import time with scikit-learn's ``all_estimators()``, which
walks every scikit-learn sub-package, ``sklearn.externals.array_api_compat.torch`` included: with
torch installed, that alone imports torch (≈1.5 s and hundreds of MB per process). Tabular work
must not pay for that, so while skops imports, those optional array back-ends are refused; the
walk skips modules that fail to import, and nothing is cached, so a later real import works.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType
from typing import Any

_OPTIONAL_BACKENDS = ("torch", "jax", "cupy", "dask")


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported by tabular work", name=fullname)
        return None


def skops_io() -> ModuleType:
    """The ``skops.io`` module, imported without the optional array back-ends."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import scipy.stats  # noqa: F401  (imports that must see the real modules come first)
    import sklearn  # noqa: F401

    refused = {name for name in _OPTIONAL_BACKENDS if name not in sys.modules}
    finder = _Refuse(refused)
    sys.meta_path.insert(0, finder)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(finder)
    return skops.io
