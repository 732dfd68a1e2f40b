"""One contract over every registered task, plugins included (scikit-learn's
``check_estimator`` idea): each check runs for each task, so a new task is held to all of them.

The checks themselves are :mod:`zero2one.testing` (public: a plug-in author runs them on their
own task with ``check_task``). A zero2one task without a case in ``tests/cases.py`` fails
:func:`test_every_shipped_task_has_a_case`; a task from another package is not ours to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zero2one.artifacts import read_manifest
from zero2one.catalog import get_task, load_recipe, register_task, task_names
from zero2one.testing import (
    check_data,
    check_declaration,
    check_evaluate_loaded,
    check_save_and_load,
    check_served_route,
    check_tampered_file,
    check_unknown_recipe_keys,
)

from .cases import CASES, REPO, Trained

OWN = sorted(CASES)  # zero2one's tasks and the example plug-in the set-up installs


def test_every_shipped_task_has_a_case() -> None:
    """zero2one's own tasks (its entry points) each have a smallest job here; a task from
    another installed package is that package's to check (zero2one.testing), not a failure of
    zero2one's suite."""
    from importlib import metadata

    own = {ep.name for ep in metadata.entry_points(group="zero2one.tasks")
           if ep.value.startswith("zero2one.")}
    assert own <= set(CASES), "add the new task's smallest job to CASES"
    assert "nearest-centroid" in task_names(), "the example plugin (examples/plugin-task) is " \
        "installed by the set-up and found through its entry point"


@pytest.mark.parametrize("name", OWN)
def test_task_class_declares_the_contract(name: str) -> None:
    cls = get_task(name)
    check_declaration(cls)
    assert cls.name == name


@pytest.mark.parametrize("name", OWN)
def test_unknown_recipe_keys_are_rejected(name: str) -> None:
    check_unknown_recipe_keys(get_task(name), CASES[name])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", OWN)
def test_predictions_survive_save_and_load(name: str, trained: Callable[[str], Trained]) -> None:
    check_save_and_load(get_task(name), trained(name), CASES[name])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", OWN)
def test_the_model_records_its_data(name: str, trained: Callable[[str], Trained]) -> None:
    """Every task's data carries its source and fingerprint (zero2one.task.TaskData), and the
    manifest records them — the plug-in's too (its dict-shaped data used to record nothing)."""
    check_data(get_task(name), trained(name))  # type: ignore[arg-type]
    assert len(read_manifest(trained(name).directory)["data"]["sha256"]) == 64


def test_data_without_a_fingerprint_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.api import train
    from zero2one.errors import ContractError

    cls = get_task("tabular-classification")
    monkeypatch.setattr(cls, "load_data", lambda self: {"x": [1, 2, 3]})
    with pytest.raises(ContractError, match="load_data\\(\\) returned a dict without a source "
                                            "and a fingerprint"):
        train({"task": "tabular-classification", "name": "no-prints",
               "data": {"source": "sklearn:iris"}, "model": {"estimator": "svc"},
               "track": {"enabled": False}})


@pytest.mark.parametrize("name", OWN)
def test_evaluate_and_report_on_a_loaded_model(name: str, trained: Callable[[str], Trained],
                                               tmp_path: Path) -> None:
    check_evaluate_loaded(get_task(name), trained(name), tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", OWN)
def test_a_tampered_file_is_refused(name: str, trained: Callable[[str], Trained],
                                    tmp_path: Path) -> None:
    check_tampered_file(get_task(name), trained(name), tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", OWN)
def test_the_served_route_answers_and_refuses(name: str,
                                              trained: Callable[[str], Trained]) -> None:
    check_served_route(get_task(name), trained(name), CASES[name])  # type: ignore[arg-type]


def test_a_failing_check_names_itself(tmp_path: Path) -> None:
    """check_task's failures say which check and which task: a plug-in author reads them."""
    from zero2one.testing import Case, check_task

    cls = get_task("nearest-centroid")

    class NoRoutes(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def routes(cls) -> list[Any]:
            return []

    case = Case(REPO / "examples/plugin-task/centroid.yaml", lambda: [[5.1, 3.5, 1.4, 0.2]],
                ("POST", "/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}),
                ("POST", "/predict", {"rows": [[5.1]]}))
    with pytest.raises(AssertionError, match="nearest-centroid: declaration: a servable task "
                                             "declares its routes"):
        check_task(NoRoutes, case, tmp_path)


def test_duplicate_registration_raises() -> None:
    cls = get_task("tabular-classification")

    class Impostor(cls):  # type: ignore[misc, valid-type]
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_task(Impostor)
    assert register_task(cls) is cls  # the same class again is fine
    with pytest.raises(TypeError, match="not a zero2one Task"):
        register_task(dict)  # type: ignore[arg-type]


def test_example_recipes_name_registered_tasks() -> None:
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        assert load_recipe(path).task in task_names(), path
    assert json.loads(json.dumps(task_names())) == task_names()


def test_the_contract_table_lists_every_member() -> None:
    """zero2one.task's table is the contract's one page: every public member of the core and
    of each capability is in it, under the heading that names its class; Task is made of
    nothing else."""
    import zero2one.task as contract

    sections: dict[str, str] = {}
    heading = None
    for line in (contract.__doc__ or "").splitlines():
        if line.startswith("**"):
            heading = re.search(r"\(``(\w+)``", line)[1]  # type: ignore[index]
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    parts = (contract.TaskCore, *contract.CAPABILITIES)
    assert sorted(sections) == sorted(c.__name__ for c in parts)
    assert contract.Task.__bases__ == parts
    assert not [n for n in vars(contract.Task) if not n.startswith("_")], "Task adds nothing"
    for part in parts:
        members = [n for n in [*vars(part), *part.__annotations__] if not n.startswith("_")]
        shared = contract.Capability.__annotations__  # declared for every capability to read
        members = [n for n in members if n not in shared or n in vars(part)]
        missing = sorted({n for n in members if f"``{n}``" not in sections[part.__name__]})
        assert not missing, f"add to {part.__name__}'s part of zero2one.task's table: {missing}"
