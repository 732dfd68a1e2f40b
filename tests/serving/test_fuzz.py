"""Schemathesis over the whole OpenAPI schema of every task's server (tabular, image, language
model, image generator, a plug-in task): generated requests, valid and not, never get a 5xx, and
every answer matches the schema (status codes, content types, bodies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..cases import CASES
from .test_process import Server

pytestmark = pytest.mark.slow


def _checks() -> list[Any]:
    from schemathesis import checks

    # what answers must be: never a 5xx, a documented status with its documented content type
    # and body, and invalid input refused (positive_data_acceptance is left out: a request can
    # fit the schema and still not fit the model, a row of the wrong length, a flagged prompt)
    return [checks.not_a_server_error, checks.status_code_conformance,
            checks.content_type_conformance, checks.response_schema_conformance,
            checks.negative_data_rejection]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_schema_holds_under_fuzzing(name: str, trained: Any, tmp_path: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    checks = _checks()
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    server = Server(str(trained(name).directory), "--feedback", str(tmp_path / "feedback.db"),
                    "--moderation", "default", "--max-steps", "4", "--max-images", "2",
                    "--max-generated-pixels", "1024")
    try:
        server.wait_ready(timeout=120)
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for operation in schema.get_all_operations():
            op = operation.ok()

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, timeout=30)
                statuses.setdefault(f"{case.method} {case.path}", set()).add(
                    response.status_code)
                try:
                    case.validate_response(response, checks=checks)
                except AssertionError as exc:  # schemathesis' failure groups
                    failures.append(f"{case.method} {case.path} {case.body!r:.200} -> "
                                    f"{response.status_code}: {str(exc)[:600]}")

            check()
        # the task's own good request: answered, and the answer fits the schema too
        method, route, body = CASES[name].good
        good = schema[route][method].Case(body=body, media_type="application/json")
        response = good.call(base_url=server.url, timeout=60)
        assert response.status_code == 200, response.text
        good.validate_response(response, checks=checks)
    finally:
        server.stop()
    assert failures == [], "\n".join(failures[:5])
    assert len(statuses) >= 4  # the task's routes and the server's own
    assert any(code < 300 for codes in statuses.values() for code in codes)
    assert any(400 <= code < 500 for codes in statuses.values() for code in codes)
