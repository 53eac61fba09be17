"""The OpenAPI document a client clicks through: explicit operation ids, the
errors each route can answer, examples that are the README's requests and
that the server accepts, and pages that load nothing from elsewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from serving import examples
from tests.integration.conftest import API_KEY, ServerProcess

README = Path(__file__).resolve().parents[3] / "README.md"
OPERATION_IDS = {
    ("post", "/v1/score"): "score", ("post", "/v1/score/batch"): "score_batch",
    ("post", "/v1/feedback"): "post_verdicts", ("post", "/v1/labels"): "post_labels",
    ("get", "/v1/alerts"): "list_alerts", ("get", "/v1/decisions/{transaction_id}"): "get_decision",
    ("get", "/v1/alerts/stats"): "alert_stats",
    ("get", "/v1/decisions/{transaction_id}/origin"): "get_decision_origin",
    ("get", "/v1/model"): "get_model", ("post", "/v1/model/reload"): "reload_model",
    ("get", "/healthz"): "healthz", ("get", "/readyz"): "readyz", ("get", "/metrics"): "metrics",
}


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json", timeout=30).json()


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in doc["paths"].items() for m, op in ops.items()}


def test_operation_ids_are_explicit(document: dict[str, Any]) -> None:
    found = {key: op["operationId"] for key, op in _operations(document).items()}
    assert found == OPERATION_IDS


def test_each_route_lists_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    for (method, path), op in _operations(document).items():
        codes = set(op["responses"])
        if method == "get":
            assert not codes & {"409", "413", "415"}, (method, path, codes)
        if path.startswith("/v1"):
            # The server runs with a key: every /v1 route can say 401 and 403.
            assert {"401", "403", "422"} <= codes, (method, path, codes)
        if path in ("/v1/score", "/v1/score/batch"):
            assert "409" in codes
        elif method == "post":
            assert "409" not in codes and {"413", "415"} <= codes, (method, path, codes)
    risk = document["components"]["schemas"]["ScoreResponse"]["properties"]["risk"]
    assert "not a probability" in risk["description"]


def _body(doc: dict[str, Any], path: str) -> dict[str, Any]:
    return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]


def test_examples_validate_against_their_schemas(document: dict[str, Any]) -> None:
    for path in ("/v1/score", "/v1/score/batch", "/v1/feedback", "/v1/labels"):
        body = _body(document, path)
        assert body.get("examples"), path
        validator = jsonschema.Draft202012Validator(
            {**body["schema"], "components": document["components"]})
        for name, example in body["examples"].items():
            errors = [e.message for e in validator.iter_errors(example["value"])]
            assert not errors, (path, name, errors)
        # The check can fail: a record without its amount is not valid.
        if path == "/v1/score":
            broken = {k: v for k, v in examples.RECORD.items() if k != "amount"}
            assert list(validator.iter_errors(broken))


def test_the_examples_are_the_readmes_requests() -> None:
    bodies = {}
    for path, body in re.findall(r"curl [^\n]*?(/v1/[a-z/]+) [^\n]*\n\s*-d '(\{.*?\})'",
                                 README.read_text()):
        bodies[path] = json.loads(body)
    assert bodies["/v1/score"] == examples.RECORD
    assert bodies["/v1/feedback"] == examples.VERDICT


def test_the_server_takes_the_examples(server_factory: Any, document: dict[str, Any]) -> None:
    # A server of its own: transaction 1 is scored here with the example's content.
    proc: ServerProcess = server_factory(GENDETECT_API_KEY=API_KEY)
    proc.start()
    with httpx.Client(base_url=proc.url, headers={"X-API-Key": API_KEY}, timeout=30) as client:
        for path in ("/v1/score", "/v1/score/batch", "/v1/feedback", "/v1/labels"):
            for name, example in _body(document, path)["examples"].items():
                answer = client.post(path, json=example["value"])
                assert answer.status_code == 200, (path, name, answer.text)


def test_the_pages_load_nothing_from_elsewhere(server: ServerProcess) -> None:
    for page in ("/docs", "/redoc"):
        answer = httpx.get(f"{server.url}{page}", timeout=30)
        assert answer.status_code == 200
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        for url in re.findall(r'(?:src|href)="([^"]+)"', answer.text):
            assert url.startswith("/"), (page, url)
    bundle = httpx.get(f"{server.url}/redoc.standalone.js", timeout=30)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert b"cdn.redoc.ly" not in bundle.content
