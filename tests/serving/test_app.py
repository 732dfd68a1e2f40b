"""Health, models, metrics, docs, auth, rate limits, CORS and batching through the app."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from zero2one.api import load

from .conftest import NAMES, ROW, client_for


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"]["name"] == "iris-test"


def test_models_lists_the_input_schema(client: TestClient) -> None:
    (model,) = client.get("/v1/models").json()["data"]
    assert [c["name"] for c in model["input_schema"]] == NAMES
    assert model["class_names"] == ["setosa", "versicolor", "virginica"]
    assert model["metrics"]["accuracy"] > 0.9


def test_metrics_in_prometheus_format(client: TestClient) -> None:
    client.post("/predict", json={"features": ROW})
    client.post("/predict", json={"features": ROW[:2]})
    client.get("/nope/123")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'zero2one_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'zero2one_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'route="unmatched"' in text and "/nope/123" not in text
    assert 'zero2one_request_duration_seconds_bucket{le="0.005",method="POST",route="/predict"}' \
        in text
    assert "zero2one_batch_size_count 1.0" in text
    assert "zero2one_model_load_seconds " in text
    assert 'zero2one_model_info{name="iris-test"' in text


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "/v1/models" in spec["paths"]
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "features" in body["schema"]["properties"]
    assert client.get("/docs").status_code == 200


def test_api_key(iris_model: Path) -> None:
    with client_for(iris_model, api_key="s3cret") as client:
        assert client.post("/predict", json={"features": ROW}).status_code == 401
        wrong = client.post("/predict", json={"features": ROW},
                            headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert client.post("/predict", json={"features": ROW},
                           headers={"authorization": "Basic s3cret"}).status_code == 401
        ok = client.post("/predict", json={"features": ROW},
                         headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/v1/models").status_code == 401
        for open_route in ("/healthz", "/readyz", "/metrics", "/docs"):
            assert client.get(open_route).status_code == 200


def test_api_key_from_environment(iris_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERO2ONE_API_KEY", "from-env")
    with client_for(iris_model) as client:
        assert client.post("/predict", json={"features": ROW}).status_code == 401
        assert client.post("/predict", json={"features": ROW},
                           headers={"authorization": "Bearer from-env"}).status_code == 200


def test_auth_off_by_default(client: TestClient) -> None:
    assert client.post("/predict", json={"features": ROW}).status_code == 200
    assert client.post("/admin/reload").status_code == 404  # no admin routes without a key


def test_rate_limit(iris_model: Path) -> None:
    with client_for(iris_model, rate_limit=0.01, rate_burst=2) as client:
        codes = [client.post("/predict", json={"features": ROW}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.post("/predict", json={"features": ROW})
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limited"
        assert client.get("/healthz").status_code == 200  # probes are never limited


def test_cors_off_by_default_and_on_when_asked(client: TestClient, iris_model: Path) -> None:
    headers = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=headers).headers
    with client_for(iris_model, cors_origins=["https://app.example"]) as cors:
        response = cors.options("/predict", headers=headers)
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_concurrent_requests_each_get_their_own_answer(iris_model: Path) -> None:
    """Many threads at once: batched together, yet every caller gets exactly its rows."""
    frame = pd.read_csv(Path(__file__).resolve().parents[2] / "examples/flowers.csv")
    rows = frame.values.tolist() * 8
    expected = load(iris_model).predict(pd.DataFrame(rows, columns=NAMES))["prediction"].tolist()
    answers: dict[int, list[int]] = {}
    with client_for(iris_model, batch_max_wait_ms=20) as client:
        def call(i: int) -> None:
            body = {"instances": [rows[i], rows[(i + 1) % len(rows)]]}
            answers[i] = client.post("/predict", json=body).json()["result"]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rows))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = client.get("/metrics").text
    for i in range(len(rows)):
        assert answers[i] == [expected[i], expected[(i + 1) % len(rows)]]
    count = float(metrics.split("zero2one_batch_size_count ")[1].split()[0])
    assert count < len(rows)  # fewer predict calls than requests: they were batched


def test_image_bytes_cannot_exceed_the_body_limit() -> None:
    from pydantic import ValidationError

    from zero2one.serving import ServeSettings

    with pytest.raises(ValidationError, match="raise --max-body-bytes too"):
        ServeSettings(model="m", max_body_bytes=4096, max_image_bytes=8192)  # type: ignore[call-arg]
    assert ServeSettings(model="m", max_body_bytes=4096).image_bytes == 4096  # type: ignore[call-arg]
