"""Production logs: GENDETECT_LOG_FORMAT=json gives one JSON object per line,
and every request's lines carry its X-Request-ID (the client's, or one made
up and echoed), which the decision's audit row keeps too."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from serving import examples
from tests.integration.conftest import API_KEY, ServerProcess, audit_db, table_rows


def _json_lines(proc: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every JSON-looking line parses
    return lines


def test_json_log_lines_carry_the_request_id(server_factory: Any) -> None:
    proc: ServerProcess = server_factory(GENDETECT_API_KEY=API_KEY, GENDETECT_LOG_FORMAT="json")
    proc.start()
    with httpx.Client(base_url=proc.url, headers={"X-API-Key": API_KEY}, timeout=30) as client:
        given = client.post("/v1/score", json=examples.RECORD,
                            headers={"X-Request-ID": "checkout-7f3a.1"})
        made_up = client.get("/v1/model")
        refused = client.get("/v1/model", headers={"X-Request-ID": "x" * 200})
    assert given.status_code == 200
    assert given.headers["x-request-id"] == "checkout-7f3a.1"
    for answer in (made_up, refused):
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
    assert made_up.headers["x-request-id"] != refused.headers["x-request-id"]

    lines = _json_lines(proc)
    assert lines, proc.log()[-2000:]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = {line["request_id"]: line for line in lines
              if line["logger"] == "gendetect.serving.access" and "request_id" in line}
    score = access["checkout-7f3a.1"]
    assert (score["route"], score["status"], score["method"]) == ("/v1/score", 200, "POST")
    assert isinstance(score["latency_ms"], float)
    assert made_up.headers["x-request-id"] in access
    # The decision's audit row names the request, so the two lead to each other.
    (row,) = [r for r in table_rows(audit_db(proc.home), "decisions")
              if r["transaction_id"] == examples.RECORD["transaction_id"]]
    assert row["request_id"] == "checkout-7f3a.1"
    # A log line never quotes a record's fields.
    for line in lines:
        assert "customer_id" not in line and "amount" not in line
        assert "1250.0" not in json.dumps(line)
