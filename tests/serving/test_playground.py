"""The playground's server side: the page and its files, what each model's page shows, and the
API key in front of everything but the static page. The page itself runs in a browser in
test_playground_browser.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zero2one.serving import playground

from .conftest import NAMES, client_for

KEY = "playground-key"


def test_the_page_and_its_files_are_served_without_the_key(iris_model: Path) -> None:
    with client_for(iris_model, api_key=KEY) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'src="playground/app.js"' in page.text  # relative: works under a path prefix
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert KEY not in page.text
        script = client.get("/playground/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert client.get("/playground/app.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("name", ["playground.html", "..%2Fplayground.py", "app.py", "config.js"])
def test_only_the_listed_files_are_served(iris_model: Path, name: str) -> None:
    with client_for(iris_model) as client:
        response = client.get(f"/playground/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_the_config_needs_the_key(iris_model: Path) -> None:
    with client_for(iris_model, api_key=KEY) as client:
        assert client.get("/playground/config").status_code == 401
        wrong = client.get("/playground/config", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/playground/config", headers={"Authorization": f"Bearer {KEY}"})
        assert right.status_code == 200
        assert right.json()["model"]["name"] == "iris-test"


def test_a_tabular_form_has_a_field_per_column_with_typical_values(proba_model: Path) -> None:
    from sklearn.datasets import load_iris

    with client_for(proba_model) as client:
        config = client.get("/playground/config").json()
    widget = config["widget"]
    assert widget["kind"] == "form" and widget["route"] == "/predict"
    assert [f["name"] for f in widget["fields"]] == NAMES
    assert all(f["type"] == "number" for f in widget["fields"])
    assert widget["probabilities"] is True and widget["regression"] is False
    # the imputer's fill values: the training split's medians, near the data set's
    medians = np.median(load_iris().data, axis=0)
    for spec, median in zip(widget["fields"], medians, strict=True):
        assert spec["value"] == pytest.approx(median, abs=0.3)
    assert config["feedback"] is False and config["moderation"] is False
    assert config["metrics"]["accuracy"] > 0.8  # the manifest's held-out metrics


def test_a_categorical_column_offers_its_categories(workspace: Path) -> None:
    from zero2one.api import train

    csv = workspace / "pets.csv"
    rows = ["weight,colour,kind"] + [f"{3 + i % 5},{c},{'cat' if c != 'brown' else 'dog'}"
                                     for i, c in enumerate(["black", "white", "brown"] * 10)]
    csv.write_text("\n".join(rows) + "\n")
    recipe = {"task": "tabular-classification", "name": "pets",
              "data": {"source": str(csv), "target": "kind"},
              "model": {"estimator": "logistic_regression"}, "search": {"method": "none"},
              "track": {"enabled": False}}
    train(recipe, out=workspace / "pets")
    with client_for(workspace / "pets", feedback="default", moderation="default") as client:
        config = client.get("/playground/config").json()
    fields = {f["name"]: f for f in config["widget"]["fields"]}
    assert fields["colour"]["type"] == "text"
    assert sorted(fields["colour"]["options"]) == ["black", "brown", "white"]
    assert fields["weight"]["type"] == "number" and "options" not in fields["weight"]
    assert fields["weight"]["label"] == "Weight"
    assert config["feedback"] is True and config["moderation"] is True


@pytest.mark.parametrize(("column", "label"), [
    ("monthly_charges", "Monthly charges"), ("monthlyCharges", "Monthly charges"),
    ("sepal length (cm)", "Sepal length (cm)"), ("ID", "ID"), ("x", "X"), ("_", "_")])
def test_form_labels_are_readable(column: str, label: str) -> None:
    from zero2one.tasks.tabular.serving import readable

    assert readable(column) == label


def test_the_script_never_shows_null_for_a_missing_part() -> None:
    """replaceChildren(answer, null, null) draws "nullnull": every fill goes through fill(),
    which leaves out what is absent (no bars, feedback off)."""
    script = (playground.STATIC / "playground.js").read_text()
    assert script.count(".replaceChildren(") == 1  # inside fill() itself


def test_no_playground_when_turned_off(iris_model: Path) -> None:
    with client_for(iris_model, playground=False) as client:
        assert client.get("/").status_code == 404
        assert client.get("/playground/app.js").status_code == 404
        assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200


class _Plain:
    """An adapter that declares no widget."""

    def schema(self) -> dict[str, Any]:
        return {"rows": "numbers"}


class _App:
    def __init__(self, *paths: str) -> None:
        from starlette.routing import Route

        async def endpoint(request: Any) -> None:
            return None

        self.routes = [Route(p, endpoint, methods=["POST"]) for p in paths]


def test_an_adapter_without_a_widget_gets_the_json_editor_on_predict() -> None:
    widget = playground.widget(_Plain(), _App("/predict"))
    assert widget == {"kind": "json", "route": "/predict", "schema": {"rows": "numbers"},
                      "example": {}}
    assert playground.widget(_Plain(), _App("/v1/other")) == {"kind": "none"}


def test_an_unknown_widget_is_a_clear_server_error() -> None:
    from zero2one.serving.errors import APIError

    class Odd(_Plain):
        def playground(self) -> dict[str, Any]:
            return {"kind": "hologram"}

    with pytest.raises(APIError, match="'hologram' is not one of form, upload"):
        playground.widget(Odd(), _App("/predict"))


def test_the_script_never_parses_text_as_html() -> None:
    """Model output, labels and error messages reach the page as text nodes only."""
    script = (playground.STATIC / "playground.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in script, sink
    assert "localStorage" not in script  # the key lives in the tab's sessionStorage only
