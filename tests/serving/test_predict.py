"""POST /predict: the three input forms, and every bad input answered with a 4xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import NAMES, ROW, client_for

VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def test_classic_contract(client: TestClient) -> None:
    response = client.post("/predict", json={"features": ROW})
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == [0]
    assert body["labels"] == ["setosa"]
    assert body["model"]["task"] == "tabular-classification"
    assert body["request_id"] == response.headers["x-request-id"]


def test_batch_and_records(client: TestClient) -> None:
    body = client.post("/predict", json={"instances": [ROW, VIRGINICA]}).json()
    assert body["result"] == [0, 2] and body["labels"] == ["setosa", "virginica"]
    records = [dict(zip(NAMES, ROW, strict=True)), dict(zip(NAMES, VIRGINICA, strict=True))]
    assert client.post("/predict", json={"records": records}).json()["result"] == [0, 2]


def test_null_is_a_missing_value_the_imputer_fills(client: TestClient) -> None:
    response = client.post("/predict", json={"features": [5.1, None, 1.4, 0.2]})
    assert response.status_code == 200 and response.json()["result"] == [0]


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.post("/predict", json={"features": ROW}, headers={"x-request-id": "abc-1"})
    assert response.headers["x-request-id"] == "abc-1"
    assert response.json()["request_id"] == "abc-1"
    bad = client.post("/predict", json={"features": ROW}, headers={"x-request-id": "a b\tc"})
    assert bad.headers["x-request-id"] != "a b\tc"


def test_probabilities(proba_model: Path) -> None:
    with client_for(proba_model) as client:
        body = client.post("/predict", json={"features": ROW, "probabilities": True}).json()
    assert body["result"] == [0]
    (probabilities,) = body["probabilities"]
    assert set(probabilities) == {"setosa", "versicolor", "virginica"}
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert max(probabilities, key=probabilities.get) == "setosa"


def test_probabilities_refused_without_predict_proba(client: TestClient) -> None:
    response = client.post("/predict", json={"features": ROW, "probabilities": True})
    assert response.status_code == 422
    assert "gives no probabilities" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"features": ROW[:3]}, 422, "expected 4 features (sepal_length, sepal_width, "
                                     "petal_length, petal_width), got 3"),
        ({"instances": [ROW, ROW[:2]]}, 422, "row 1: expected 4 features"),
        ({"features": [5.1, "wide", 1.4, 0.2]}, 422, "'sepal_width' must be a number, got 'wide'"),
        ({"features": [5.1, True, 1.4, 0.2]}, 422, "'sepal_width' must be a number, got True"),
        ({"instances": []}, 422, "empty batch"),
        ({"records": []}, 422, "empty batch"),
        ({"features": []}, 422, "expected 4 features"),
        ({}, 422, "send exactly one of features, instances or records"),
        ({"features": ROW, "instances": [ROW]}, 422, "(got features, instances)"),
        ({"features": ROW, "extra": 1}, 422, "extra: Extra inputs are not permitted"),
        ({"features": {"a": 1}}, 422, "features"),
        ({"records": [{"sepal_length": 1}]}, 422, "row 0: missing column(s) sepal_width"),
        ({"records": [{**dict(zip(NAMES, ROW, strict=True)), "colour": "red"}]}, 422,
         "row 0: unexpected column(s) colour"),
        ([1, 2, 3], 422, "Input should be a valid dictionary"),
    ],
)
def test_bad_input_is_4xx_naming_the_problem(client: TestClient, body: object, status: int,
                                              message: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"], error
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("raw", [b'{"features": [5.1, 3.5, 1.4, NaN]}',
                                 b'{"features": [5.1, 3.5, 1.4, Infinity]}',
                                 b'{"features": [5.1, 3.5, 1.4, 1e999]}',
                                 b'{"features": [5.1, ', b"", b"\xff\xfe"])
def test_malformed_or_non_finite_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/predict", content=raw,
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"


def test_batch_over_the_maximum(iris_model: Path) -> None:
    with client_for(iris_model, max_batch=3) as client:
        response = client.post("/predict", json={"instances": [ROW] * 4})
        assert response.status_code == 422
        assert "batch of 4 rows is over the maximum of 3" in response.json()["error"]["message"]
        assert client.post("/predict", json={"instances": [ROW] * 3}).status_code == 200


def test_body_over_the_byte_limit(iris_model: Path) -> None:
    with client_for(iris_model, max_body_bytes=2048) as client:
        big = {"instances": [ROW] * 200}
        response = client.post("/predict", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "body_too_large"

        def chunks():  # no Content-Length: the limit counts the bytes as they arrive
            yield b'{"instances": ['
            for _ in range(300):
                yield b"[5.1, 3.5, 1.4, 0.2],"
            yield b"[5.1, 3.5, 1.4, 0.2]]}"

        response = client.post("/predict", content=chunks(),
                               headers={"content-type": "application/json"})
        assert response.status_code == 413


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").json()["error"]["type"] == "not_found"
    assert client.get("/predict").status_code == 405


def test_model_is_never_loaded_from_a_request(client: TestClient) -> None:
    response = client.post("/predict", json={"features": ROW, "model": "/etc/passwd"})
    assert response.status_code == 422
    assert client.post("/admin/reload", json={"model": "/tmp/x"}).status_code == 404
