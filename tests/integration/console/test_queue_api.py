"""/v1/alerts ordered and filtered by the server (order, reason, cursors of
one order) and the record's context in /v1/decisions/{id}, over HTTP
against the console's real server and its SQLite audit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.integration.api_helpers import fresh
from tests.integration.conftest import audit_db, table_rows

from .conftest import ANALYST, SCORER, alerts_api

if TYPE_CHECKING:
    from tests.integration.conftest import ServerProcess

pytestmark = pytest.mark.integration


def get(server: ServerProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, headers={"X-API-Key": ANALYST},
                     timeout=30)


def test_a_cursor_pages_only_the_order_it_came_from(console_server: ServerProcess) -> None:
    newest = alerts_api(console_server.url, limit=2)["next_cursor"]
    riskiest = alerts_api(console_server.url, limit=2, order="riskiest")["next_cursor"]
    assert newest and riskiest and newest != riskiest
    for cursor, order in ((newest, "riskiest"), (riskiest, "newest")):
        r = get(console_server, "/v1/alerts", cursor=cursor, order=order)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["error"]["fields"]] == ["cursor"]
    # Each with its own order: the page after the first two.
    page = alerts_api(console_server.url, limit=3, order="riskiest", cursor=riskiest)["alerts"]
    head = alerts_api(console_server.url, limit=5, order="riskiest")["alerts"]
    assert [a["transaction_id"] for a in page] == [a["transaction_id"] for a in head[2:5]]
    for bad in ({"order": "oldest"}, {"reason": "a|b"}, {"reason": ""}):
        r = get(console_server, "/v1/alerts", **bad)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["error"]["fields"]] == list(bad)


def test_a_decision_keeps_its_record_context_and_nothing_personal(
        console_server: ServerProcess) -> None:
    body = fresh(amount=31.25, customer=7_770_001_234_567, terminal=8_880_009_876)
    r = httpx.post(f"{console_server.url}/v1/score", json=body,
                   headers={"X-API-Key": SCORER}, timeout=30)
    assert r.status_code == 200, r.text
    tid = body["transaction_id"]
    got = get(console_server, f"/v1/decisions/{tid}")
    assert got.status_code == 200, got.text
    context = got.json()["decision"]["context"]
    assert context["record"] == {"amount": 31.25}
    # The behaviour features the served model reads, by name, as floats.
    assert context["behaviour"] and all(isinstance(v, float) or v is None
                                        for v in context["behaviour"].values())
    assert any(name.startswith("customer_") for name in context["behaviour"])
    (row,) = [d for d in table_rows(audit_db(console_server.home), "decisions")
              if d["transaction_id"] == tid]
    assert json.loads(row["context"]) == context
    stored = repr(row) + got.text
    for secret in (str(body["customer_id"]), str(body["terminal_id"])):
        assert secret not in stored
