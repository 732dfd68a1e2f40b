"""examples/agent/: its two tools, and its loop against a served model through the official
openai client, plain and streamed (the guide's step runs it against a real `zero2one serve` of
the built-in model)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from ..conftest import REPO, free_port
from .conftest import client_of, served_lm


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_example",
                                                  REPO / "examples/agent/agent.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_calculator_parses_and_never_evaluates(agent: ModuleType) -> None:
    assert agent.calculate("12.5 * 4 + 3") == "53"
    assert agent.calculate("7 * (6 - 2)") == "28"
    assert agent.calculate("-7 // 2 + 2 ** 10 % 5") == "0"  # -4 + 4
    for bad, said in [("__import__('os').system('true')", "not arithmetic"),
                      ("1 / 0", "division by zero"), ("9 ** 9 ** 9", "exponent too large"),
                      ("x + 1", "not arithmetic"), ("1 +", "invalid syntax"),
                      ("'a' * 3", "not arithmetic")]:
        assert agent.calculate(bad).startswith(f"error: {said}"), bad


def test_the_docs_search_finds_the_passage_that_answers(agent: ModuleType) -> None:
    found = agent.search_docs("API key authentication")
    assert "--api-key" in found and found.startswith(("[README.md]", "[guide.md]"))
    assert found.count("\n\n") == 1  # the two best passages
    assert agent.search_docs("zzzz qqqq") == "no passage matches"


@pytest.fixture
def served(long_lm: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with served_lm(long_lm, "zero2one", monkeypatch) as http:
        yield client_of(http)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_loop_runs_each_call_and_ends_in_an_answer(agent: ModuleType, served: Any,
                                                       stream: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's weights are random: only the server's grammar makes its calls valid,
    and the loop's last turn (tool_choice none) makes it end in text."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in agent.TOOLS}
    made: list[tuple[str, dict[str, Any]]] = []
    for name in schemas:
        monkeypatch.setitem(agent.FUNCTIONS, name,
                            lambda _name=name, **arguments: made.append((_name, arguments))
                            or "5")
    said: list[str] = []
    written: list[str] = []
    answer = agent.run(served, "m", "What is 2 + 3?", steps=3, stream=stream, say=said.append,
                       write=written.append)
    assert made, "the first turn asks for a call"
    for name, arguments in made:
        jsonschema.validate(arguments, schemas[name])
    assert len(said) == len(made) and all(line.startswith("-> ") and line.endswith(": 5")
                                          for line in said)
    assert isinstance(answer, str) and "<tool_call>" not in answer
    if stream:
        assert "".join(written).rstrip("\n") == answer
    else:
        assert not written


def test_the_command_line_says_what_is_wrong_in_one_line(agent: ModuleType,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(SystemExit) as exc:
        agent.main(["What is 2 + 3?", "--steps", "1"])
    assert exc.value.code == 2 and "--steps: at least 2" in capsys.readouterr().err
    assert json.loads((REPO / "examples/agent/tools.json").read_text()) == agent.TOOLS
    # no server there: one line saying what to start, not a traceback
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert agent.main(["What is 2 + 3?", "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: nothing answers at {url}: start `zero2one serve MODEL` first "
                   "(or give --base-url)\n")
