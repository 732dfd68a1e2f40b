"""Security properties of every task's server and loader, checked against the code as it is (so
that a new route, task or load path cannot quietly break them):

- with an API key, every route but the listed open ones answers 401 without it (the route table
  is walked, not a hand-kept list of routes);
- nothing is unpickled on any load path: a static scan of the package, and every task's model
  loaded and used with pickle disabled and ``torch.load`` held to ``weights_only=True``;
- no request value reaches the file system or an import: path traversal and ``module.Class``
  strings in every field of every task's request are answered 2xx/4xx while every ``open`` and
  import is recorded.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zero2one.serving import ServeSettings, create_app
from zero2one.serving.routing import route_table

from .cases import CASES
from .conftest import REPO

KEY = "security-test-key"
# what answers without the key: probes, metrics, the API's description and the playground's
# static page (which holds nothing about the model; its config is behind the key)
OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
        "/redoc", "/", "/playground/{name}"}


def server(directory: Path, tmp_path: Path, **settings: Any) -> TestClient:
    """Every optional part on: moderation, feedback, the playground."""
    return TestClient(create_app(ServeSettings(  # type: ignore[call-arg]
        model=str(directory), feedback=str(tmp_path / "feedback.sqlite"),
        moderation="default", **settings)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_route_but_the_open_ones_needs_the_key(name: str, trained: Any,
                                                     tmp_path: Path) -> None:
    with server(trained(name).directory, tmp_path, api_key=KEY) as client:
        routes = [(path, method) for path, methods in route_table(client.app)  # type: ignore[arg-type]
                  for method in sorted(methods) if method != "HEAD"]
        assert len(routes) > 8
        guarded = 0
        for path, method in routes:
            url = path.replace("{name}", "app.js").replace("{", "").replace("}", "")
            answer = client.request(method, url, content=b"{}",
                                    headers={"content-type": "application/json"})
            if path in OPEN:
                assert answer.status_code != 401, (method, path)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
                guarded += 1
                keyed = client.request(method, url, content=b"{}", headers={
                    "content-type": "application/json", "authorization": f"Bearer {KEY}"})
                assert keyed.status_code != 401, (method, path)
        assert guarded >= 3  # the task's routes, /v1/feedback, /v1/moderations, /admin/reload


# ---- no pickle ---------------------------------------------------------------------------------

UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
              ("joblib", "load"), ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"),
              ("cloudpickle", "loads"), ("marshal", "loads"), ("shelve", "open")}


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(call: ast.Call) -> tuple[str, str] | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id, func.attr
    return None


def _keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_the_package_never_unpickles() -> None:
    found = []
    for path in sorted((REPO / "src/zero2one").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # `from pickle import loads` and the like
            if isinstance(node, ast.ImportFrom) and node.module in {"pickle", "dill",
                                                                    "cloudpickle", "joblib"}:
                found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
        for call in _calls(tree):
            name = _name(call)
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name in UNPICKLERS:
                found.append(f"{where} {'.'.join(name)}")
            elif name == ("torch", "load") and _keyword(call, "weights_only") is not True:
                found.append(f"{where} torch.load without weights_only=True")
            elif name == ("np", "load") and _keyword(call, "allow_pickle") is not False:
                found.append(f"{where} np.load without allow_pickle=False")
    assert found == []


class Unpickled(AssertionError):
    pass


@contextlib.contextmanager
def no_pickle() -> Iterator[list[str]]:
    """pickle's loaders raise; torch.load is let through only with weights_only=True (recorded)."""
    import _pickle

    import torch

    seen: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unpickled("something was unpickled")

    real_torch_load = torch.load

    def torch_load(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("weights_only") is not True:
            raise Unpickled(f"torch.load without weights_only=True: {args[:1]}")
        seen.append(str(args[:1]))
        return real_torch_load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for module in (pickle, _pickle):
            patch.setattr(module, "load", refuse)
            patch.setattr(module, "loads", refuse)
        patch.setattr(pickle, "Unpickler", refuse)
        patch.setattr(torch, "load", torch_load)
        yield seen


@pytest.mark.parametrize("name", sorted(CASES))
def test_loading_and_using_a_model_unpickles_nothing(name: str, trained: Any) -> None:
    from zero2one.api import load

    with no_pickle():
        model = load(trained(name).directory)
        assert model.predict(CASES[name].inputs()) is not None


# ---- request values stay data ------------------------------------------------------------------

HOSTILE = ["../../../../../../etc/passwd", "/etc/shadow", "sklearn.svm.SVC", "os.system",
           "zero2one.cli.main:main", "models:/other/1", "file:///etc/hosts", "..\\..\\boot.ini"]


def _with_hostile(body: Any, value: str) -> Iterator[Any]:
    """The body with each string in it (and each key's value) replaced by ``value``, and with
    extra fields naming it."""
    if isinstance(body, dict):
        yield {**body, "model": value, "path": value, "ref": value}
        for key, item in body.items():
            for changed in _with_hostile(item, value):
                yield {**body, key: changed}
    elif isinstance(body, list):
        for i, item in enumerate(body):
            for changed in _with_hostile(item, value):
                yield [*body[:i], changed, *body[i + 1:]]
    elif isinstance(body, str):
        yield value
    else:  # a number: a string where a number goes
        yield value


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Every file opened and every module imported, by name."""
    opened: list[str] = []
    real_open, real_import = builtins.open, importlib.import_module

    def record_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def record_import(name: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(name)
        return real_import(name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", record_open)
        patch.setattr(io, "open", record_open)
        patch.setattr(importlib, "import_module", record_import)
        yield opened


@pytest.mark.parametrize("name", sorted(CASES))
def test_request_values_never_reach_the_file_system_or_an_import(name: str, trained: Any,
                                                                 tmp_path: Path) -> None:
    method, route, good = CASES[name].good
    tried = 0
    with server(trained(name).directory, tmp_path) as client, recording() as touched:
        for value in HOSTILE:
            for body in _with_hostile(good, value):
                answer = client.request(method, route, content=json.dumps(body),
                                        headers={"content-type": "application/json"})
                assert answer.status_code < 500, (body, answer.text)
                tried += 1
    assert tried >= 2 * len(HOSTILE)
    hits = [t for t in touched for value in HOSTILE if value in t or t.endswith(("passwd",
                                                                                 "shadow"))]
    assert hits == []
