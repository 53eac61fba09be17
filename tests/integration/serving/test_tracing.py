"""OpenTelemetry (the otel extra): a span per request, continuing the
caller's traceparent, with the scoring stages as its children."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from serving import examples
from serving.main import create_app
from tests.integration.conftest import RegisteredFixture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_span_per_request_with_the_scoring_stages(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    settings = registered_model.settings.model_copy(update={
        "home": tmp_path, "auth": "disabled", "api_key": None, "api_keys": {}})
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        _wait_ready(client)
        exporter.clear()  # the readiness polls are not traced anyway; start clean
        traced = client.post("/v1/score", json=examples.RECORD,
                             headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
        assert traced.status_code == 200
        assert client.get("/v1/model").status_code == 200
        assert client.get("/healthz").status_code == 200  # probes are not traced
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind.name == "SERVER"]
    assert len(servers) == 2, [s.name for s in spans]
    score = next(s for s in servers if "/v1/score" in s.name)
    # The caller's trace continues: same trace id, the caller's span as parent.
    assert format(score.context.trace_id, "032x") == TRACE_ID
    assert score.parent is not None and format(score.parent.span_id, "016x") == PARENT
    stages: dict[str, Any] = {s.name: s for s in spans
                              if s.name in ("features", "model", "audit")}
    assert set(stages) == {"features", "model", "audit"}
    for stage in stages.values():
        assert stage.context.trace_id == score.context.trace_id
        assert score.start_time <= stage.start_time <= stage.end_time <= score.end_time
