"""Other libraries' loggers, quieted for the length of a call and then put back.

A library's chatter (the ONNX quantizer logs through the root logger, matplotlib about font
weights, Dask while a cluster closes) is quieted around the call that makes it — never by
changing a logger's level for the rest of the process, which silences the caller's own warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quieted(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Loggers ``names`` (``""`` for the root logger) at ``level`` inside the block; each is
    given back the level it had, however the block ends.

    >>> with quieted("matplotlib.font_manager"):
    ...     logging.getLogger("matplotlib.font_manager").level == logging.ERROR
    True
    """
    loggers = [logging.getLogger(name) if name else logging.getLogger() for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before, strict=True):
            logger.setLevel(old)
