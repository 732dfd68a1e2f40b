"""The task registry: a plain dict from task name to task class.

Each task package calls :func:`register_task` in its ``__init__``. Built-in tasks are imported
only when first asked for, so tabular work never imports torch and ``zero2one --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from zero2one.errors import RecipeError

if TYPE_CHECKING:
    from zero2one.task import Task

_TASKS: dict[str, type[Task]] = {}

# task name -> module whose import registers it
_BUILTIN: dict[str, str] = {
    "tabular-classification": "zero2one.tasks.tabular",
    "tabular-regression": "zero2one.tasks.tabular",
    "image-classification": "zero2one.tasks.vision",
    "text-generation": "zero2one.tasks.textgen",
}


def register_task(cls: type[Task]) -> type[Task]:
    """Register ``cls`` under ``cls.name``; a second task with the same name raises."""
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is already registered by {_TASKS[cls.name]!r}")
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    """Every task that can be asked for, built-in or registered."""
    return sorted(set(_BUILTIN) | set(_TASKS))


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``, importing a built-in task package on first use."""
    if name not in _TASKS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    try:
        return _TASKS[name]
    except KeyError:
        raise RecipeError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())}"
        ) from None
