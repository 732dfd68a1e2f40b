"""Data versions (git and DVC), ``zero2one data add|diff`` and ``zero2one reproduce``, on
temporary git repositories with DVC's local remotes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from zero2one import tracking, versions
from zero2one.catalog import get_task
from zero2one.errors import DataError, UserError

from .conftest import iris_recipe
from .test_cli import run

pytest.importorskip("dvc")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def init_repo(repo: Path) -> Path:
    repo.mkdir(exist_ok=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    (repo / ".gitignore").write_text(".zero2one/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "start")
    return repo


def iris_frame(noise: float = 0.0) -> pd.DataFrame:
    """Iris as a table; ``noise``: that share of the labels replaced by another class."""
    import numpy as np
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    if noise:
        rng = np.random.default_rng(0)
        flip = rng.random(len(frame)) < noise
        frame.loc[flip, "target"] = (frame.loc[flip, "target"] + 1) % 3
    return frame


RECIPE = {"task": "tabular-classification", "name": "iris-dvc", "seed": 0,
          "data": {"source": "data/iris.csv", "target": "target"},
          "model": {"estimator": "random_forest", "params": {"n_estimators": 20}},
          "register": "iris-dvc"}


@pytest.fixture
def project(workspace: Path) -> Path:
    """A git repository (the test's working directory) with a recipe committed and iris in
    data/, not yet versioned."""
    init_repo(workspace)
    (workspace / "iris.yaml").write_text(yaml.safe_dump(RECIPE))
    git(workspace, "add", "iris.yaml")
    git(workspace, "commit", "-qm", "recipe")
    (workspace / "data").mkdir()
    iris_frame().to_csv(workspace / "data/iris.csv", index=False)
    return workspace


def train_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run(["train", "iris.yaml", "--json", *args], capsys)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.slow  # git and DVC processes: seconds
def test_reproduce_an_old_run_after_the_data_changed(project: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["data", "add", "data/iris.csv", "-m", "iris v1"], capsys)
    assert code == 0, err
    assert "pushed to zero2one" in out and "committed data/iris.csv.dvc" in out
    v1_md5 = yaml.safe_load((project / "data/iris.csv.dvc").read_text())["outs"][0]["md5"]
    first = train_json(capsys)
    tags = tracking.run_tags(first["run_id"])
    assert tags["zero2one.data.dvc_md5"] == v1_md5
    assert tags["zero2one.data.git_commit"] == git(project, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.commit"] == tags["zero2one.data.git_commit"]
    assert tags["zero2one.data.reproducible"] == "true"
    manifest = json.loads((Path(first["model_dir"]) / "manifest.json").read_text())
    assert manifest["data"]["versions"]["data"][0]["dvc"][0]["md5"] == [v1_md5]

    iris_frame(noise=0.3).to_csv(project / "data/iris.csv", index=False)
    code, _, err = run(["data", "add", "data/iris.csv", "-m", "iris v2: noisy labels"], capsys)
    assert code == 0, err
    second = train_json(capsys)
    assert second["metrics"]["accuracy"] < first["metrics"]["accuracy"]
    head, status = git(project, "rev-parse", "HEAD"), git(project, "status", "--porcelain")
    v2_bytes = (project / "data/iris.csv").read_bytes()

    code, out, err = run(["reproduce", first["run_id"], "--json"], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["reproduced"] and again["tolerance"] == 0.0 and again["differences"] == []
    recorded = {f"test_{k}": v for k, v in first["metrics"].items()}
    assert {m["name"]: m["reproduced"] for m in again["metrics"]} == recorded  # equal
    assert tracking.run_tags(again["new_run_id"])["zero2one.reproduces"] == first["run_id"]
    assert [v["version"] for v in tracking.model_versions("iris-dvc")] == ["2", "1"]
    # the user's working tree is as it was, and no worktree is left behind
    assert (project / "data/iris.csv").read_bytes() == v2_bytes
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain") == status
    assert len(git(project, "worktree", "list").splitlines()) == 1

    code, out, err = run(["data", "diff", first["run_id"], second["run_id"], "--json"], capsys)
    assert code == 0, err
    found = {(d["section"], d["key"]) for d in json.loads(out)}
    assert {("data", "data/iris.csv"), ("data", "fingerprint"), ("data", "commit")} <= found
    assert not any(section == "recipe" for section, _ in found)
    code, out, _ = run(["data", "diff", first["run_id"], again["new_run_id"]], capsys)
    assert code == 0 and "same data with the same recipe" in out


@pytest.mark.slow  # git and DVC processes: seconds
def test_a_recipe_change_shows_in_the_diff(project: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    versions.add("data/iris.csv", message="iris")
    first = train_json(capsys)
    second = train_json(capsys, "--set", "model.params.n_estimators=5")
    code, out, _ = run(["data", "diff", first["run_id"], second["run_id"]], capsys)
    assert code == 0
    assert "model.params.n_estimators" in out and "20" in out and "5" in out
    assert "data/iris.csv" not in out


@pytest.mark.parametrize("how", ["data edited after add", "dvc file not committed"])
def test_uncommitted_data_cannot_be_reproduced(project: Path, capsys: pytest.CaptureFixture[str],
                                               how: str) -> None:
    if how == "data edited after add":
        versions.add("data/iris.csv", message="iris")
        iris_frame(noise=0.2).to_csv(project / "data/iris.csv", index=False)
    else:
        versions.add("data/iris.csv")  # staged only
    trained = train_json(capsys)
    assert tracking.run_tags(trained["run_id"])["zero2one.data.reproducible"] == "false"
    code, _, err = run(["reproduce", trained["run_id"]], capsys)
    assert code == 2
    assert "had changes not committed to git when the run read it" in err
    assert len(err.strip().splitlines()) == 1


def test_unversioned_data_cannot_be_reproduced(project: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    trained = train_json(capsys)
    code, _, err = run(["reproduce", trained["run_id"]], capsys)
    assert code == 2 and "data/iris.csv is versioned by neither git nor DVC" in err


@pytest.mark.slow  # git and DVC processes: seconds
def test_an_absolute_data_path_is_refused(project: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    versions.add("data/iris.csv", message="iris")
    trained = train_json(capsys, "--set", f"data.source={project / 'data/iris.csv'}")
    code, _, err = run(["reproduce", trained["run_id"]], capsys)
    assert code == 2 and "by an absolute path" in err


def test_data_committed_to_git_reproduces(project: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    git(project, "add", "data/iris.csv")
    git(project, "commit", "-qm", "iris in git")
    first = train_json(capsys)
    iris_frame(noise=0.3).to_csv(project / "data/iris.csv", index=False)
    git(project, "commit", "-qam", "noisy")
    code, out, err = run(["reproduce", first["run_id"], "--json"], capsys)
    assert code == 0, err + out
    assert json.loads(out)["reproduced"]


@pytest.mark.slow  # git and DVC processes: seconds
def test_a_clone_reproduces_from_the_shared_remote_and_says_what_the_remote_lacks(
        project: Path, tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path_factory.mktemp("remote")
    versions.add("data/iris.csv", remote=str(shared), message="iris")
    assert "zero2one" in (project / ".dvc/config").read_text()  # the team's remote, committed
    first = train_json(capsys)

    elsewhere = tmp_path_factory.mktemp("teammate")
    clone = elsewhere / "clone"
    git(elsewhere, "clone", "-q", str(project), str(clone))
    assert not (clone / ".dvc/cache").exists() and not (clone / "data/iris.csv").exists()
    monkeypatch.chdir(clone)  # same tracking store (ZERO2ONE_HOME), nothing else shared
    code, out, err = run(["reproduce", first["run_id"], "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["reproduced"]

    shutil.rmtree(shared)
    shared.mkdir()
    other = elsewhere / "other"
    git(elsewhere, "clone", "-q", str(project), str(other))
    monkeypatch.chdir(other)
    code, _, err = run(["reproduce", first["run_id"]], capsys)
    assert code == 2
    assert "data/iris.csv.dvc" in err and "neither this machine's DVC cache nor the remote" in err
    assert len(git(other, "worktree", "list").splitlines()) == 1


def test_reproduce_needs_the_runs_repository(project: Path, capsys: pytest.CaptureFixture[str],
                                            tmp_path_factory: pytest.TempPathFactory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    versions.add("data/iris.csv", message="iris")
    trained = train_json(capsys)
    monkeypatch.chdir(tmp_path_factory.mktemp("not-a-repo"))
    code, _, err = run(["reproduce", trained["run_id"]], capsys)
    assert code == 2 and "run reproduce inside a clone of that repository" in err
    monkeypatch.chdir(init_repo(tmp_path_factory.mktemp("another") / "repo"))
    code, _, err = run(["reproduce", trained["run_id"]], capsys)
    commit = git(project, "rev-parse", "HEAD")
    assert code == 2 and f"commit {commit[:12]} is not in the repository" in err


@pytest.mark.slow  # git and DVC processes: seconds
def test_adding_again_and_choosing_a_team_remote(project: Path, capsys: pytest.CaptureFixture[str],
                                                 tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    first = versions.add("data/iris.csv", message="iris")
    assert first.remote.startswith("zero2one (") and ".zero2one/dvc-remote" in first.remote
    head = git(project, "rev-parse", "HEAD")
    code, out, err = run(["data", "add", "data/iris.csv", "-m", "again"], capsys)
    assert code == 0, err
    assert "unchanged: data/iris.csv.dvc records this version in the last commit" in out
    assert git(project, "rev-parse", "HEAD") == head  # no empty commit
    shared = tmp_path_factory.mktemp("team-remote")
    (project / "data/iris.csv").write_text("a,target\n1,0\n2,1\n")
    again = versions.add("data/iris.csv", remote=str(shared), message="v2")
    assert again.remote == f"zero2one ({shared})"  # not this machine's local default
    assert any(shared.rglob("*")) and again.commit == git(project, "rev-parse", "HEAD")


def test_a_broken_dvc_file_is_recorded_not_fatal(project: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    versions.add("data/iris.csv", message="iris")
    (project / "data/iris.csv.dvc").write_text("outs: [{path: iris.csv}]\n")  # no hash
    record = versions.describe([Path("data/iris.csv")], cwd=project)
    assert "records no data hash" in record["error"] and record["data"] == []
    assert record["git"]["commit"] == git(project, "rev-parse", "HEAD")  # kept all the same
    trained = train_json(capsys)
    tags = tracking.run_tags(trained["run_id"])
    assert tags["zero2one.data.reproducible"] == "false"
    assert tags["mlflow.source.git.commit"] == record["git"]["commit"]


def test_data_add_refusals(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        versions.add("data/absent.csv")
    outside = tmp_path_factory.mktemp("no-git") / "t.csv"
    outside.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not inside a git repository; run `git init`"):
        versions.add(outside)
    with pytest.raises(UserError, match="is tracked by git; stop tracking it there first"):
        versions.add("iris.yaml")
    with pytest.raises(UserError, match="not the repository itself"):
        versions.add(".")
    assert not (project / ".dvc").exists()  # nothing initialised by a refused add


def test_an_ignored_data_folder_is_refused_up_front(project: Path) -> None:
    """The zero2one clone ignored /data/: DVC then refuses to write its .dvc file there, and
    its reason was hidden (``--quiet``) behind "exit code 1", with .dvc/ left staged."""
    (project / ".gitignore").write_text(".zero2one/\n/data/\n")
    with pytest.raises(UserError, match=r"^data/iris.csv.dvc would be ignored by git \(rule "
                                        r"'/data/', .gitignore line 2\).*`/data/\*\*`"):
        versions.add("data/iris.csv")
    assert not (project / ".dvc").exists() and not (project / ".dvcignore").exists()
    assert git(project, "diff", "--cached", "--name-only") == ""
    # the clone's own rules: the folder's contents ignored, its .dvc files kept
    (project / ".gitignore").write_text(".zero2one/\n/data/**\n!/data/**/\n!/data/**/*.dvc\n"
                                        "!/data/**/.gitignore\n")
    added = versions.add("data/iris.csv", message="iris")
    assert added.commit and "data/iris.csv.dvc" in git(project, "ls-files")


def test_a_failed_add_shows_dvcs_reason_and_undoes_its_set_up(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = versions._dvc

    def failing_add(root: Path, *args: str, check: bool = True) -> Any:
        if args[0] == "add":  # DVC's own refusal, as it words it
            args = ("add", "--no-such-option", *args[1:])
        return real(root, *args, check=check)

    monkeypatch.setattr(versions, "_dvc", failing_add)
    with pytest.raises(UserError) as raised:
        versions.add("data/iris.csv")
    message = str(raised.value)
    assert message.startswith("dvc add failed in") and "exit code" not in message, message
    assert "no-such-option" in message and "\n" not in message
    assert not (project / ".dvc").exists() and not (project / ".dvcignore").exists()
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.slow  # git and DVC processes: seconds
def test_folders_and_files_inside_them(project: Path) -> None:
    images = project / "images"
    for name in ("a", "b"):
        (images / name).mkdir(parents=True)
        (images / name / "1.txt").write_text(name)
    added = versions.add("images", message="images")
    assert added.md5.endswith(".dir") and added.files == 2
    record = versions.describe([Path("images/a/1.txt"), Path("images")], cwd=project)
    assert [e["dvc"][0]["file"] for e in record["data"]] == ["images.dvc", "images.dvc"]
    assert all(e["clean"] for e in record["data"])
    (images / "b" / "2.txt").write_text("new")
    assert not versions.describe([Path("images")], cwd=project)["data"][0]["clean"]

    loose = project / "tables"
    loose.mkdir()
    for name in ("x.csv", "y.csv"):
        (loose / name).write_text("a\n1\n")
        versions.add(loose / name, message=name)
    entry = versions.describe([Path("tables")], cwd=project)["data"][0]
    assert [d["file"] for d in entry["dvc"]] == ["tables/x.csv.dvc", "tables/y.csv.dvc"]
    assert entry["clean"]


def test_reproduce_a_library_data_set_and_report_a_difference(
        workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """sklearn's iris is versioned by scikit-learn: the run is trained again outside the
    repository, anywhere. A recorded metric the retrain does not match (tampered here) fails
    the reproduction with exit code 1."""
    init_repo(workspace)
    recipe = workspace / "r.yaml"
    recipe.write_text(yaml.safe_dump(iris_recipe(track={"enabled": True}, seed=3)))
    code, out, err = run(["train", str(recipe), "--json"], capsys)
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = run(["reproduce", run_id, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["reproduced"]

    tracking.client().log_metric(run_id, "test_accuracy", 0.5)
    code, out, _ = run(["reproduce", run_id], capsys)
    assert code == 1
    assert "DIFFERS" in out and "NOT reproduced" in out
    code, out, _ = run(["reproduce", run_id, "--tolerance", "0.6", "--json"], capsys)
    assert code == 0 and json.loads(out)["tolerance"] == 0.6


def test_reproduce_refusals(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["reproduce", "0123456789abcdef0123456789abcdef"], capsys)
    assert code == 2 and "no run '0123456789abcdef0123456789abcdef'" in err
    c = tracking.client()
    bare = c.create_run(tracking.experiment_id("outside")).info.run_id
    c.set_terminated(bare, "FINISHED")
    code, _, err = run(["reproduce", bare], capsys)
    assert code == 2 and "has no recipe.yaml and lineage.json" in err
    failed = c.create_run(tracking.experiment_id("outside")).info.run_id
    c.set_terminated(failed, "FAILED")
    code, _, err = run(["reproduce", failed], capsys)
    assert code == 2 and "did not finish (FAILED)" in err


def test_data_paths_of_recipes() -> None:
    task_cls = get_task("image-classification")
    assert task_cls(task_cls.config_model.model_validate(
        {"task": "image-classification", "name": "x", "data": {"source": "folder:imgs"}})
    ).data_paths() == [Path("imgs")]
    tabular = get_task("tabular-classification")

    def paths(source: str) -> list[Path]:
        return tabular(tabular.config_model.model_validate(
            {"task": "tabular-classification", "name": "x", "data": {"source": source},
             "model": {"estimator": "svc"}})).data_paths()

    assert paths("sklearn:iris") == []
    assert paths("data/t.csv") == [Path("data/t.csv")]
    text = get_task("text-generation")
    assert text(text.config_model.model_validate(
        {"task": "text-generation", "name": "x",
         "data": {"source": "a.jsonl", "val_source": "b.jsonl"}})
    ).data_paths() == [Path("a.jsonl"), Path("b.jsonl")]


def test_data_paths_of_a_glob(workspace: Path) -> None:
    tabular = get_task("tabular-classification")
    for name in ("b.csv", "a.csv"):
        (workspace / name).write_text("a\n1\n")
    task = tabular(tabular.config_model.model_validate(
        {"task": "tabular-classification", "name": "x", "data": {"source": "*.csv"},
         "model": {"estimator": "svc"}}))
    assert task.data_paths() == [Path("a.csv"), Path("b.csv")]


def test_a_task_package_cannot_take_a_zero2one_subcommand() -> None:
    import typer

    from zero2one.cli.main import _merge

    group, more = typer.Typer(), typer.Typer()
    group.command("add")(lambda: None)
    more.command("add")(lambda: None)
    with pytest.raises(RuntimeError, match="'data add', which zero2one already has"):
        _merge(group, more, "data")


def test_a_second_copy_of_the_cli_module_adds_the_task_commands_once() -> None:
    """``python -m zero2one.cli.main`` runs the module as ``__main__``; code in that process
    that imports ``zero2one.cli.main`` (a model class named in a recipe, say) runs it again,
    and its groups are the same objects: the task commands are already there."""
    import importlib.util

    from zero2one.cli import data
    from zero2one.cli import main as cli

    spec = importlib.util.spec_from_file_location("zero2one_cli_copy", cli.__file__)
    assert spec is not None and spec.loader is not None
    before = [c.name for c in data.app.registered_commands]
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # raised before
    assert [c.name for c in data.app.registered_commands] == before
    assert before.count("profile") == 1


@pytest.mark.slow
def test_a_deep_learning_run_reproduces_within_its_tolerance(
        workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .tasks.test_vision import recipe as vision_recipe

    path = workspace / "cnn.yaml"
    path.write_text(yaml.safe_dump({**vision_recipe(epochs=1), "track": {"enabled": True}}))
    code, out, err = run(["train", str(path), "--json"], capsys)
    assert code == 0, err
    code, out, err = run(["reproduce", json.loads(out)["run_id"], "--json"], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["reproduced"] and again["tolerance"] == 0.01
    assert all(abs(m["reproduced"] - m["recorded"]) <= 0.01 * max(1, abs(m["recorded"]))
               for m in again["metrics"])
