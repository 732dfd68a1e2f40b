"""Recipes: one YAML file describing a whole job, validated by the task's pydantic model.

    >>> config = load_recipe("recipes/iris-svc.yaml", overrides=["search.cv=3"])
    >>> config.search.cv
    3

Errors name the field path and what is allowed, on one line, as :class:`RecipeError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zero2one.errors import RecipeError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, validate_by_name=True, validate_by_alias=True,
        serialize_by_alias=True,
    )


class TrackConfig(Strict):
    enabled: bool = Field(True, description="Record the job as an MLflow run.")
    experiment: str | None = Field(
        None, description="MLflow experiment; defaults to the recipe's name."
    )
    tensorboard: bool = Field(
        False, description="Deep-learning tasks: also write TensorBoard event files (training "
        "curves, learning rate, sample images or texts) to WORKSPACE/tensorboard/NAME-TIME; "
        "`zero2one tensorboard` opens them."
    )


class BaseRecipe(Strict):
    """Fields every recipe has, whatever its task."""

    task: str = Field(description="The task's name, one of the installed tasks.")
    name: str = Field(pattern=NAME_PATTERN, description="Name of the job and of its model.")
    description: str | None = Field(None, description="Free text, kept with the run.")
    seed: int = Field(42, ge=0, description="Seed for splits, searches and training.")
    track: TrackConfig = Field(default_factory=TrackConfig, description="Experiment tracking.")
    # the YAML key is ``register``; a field of that name would shadow ABCMeta.register
    register_as: str | None = Field(
        None,
        alias="register",
        pattern=NAME_PATTERN,
        description="Register the trained model under this name in the model registry.",
    )

    @property
    def experiment(self) -> str:
        return self.track.experiment or self.name


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a recipe file into a dict; a malformed file raises :class:`RecipeError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping (key: value), got {_kind(raw)}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values parse as YAML (``3``, ``[a, b]``, ``true``)."""
    result = json.loads(json.dumps(raw, default=str))  # deep copy; the caller's dict is untouched
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set needs key.path=value, got {item!r}")
        parts = key.strip().split(".")
        if any(not p for p in parts):
            raise RecipeError(f"--set {item!r}: empty part in key path {key!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                path = ".".join(parts[: i + 1])
                raise RecipeError(f"--set {item!r}: {path} is a {_kind(child)}, not a section")
            node = child
        node[parts[-1]] = parsed
    return result


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists become JSON; used for run params."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple | Mapping):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = str(value)
    return flat


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """All problems on one line, joined with ``; ``: ``search.method: Input should be ...``."""
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, err["loc"][:-1]) if model else None
            allowed = f"; allowed: {', '.join(known)}" if known else ""
            parts.append(f"{path}: unknown field{allowed}")
            continue
        if err["type"] == "missing":
            parts.append(f"{path}: required field is missing")
            continue
        message = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        parts.append(f"{path}: {message}{shown}" if err["loc"] else f"{message}{shown}")
    return "; ".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the sub-model found by following ``loc`` from ``model``, if any."""
    import typing

    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == str(part)),
                     None)
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return None


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "mapping", list: "list", str: "string"}
    return names.get(type(value), type(value).__name__)
