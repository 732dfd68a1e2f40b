"""One resolver for every reference form, typed with the task that loads it; the server resolves
and hashes once at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from zero2one import artifacts, refs
from zero2one.api import load
from zero2one.refs import Resolved, resolve


def test_a_model_directory_resolves_with_its_task(iris_model: Path) -> None:
    resolved = resolve(iris_model)
    assert (resolved.task, resolved.kind, resolved.has_manifest) == (
        "tabular-classification", "directory", True)
    assert Resolved.from_json(resolved.to_json()) == resolved  # travels to worker processes


def test_a_transformers_directory_is_claimed_by_its_task(tiny_lm: Path) -> None:
    resolved = resolve(tiny_lm)
    assert (resolved.task, resolved.kind, resolved.has_manifest) == (
        "text-generation", "pretrained", False)
    model = load(resolved)
    assert model.name == "text-generation" and model.ref is resolved
    assert isinstance(model.predict("Hello", max_new_tokens=2), str)


@pytest.mark.slow  # the built-in model, converted from GGUF, several ways
def test_builtin_models_load_everywhere(workspace: Path) -> None:
    """builtin: resolves through the task that declares it, so zero2one.load (and predict,
    serve) take it like any reference."""
    resolved = resolve("builtin:smollm2-135m-instruct")
    assert (resolved.task, resolved.kind) == ("text-generation", "builtin")
    assert resolved.path is not None and (resolved.path / "config.json").exists()
    assert resolved.display_name == "smollm2-135m-instruct"


def test_a_directory_nobody_claims(workspace: Path) -> None:
    Path("empty").mkdir()
    with pytest.raises(refs.ModelRefError, match="no manifest.json"):
        resolve("empty")


def test_serve_resolves_and_hashes_once_at_start_up(iris_model: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from zero2one.cli.serve import load_app
    from zero2one.serving import ServeSettings

    calls = {"resolve": 0, "hash": 0}
    real_resolve, real_hash = refs.resolve, artifacts.sha256_file

    def counting_resolve(ref: str | Path) -> Resolved:
        calls["resolve"] += 1
        return real_resolve(ref)

    def counting_hash(path: Path) -> str:
        calls["hash"] += 1
        return real_hash(path)

    monkeypatch.setattr(refs, "resolve", counting_resolve)
    monkeypatch.setattr(artifacts, "sha256_file", counting_hash)
    app = load_app(ServeSettings(model=str(iris_model)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
    files = len(artifacts.read_manifest(iris_model)["files"])
    assert calls == {"resolve": 1, "hash": files}


def test_every_setting_is_a_serve_flag() -> None:
    """The serve command's options are generated from ServeSettings: one source of truth."""
    import inspect

    from zero2one.cli.serve import command
    from zero2one.serving import ServeSettings

    parameters = inspect.signature(command()).parameters
    assert set(parameters) == set(ServeSettings.model_fields)


def test_serve_flags_are_validated_by_the_settings(iris_model: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(iris_model), "--port", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: port: Input should be greater than or equal to 1 (got 0)")


def test_serve_on_a_busy_port_says_so_before_loading(iris_model: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from zero2one.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", str(iris_model), "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_model_predicts_from_the_cli(workspace: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """builtin: works with predict (it said "unknown built-in model" before), with the
    --max-new-tokens option."""
    import pandas as pd

    from zero2one.cli.main import main

    pd.DataFrame({"prompt": ["The capital of France is"]}).to_csv("prompts.csv", index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "builtin:smollm2-135m-instruct", "--input", "prompts.csv",
              "--max-new-tokens", "4", "--json", "--option", "chat=false"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    (row,) = __import__("json").loads(capsys.readouterr().out)
    assert row["prompt"] == "The capital of France is" and row["completion"]


def test_a_mistyped_path_is_not_a_hub_id(workspace: Path) -> None:
    """A relative path that does not exist fails at once, naming the forms; a Hugging Face id
    is explicit (hf:ORG/NAME) and goes to the task that loads it."""
    with pytest.raises(refs.ModelRefError, match="not found: .* hf:ORG/NAME"):
        resolve("mymodels/iris")
    hub = resolve("hf:HuggingFaceTB/SmolLM2-135M")
    assert (hub.task, hub.kind, hub.path) == ("text-generation", "pretrained", None)
    assert hub.display_name == "SmolLM2-135M"


def test_a_home_of_an_unknown_user_is_a_path_not_found(workspace: Path) -> None:
    """``~USER`` of a user this machine lacks is not a crash of pathlib's ("Could not
    determine home directory"): the reference is not found, in one line (found by the
    reference fuzzing in test_properties)."""
    with pytest.raises(refs.ModelRefError, match="not found"):
        resolve("~nosuchuser_z21/model")
    with pytest.raises(refs.ModelRefError, match="not found"):
        resolve("~0")


def test_the_conversion_cache_is_the_users_unless_set(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Conversions every workspace shares live in ``$ZERO2ONE_CACHE``, else the XDG cache,
    else ``~/.cache/zero2one`` — never in one workspace."""
    from zero2one.paths import cache_home

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("ZERO2ONE_CACHE", raising=False)
    assert cache_home() == tmp_path / "home" / ".cache" / "zero2one"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "zero2one"
    monkeypatch.setenv("ZERO2ONE_CACHE", "~/models-cache")
    assert cache_home() == tmp_path / "home" / "models-cache"
