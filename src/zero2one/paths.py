"""Where zero2one keeps things: the workspace of the embedded stores and caches, the user's
cache of conversions every workspace shares, and whether the tracking store is the embedded
one. A leaf: it imports nothing of zero2one's."""

from __future__ import annotations

import os
from pathlib import Path


def workspace() -> Path:
    """The workspace directory holding the embedded stores: ``$ZERO2ONE_HOME``; else, inside a
    git working tree, the nearest ``.zero2one`` from here up to its top, or the top's own (so a
    notebook in ``notebooks/`` shares the store the CLI uses at the project's root); else
    ``./.zero2one``."""
    if home := os.environ.get("ZERO2ONE_HOME"):
        return Path(home).absolute()
    here = Path.cwd().absolute()
    folders = [here, *here.parents]
    top = next((f for f in folders if (f / ".git").exists()), None)
    if top is None:
        return here / ".zero2one"
    for folder in folders[:folders.index(top) + 1]:
        if (folder / ".zero2one").is_dir():
            return folder / ".zero2one"
    return top / ".zero2one"


def cache_home() -> Path:
    """What every workspace of this user shares, made once from files that do not change (a GGUF
    file converted to a safetensors directory): ``$ZERO2ONE_CACHE``; else
    ``$XDG_CACHE_HOME/zero2one``; else ``~/.cache/zero2one``."""
    if cache := os.environ.get("ZERO2ONE_CACHE"):
        return expand(cache).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or expand("~/.cache")
    return Path(base).absolute() / "zero2one"


def is_embedded() -> bool:
    """True when the store is the workspace's own SQLite file."""
    return not os.environ.get("MLFLOW_TRACKING_URI")


def expand(text: str | Path) -> Path:
    """``text`` as a path with ``~`` and ``~user`` expanded where they can be; an unknown user
    (``~nobody``) stays as written, for the caller's "not found" (pathlib raises instead)."""
    return Path(os.path.expanduser(str(text)))
