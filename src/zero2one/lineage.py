"""``zero2one reproduce RUN_ID`` and ``zero2one data diff RUN_A RUN_B``.

A run records its resolved recipe (``recipe.yaml``) and its lineage (``lineage.json``: the git
commit, each data path's git or DVC version, the libraries and the machine; see
:mod:`zero2one.versions`). :func:`reproduce` checks that data out again in a temporary git
worktree, trains the recorded recipe there (same seed; tracked as a new run tagged
``zero2one.reproduces``, never registered) and compares the metrics: equal for tasks whose
training is deterministic, within the task's stated tolerance for the others — or says what
differs. :func:`diff` lists what differs between two runs' data, recipes and libraries.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one import tracking, versions
from zero2one.api import train
from zero2one.catalog import get_task, validate
from zero2one.errors import UserError
from zero2one.paths import workspace
from zero2one.tracking import DATA_TAG

if TYPE_CHECKING:
    from zero2one.progress import Reporter

REPRODUCES_TAG = "zero2one.reproduces"
# recipe values that name or file a run and change nothing in it (a reproduction registers none)
_BOOKKEEPING = frozenset({"register", "description"})
_RECIPE = "recipe.yaml"


@dataclass
class MetricCheck:
    name: str
    recorded: float
    reproduced: float | None
    within: bool


@dataclass
class Difference:
    """One thing that differs between two runs: ``section`` is data, recipe, libraries or
    machine."""

    section: str
    key: str
    a: Any
    b: Any


@dataclass
class Reproduction:
    """What :func:`reproduce` found."""

    run_id: str
    new_run_id: str | None
    tolerance: float
    metrics: list[MetricCheck]
    # what differs from the recorded run: the data read (fingerprint), libraries, machine
    differences: list[Difference] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return bool(self.metrics) and all(m.within for m in self.metrics) and not any(
            d.section == "data" for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reproduced": self.reproduced}


def reproduce(run_id: str, *, tolerance: float | None = None,
              reporter: Reporter | None = None) -> Reproduction:
    """Train run ``run_id``'s recorded recipe on its recorded data again and compare."""
    run = tracking.get_run(run_id)
    if run["status"] != "FINISHED":
        raise UserError(f"run {run_id} did not finish ({run['status']}); only finished runs "
                        "can be reproduced")
    recipe, lineage = _recorded(run_id)
    if reasons := versions.unreproducible(lineage):
        raise UserError(f"run {run_id} cannot be reproduced: {'; '.join(reasons)}")
    recipe["register_as"] = None  # a reproduction is a run, not a new model version
    recipe.pop("register", None)
    task_cls = get_task(recipe["task"])
    tolerance = task_cls.reproduce_tolerance if tolerance is None else tolerance
    tags = {REPRODUCES_TAG: run_id}
    root = versions.git_root(Path.cwd())
    commit = (lineage.get("git") or {}).get("commit")
    # the recorded commit when this clone has it: the data, and any file the recipe names (a
    # Keras model's source), as the run had them
    here = root is not None and commit is not None and versions.has_commit(root, commit)
    if lineage["data"] or here:
        if root is None:
            raise UserError(f"run {run_id} read data versioned in git; run reproduce inside a "
                            "clone of that repository")
        with versions.checkout(lineage, root=root) as folder, _inside(folder):
            config = validate(recipe)  # here: the recipe may name files of that commit
            absolute = [p for p in task_cls(config).data_paths() if p.is_absolute()]
            if absolute:  # it would read the file as it is now, not the recorded version
                raise UserError(f"run {run_id} read {absolute[0]} by an absolute path; "
                                "reproduce checks the data out in a worktree and needs the "
                                "recipe's paths relative to the project")
            result = train(config, reporter=reporter, tags=tags)
    else:  # library data sets, and no recorded commit in this clone: the files here
        result = train(recipe, reporter=reporter, tags=tags)
    reproduced = {f"test_{k}": v for k, v in result.metrics.items()}
    if result.cv_score is not None:
        reproduced["cv_best_score"] = result.cv_score
    checks = [
        MetricCheck(name, value, reproduced.get(name),
                    name in reproduced and _close(reproduced[name], value, tolerance))
        for name, value in sorted(run["metrics"].items())
        if name.startswith("test_") or name == "cv_best_score"
    ]
    differences = []
    if result.run_id is not None:  # the commit is the recorded one, or none was needed
        differences = [d for d in diff(run_id, result.run_id)
                       if d.section in ("data", "libraries", "machine") and d.key != "commit"]
    return Reproduction(run_id, result.run_id, tolerance, checks, differences)


def _close(a: float, b: float, tolerance: float) -> bool:
    """Within ``tolerance``: absolute up to 1, relative beyond (perplexities, RMSEs)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance * max(1.0, abs(b))


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Work in ``folder`` (the recipe's relative paths resolve there) with the workspace —
    stores, caches — still the caller's."""
    home, cwd = os.environ.get("ZERO2ONE_HOME"), Path.cwd()
    os.environ["ZERO2ONE_HOME"] = str(workspace())
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        if home is None:
            os.environ.pop("ZERO2ONE_HOME", None)
        else:
            os.environ["ZERO2ONE_HOME"] = home


def _recorded(run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's recipe and lineage; a run that lacks them was not made by zero2one train
    (or by a version that recorded no lineage)."""
    import yaml

    recipe = tracking.read_artifact(run_id, _RECIPE)
    lineage = tracking.read_artifact(run_id, versions.LINEAGE)
    if recipe is None or lineage is None:
        missing = " and ".join(n for n, t in ((_RECIPE, recipe), (versions.LINEAGE, lineage))
                               if t is None)
        raise UserError(f"run {run_id} has no {missing}: it was not recorded by zero2one train "
                        "(or by a version older than data versioning); train it again")
    return yaml.safe_load(recipe), json.loads(lineage)


def diff(run_a: str, run_b: str) -> list[Difference]:
    """What differs between two runs: the data (paths, git and DVC versions, fingerprints),
    the recipe's values, the libraries and the machine."""
    runs = [tracking.get_run(run_a), tracking.get_run(run_b)]
    lineages = []
    for run in runs:
        text = tracking.read_artifact(run["run_id"], versions.LINEAGE)
        lineages.append(json.loads(text) if text is not None else {})
    out: list[Difference] = []

    def compare(section: str, a: dict[str, Any], b: dict[str, Any]) -> None:
        out.extend(Difference(section, key, a.get(key), b.get(key))
                   for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key))

    compare("data", *(_data_facts(run, lineage) for run, lineage in zip(runs, lineages,
                                                                          strict=True)))
    compare("recipe", *({k: v for k, v in run["params"].items() if k not in _BOOKKEEPING}
                        for run in runs))
    compare("libraries", *(lineage.get("libraries", {}) for lineage in lineages))
    compare("machine", *(lineage.get("platform", {}) for lineage in lineages))
    return out


def _data_facts(run: dict[str, Any], lineage: dict[str, Any]) -> dict[str, Any]:
    """A run's data, flat: the fingerprint of what it read, the git commit, and per path how
    it was versioned."""
    facts: dict[str, Any] = {"fingerprint": run["tags"].get(DATA_TAG),
                             "commit": (lineage.get("git") or {}).get("commit")}
    for entry in lineage.get("data", []):
        path = entry["path"]
        md5 = [m for d in entry.get("dvc", []) for m in d["md5"]]
        facts[path] = (f"dvc {','.join(md5)}" if md5 else
                       f"git {entry.get('object')}" if entry["versioned"] == "git" else
                       "unversioned") + ("" if entry["clean"] else " (uncommitted changes)")
    return facts
