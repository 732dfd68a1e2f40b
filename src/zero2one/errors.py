"""The exceptions zero2one raises.

Every user error carries a message that says what was wrong and what to do; only the CLI turns
them into exit codes (2 for user errors) and only the server turns them into HTTP statuses::

    Zero2OneError                 base of everything zero2one raises on purpose
    ├── UserError                 the user can fix it (CLI exit code 2, HTTP 4xx)
    │   ├── RecipeError           malformed YAML, unknown task or field, bad value, bad override
    │   ├── DataError             missing file, absent column, text in a numeric column, empty data
    │   ├── ModelRefError         a model reference that does not resolve
    │   ├── ArtifactError         a model directory that is incomplete or untrusted
    │   │   └── IntegrityError    a file whose sha256 differs from the manifest (tampered, corrupt)
    │   ├── SchemaError           prediction input that does not match the model's input schema
    │   ├── ConversionError       an export or compression that would change the predictions
    │   └── MissingExtraError     an optional dependency is not installed
    ├── ContractError             a task (a plug-in's) does not honour zero2one's task contract
    └── TrackingError             the tracking store failed (not the user's input)
"""

from __future__ import annotations


class Zero2OneError(Exception):
    """Base class of every error zero2one raises on purpose."""


class UserError(Zero2OneError):
    """An error the user can fix; the message says how."""


class RecipeError(UserError):
    """The recipe (YAML, fields, values or ``--set`` overrides) is invalid."""


class DataError(UserError):
    """The data cannot be read or does not fit the task."""


class ModelRefError(UserError):
    """A model reference does not resolve to a model."""


class ArtifactError(UserError):
    """A model directory is incomplete, of an unknown format, or holds untrusted types."""


class IntegrityError(ArtifactError):
    """A file in a model directory does not match the sha256 its manifest records."""


class SchemaError(UserError):
    """Prediction input does not match the model's input schema."""


class ConversionError(UserError):
    """An exported or compressed model disagrees with its parent beyond tolerance, or cannot
    be made from it; nothing is written or registered."""


class MissingExtraError(UserError):
    """An optional dependency is missing; the message gives the ``pip install`` line."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install \"zero2one[{extra}]\""
        )
        self.module = module
        self.extra = extra


class ContractError(Zero2OneError):
    """A task class does not honour the contract (:mod:`zero2one.task`): its author can fix it,
    not the user running it."""


class TrackingError(Zero2OneError):
    """The tracking store (MLflow) failed."""


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` unless ``module`` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, extra)
