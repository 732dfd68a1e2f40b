"""The CLI end to end, in process through ``main()`` (exit codes as a shell sees them)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from zero2one.cli.main import main

from .conftest import REPO, iris_recipe


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def write_recipe(path: Path, **changes: object) -> Path:
    recipe = iris_recipe(track={"enabled": True}, register="iris-cli", **changes)
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_train_promote_predict_end_to_end(workspace: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    recipe = write_recipe(workspace / "r.yaml")
    code, out, err = run(["train", str(recipe), "--set", "search.cv=4", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["registered_uri"] == "models:/iris-cli/1"
    assert result["metrics"]["accuracy"] > 0.9

    code, out, _ = run(["runs", "list", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["run_id"] == result["run_id"]
    code, out, _ = run(["runs", "show", result["run_id"], "--json"], capsys)
    assert json.loads(out)["params"]["search.cv"] == "4"
    code, out, _ = run(["runs", "show", result["run_id"]], capsys)
    assert code == 0 and "test_accuracy" in out

    code, out, _ = run(["models", "promote", "iris-cli", "1", "--alias", "champion"], capsys)
    assert code == 0 and "models:/iris-cli@champion -> version 1" in out
    code, out, _ = run(["models", "list", "--json"], capsys)
    assert json.loads(out)[0]["aliases"] == {"champion": 1} or json.loads(out)[0]["aliases"] == {
        "champion": "1"}

    code, _, err = run(["predict", "models:/iris-cli@champion", "--input",
                        str(REPO / "examples/flowers.csv"), "--output", "scored.csv"], capsys)
    assert code == 0, err
    scored = pd.read_csv("scored.csv")
    assert len(scored) == 8
    assert {"prediction", "prediction_name"} <= set(scored.columns)
    assert set(scored["prediction_name"]) <= {"setosa", "versicolor", "virginica"}

    code, out, _ = run(["predict", "models:/iris-cli/1", "--input",
                        str(REPO / "examples/flowers.csv")], capsys)
    assert code == 0 and out.splitlines()[0].endswith("prediction,prediction_name")


def test_human_train_output(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(workspace / "r.yaml")
    code, out, _ = run(["train", str(recipe)], capsys)
    assert code == 0
    assert "Search results" in out and "accuracy" in out
    assert "registered: models:/iris-cli/1" in out


def test_quiet_prints_nothing(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(workspace / "r.yaml")
    code, out, err = run(["train", str(recipe), "--quiet"], capsys)
    assert (code, out, err) == (0, "", "")


def one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("task: tabular-classification\nname: [x\n", "malformed YAML at line"),
        ("task: tabular-sorting\nname: x\n", "unknown task 'tabular-sorting'"),
        (yaml.safe_dump({**iris_recipe(), "extra": 1}), "extra: unknown field"),
        (yaml.safe_dump(iris_recipe(model={"estimator": "sklearn.nope.X"})), "cannot import"),
    ],
)
def test_recipe_errors_exit_2(workspace: Path, capsys: pytest.CaptureFixture[str], content: str,
                              pattern: str) -> None:
    (workspace / "r.yaml").write_text(content)
    for command in (["train", "r.yaml"], ["recipe", "check", "r.yaml"]):
        code, _, err = run(command, capsys)
        one_line_error(code, err, pattern)
    assert not any((workspace / ".zero2one" / "artifacts").glob("*"))


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"source": "nothing.csv", "target": "y"}, "data file not found: nothing.csv"),
        ({"source": "d.csv", "target": "nope"}, "target column 'nope' not found"),
    ],
)
def test_data_errors_exit_2(workspace: Path, capsys: pytest.CaptureFixture[str],
                            data: dict, pattern: str) -> None:
    pd.DataFrame({"a": [1, 2, 3, 4], "y": [0, 1, 0, 1]}).to_csv("d.csv", index=False)
    recipe = write_recipe(workspace / "r.yaml", data=data)
    code, _, err = run(["train", str(recipe)], capsys)
    one_line_error(code, err, pattern)
    code, out, _ = run(["runs", "list", "--json"], capsys)
    assert json.loads(out) == []


def test_debug_shows_traceback(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.errors import RecipeError

    with pytest.raises(RecipeError):
        main(["--debug", "recipe", "check", "missing.yaml"])


def test_predict_errors_exit_2(workspace: Path, iris_model: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"sepal_length": [5.0]}).to_csv("in.csv", index=False)
    code, _, err = run(["predict", str(iris_model), "--input", "in.csv", "--output", "o.csv"],
                       capsys)
    one_line_error(code, err, "missing columns: sepal_width, petal_length, petal_width")
    assert not Path("o.csv").exists()
    code, _, err = run(["predict", "models:/ghost@champion", "--input", "in.csv"], capsys)
    one_line_error(code, err, "model 'ghost' has no alias 'champion'")
    code, _, err = run(["predict", str(iris_model), "--input", "in.csv", "--output", "o.txt"],
                       capsys)
    one_line_error(code, err, "output must end in .csv")


def test_recipe_check_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["recipe", "check", str(REPO / "recipes/iris-svc.yaml")], capsys)
    assert code == 0 and "ok (tabular-classification, name iris-svc)" in out
    code, out, _ = run(["recipe", "schema", "tabular-regression"], capsys)
    assert code == 0 and "search" in json.loads(out)["properties"]
    code, _, err = run(["recipe", "schema", "nope"], capsys)
    one_line_error(code, err, "unknown task 'nope'")


def test_promote_bad_input(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["models", "promote", "x", "1", "--alias", "bad alias"], capsys)
    one_line_error(code, err, "bad alias")
    for version in ("one", "\u00b9"):  # "¹" passes str.isdigit, not int()
        code, _, err = run(["models", "promote", "x", version], capsys)
        one_line_error(code, err, "version must be a number or latest")
    code, _, err = run(["models", "promote", "ghost", "1"], capsys)
    one_line_error(code, err, "no version '1'")


def test_runs_show_unknown(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["runs", "show", "0123456789abcdef"], capsys)
    one_line_error(code, err, "no run '0123456789abcdef'")


def test_empty_store_listings(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no runs yet" in run(["runs", "list"], capsys)[1]
    assert "no registered models yet" in run(["models", "list"], capsys)[1]


def test_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["doctor", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    assert {"python", "scikit-learn", "mlflow", "cpu", "memory", "torch.cuda", "store"} <= names
    code, _, err = run(["doctor", "--require", "quantum"], capsys)
    one_line_error(code, err, "unknown extra(s) quantum")


def test_doctor_fails_on_missing_required(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    real = metadata.version

    def fake(name: str) -> str:
        if name == "skops":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", fake)
    code, _out, err = run(["doctor"], capsys)
    assert code == 1
    assert 'skops: not installed; pip install "zero2one[tabular]"' in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import zero2one

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"zero2one {zero2one.__version__}"


def test_ui_command_targets_the_workspace_store(workspace: Path) -> None:
    from zero2one.cli.ui import ui_command

    command = ui_command("127.0.0.1", 5001)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert f"sqlite:///{workspace / '.zero2one' / 'mlflow.db'}" in command
    assert (workspace / ".zero2one" / "artifacts").as_uri() in command


def test_ui_without_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / "none"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run(["ui"], capsys)
    one_line_error(code, err, "train a recipe first")


def test_cli_help_imports_no_heavy_library() -> None:
    code = ("import sys, zero2one.cli.main as m\n"
            "heavy = [x for x in ('torch', 'sklearn', 'mlflow', 'pandas', 'optuna', 'fastapi', "
            "'transformers', 'numpy') "
            "if x in sys.modules]\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


def test_tabular_training_never_imports_torch(tmp_path: Path) -> None:
    model = str(tmp_path / "m")
    code = ("import sys, zero2one\n"
            f"zero2one.train({iris_recipe()!r}, out={model!r})\n"
            f"zero2one.load({model!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={"ZERO2ONE_HOME": str(tmp_path / ".z"), "PATH": "/usr/bin:/bin"})


def test_doctor_asks_a_shared_tracking_store_whether_it_answers(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from .conftest import free_port

    class Health(BaseHTTPRequestHandler):  # a server with basic auth: /health is open
        def do_GET(self) -> None:
            signed_in = self.headers.get("authorization") == "Basic YW5uOnNlY3JldA=="  # ann
            self.send_response(200 if self.path == "/health" else 401 if not signed_in else
                               200 if self.path.startswith("/api/2.0/mlflow/experiments/search")
                               else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
        code, out, _ = run(["doctor", "--json"], capsys)
        store = next(c for c in json.loads(out)["checks"] if c["name"] == "store")
        assert code == 1 and store["status"] == "fail"
        assert "refuses the credentials (HTTP 401)" in store["detail"]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
        code, out, _ = run(["doctor", "--json"], capsys)
        store = next(c for c in json.loads(out)["checks"] if c["name"] == "store")
        assert code == 0 and store["status"] == "ok" and "answers" in store["detail"]
    finally:
        server.shutdown()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    code, out, _ = run(["doctor", "--json"], capsys)
    store = next(c for c in json.loads(out)["checks"] if c["name"] == "store")
    assert code == 1 and store["status"] == "fail" and "does not answer" in store["detail"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restored after the test; --tracking-uri:
    code, out, _ = run(["--tracking-uri",
                        f"postgresql+psycopg://team:s3cret@127.0.0.1:{free_port()}/mlflow",
                        "doctor", "--json"], capsys)
    store = next(c for c in json.loads(out)["checks"] if c["name"] == "store")
    assert code == 1 and "does not answer" in store["detail"]
    assert "s3cret" not in out and "team:***@" in store["detail"]


def test_server_start_refuses_what_cannot_work(capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import free_port

    code, _, err = run(["server", "start", "--backend-store-uri", "/srv/mlflow"], capsys)
    one_line_error(code, err, "give a database URL")
    code, _, err = run(["server", "start", "--backend-store-uri",
                        f"postgresql+psycopg://team:s3cret@127.0.0.1:{free_port()}/mlflow"],
                       capsys)
    one_line_error(code, err, "does not answer")
    assert "s3cret" not in err and "team:***@" in err


def test_server_start_leaves_mlflows_job_runner_off_unless_asked(
        workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """MLflow's job runner (eight processes, about 1.3 GB here) serves jobs zero2one never
    submits: off by default, on where the user's environment says so."""
    import subprocess

    seen: list[dict[str, str]] = []
    monkeypatch.setattr(subprocess, "run", lambda command, check, env: (
        seen.append(env), subprocess.CompletedProcess(command, 0))[1])
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    assert run(["server", "start"], capsys)[0] == 0
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert run(["server", "start"], capsys)[0] == 0
    assert [env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] for env in seen] == ["false", "true"]


def test_without_a_terminal_progress_is_plain_lines_at_a_sane_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`zero2one train ... > log 2>&1`: bars draw nothing there, so a step says when it starts,
    how far it is at most every 30 s (with the time left), and when it is done."""
    import io

    from rich.console import Console

    from zero2one import progress

    clock = iter(range(0, 10_000, 7))  # each look at the clock: 7 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    reporter = progress.RichReporter()
    out = io.StringIO()
    reporter.console = Console(file=out, force_terminal=False, width=60)
    with reporter.step("training 500 steps", total=500) as step:
        for _ in range(500):
            step.advance()
    reporter.info("a message longer than the console is wide stays on one line, whatever "
                  "the width")
    lines = out.getvalue().splitlines()
    assert lines[0] == "training 500 steps: started (0/500)"
    assert lines[1].startswith("training 500 steps: 5/500, 1%, 0:00:35 elapsed, about ")
    assert lines[-2].startswith("training 500 steps: done (500/500, 100%) in 0:58:")
    assert len(lines) < 130  # every 30 s of 3,500 s, not every step
    assert lines[-1].endswith("whatever the width")


def test_zero2one_notices_reach_the_terminal_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A long one-off step (the built-in model's first conversion, about a minute) says so:
    zero2one's INFO lines are shown plainly, once, whatever the root logger does."""
    import logging

    from zero2one.cli import main as cli

    cli._notices(debug=False)
    cli._notices(debug=False)  # every command calls it: one handler all the same
    logging.getLogger("zero2one.tasks.textgen.models").info("converting X, once")
    logging.getLogger("other.library").info("not ours")
    err = capsys.readouterr().err
    assert err.count("converting X, once\n") == 1 and "not ours" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "list", "--limit", "-1"], "error: Invalid value for '--limit' / '-n': Input "
     "should be greater than or equal to 1 (see zero2one runs list --help)"),
    (["runs", "list", "--limt", "3"], "error: No such option: --limt"),
    (["train"], "error: Missing argument 'recipe'. (see zero2one train --help)"),
    (["nosuch"], "error: No such command 'nosuch'."),
])
def test_usage_errors_are_one_line(args: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err


def test_doctor_lists_the_extras_pyproject_declares() -> None:
    """doctor kept its own copy of the extras, which drifted from pyproject.toml: it reads
    them from the package's metadata now."""
    import re
    import tomllib

    from zero2one.doctor import TOOLING_EXTRAS, extras

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> list[str]:
        return [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements
                if not r.startswith("zero2one")]

    declared = {extra: names(reqs) for extra, reqs in project["optional-dependencies"].items()
                if extra not in TOOLING_EXTRAS}
    found = extras()
    assert [n.lower() for n in found["core"]] == names(project["dependencies"])
    assert {k: [n.lower() for n in v] for k, v in found.items() if k != "core"} == declared


def test_the_program_sets_its_collector_thresholds_and_a_caller_keeps_its_own() -> None:
    import gc

    from zero2one.machine import GC_THRESHOLDS

    shown = ("import atexit, gc, sys\natexit.register(lambda: print(gc.get_threshold()))\n"
             "sys.argv = ['zero2one', '--version']\nfrom zero2one.cli.main import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", shown], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(GC_THRESHOLDS)
    before = gc.get_threshold()
    gc.set_threshold(1234, 5, 6)
    try:
        with pytest.raises(SystemExit):
            main(["--version"])
        assert gc.get_threshold() == (1234, 5, 6)  # called from Python: left alone
    finally:
        gc.set_threshold(*before)
