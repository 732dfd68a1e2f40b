"""The task catalog: a plain dict from task name to task class.

Tasks come from the entry-point group ``zero2one.tasks`` (name: the task name, value:
``module:Class``) — zero2one's own tasks are declared there in its ``pyproject.toml``, exactly as
another package declares a plugin task — or from :func:`register_task` at run time. A task's
module is imported only when the task is first asked for, so tabular work never imports torch and
``zero2one --help`` stays fast.

Task-specific commands (``zero2one generate``, ...) come from the group ``zero2one.commands``
(name: the command, value: ``module:function`` — a Typer command — or ``module:app`` — a Typer
group —, in a light module).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from zero2one.errors import RecipeError, Zero2OneError
from zero2one.recipe import BaseRecipe, apply_overrides, format_validation_error, read_yaml
from zero2one.task import Task

if TYPE_CHECKING:
    from zero2one.task import BuiltinModel, Task

TASK_GROUP = "zero2one.tasks"
COMMAND_GROUP = "zero2one.commands"

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register ``cls`` under ``cls.name``; another class under a taken name raises."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"{cls!r} is not a zero2one Task class")
    taken = _TASKS.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"task {cls.name!r} is already registered by {taken!r}")
    if taken is None and cls.name in _entry_points(TASK_GROUP):
        declared = _entry_points(TASK_GROUP)[cls.name]
        if declared.value != f"{cls.__module__}:{cls.__qualname__}":
            raise ValueError(f"task {cls.name!r} is already declared by {declared.value}")
    _TASKS[cls.name] = cls
    return cls


@functools.cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    points: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=group):
        if point.name in points and points[point.name].value != point.value:
            raise Zero2OneError(f"{group} entry point {point.name!r} is declared twice "
                                f"({points[point.name].value} and {point.value})")
        points[point.name] = point
    return points


def task_names() -> list[str]:
    """Every task that can be asked for: declared by an installed package or registered."""
    return sorted(set(_entry_points(TASK_GROUP)) | set(_TASKS))


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``, importing its module on first use."""
    if name not in _TASKS:
        point = _entry_points(TASK_GROUP).get(name)
        if point is None:
            raise RecipeError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
        cls = point.load()
        if not (isinstance(cls, type) and issubclass(cls, Task)) or cls.name != name:
            raise Zero2OneError(f"entry point {name} = {point.value} is not the Task class of "
                                f"task {name!r}")
        _TASKS[name] = cls
    return _TASKS[name]


def all_tasks() -> list[type[Task]]:
    """Every task class, each imported (light: task modules import heavy libraries lazily)."""
    return [get_task(name) for name in task_names()]


def builtin_models() -> dict[str, tuple[type[Task], BuiltinModel]]:
    """``builtin:NAME`` -> (the task that declares it, the model)."""
    found: dict[str, tuple[type[Task], BuiltinModel]] = {}
    for cls in all_tasks():
        for name, model in cls.builtin_models.items():
            if name in found and found[name][0] is not cls:
                raise Zero2OneError(f"built-in model {name!r} is declared by both "
                                    f"{found[name][0].name} and {cls.name}")
            found[name] = (cls, model)
    return found


def commands() -> dict[str, Callable[..., Any]]:
    """Task-specific CLI commands declared by installed packages: name -> Typer function or
    Typer group. A command whose module fails to import is left out with a warning, so that one
    broken package does not take the whole CLI down with it."""
    import logging

    found = {}
    for name, point in sorted(_entry_points(COMMAND_GROUP).items()):
        try:
            found[name] = point.load()
        except Exception as exc:  # a plugin's import error, whatever it is
            logging.getLogger(__name__).warning("command %r (%s) is unavailable: %s", name,
                                                point.value, exc)
    return found


# ---- recipes: validated by their task's config model -------------------------------------


def validate(raw: Mapping[str, Any], *, source: str = "recipe") -> BaseRecipe:
    """Validate a recipe dict with its task's config model."""
    task = raw.get("task")
    if task is None:
        raise RecipeError(f"{source}: missing 'task'; one of: {', '.join(task_names())}")
    if not isinstance(task, str):
        raise RecipeError(f"{source}: task must be a string; one of: {', '.join(task_names())}")
    model = get_task(task).config_model
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise RecipeError(f"{source}: {format_validation_error(exc, model)}") from None


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> BaseRecipe:
    """Read, override and validate a recipe file."""
    raw = apply_overrides(read_yaml(path), overrides)
    return validate(raw, source=str(path))


def schema(task: str) -> dict[str, Any]:
    """The JSON Schema of a task's recipe, for editors."""
    return get_task(task).config_model.model_json_schema()
