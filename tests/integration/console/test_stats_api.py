"""The console's read-only routes over HTTP (no browser): /v1/alerts/stats
against the real server's database, and /v1/decisions/{id}/origin; both
need the review scope."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.integration.conftest import audit_db, table_rows

from .conftest import ANALYST, SCORER, alerts_api

if TYPE_CHECKING:
    from tests.integration.conftest import ServerProcess

pytestmark = pytest.mark.integration


def get(server: ServerProcess, path: str, key: str = ANALYST, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, headers={"X-API-Key": key}, timeout=30)


def expected_from_db(server: ServerProcess) -> dict[str, Any]:
    db = audit_db(server.home)
    flagged = {d["transaction_id"]: d for d in table_rows(db, "decisions") if d["is_fraud"]}
    latest: dict[int, str] = {}
    for v in sorted(table_rows(db, "verdicts"), key=lambda v: (v["labelled_at"], v["id"])):
        if v["transaction_id"] in flagged:
            latest[v["transaction_id"]] = v["label"]
    versions: dict[str, Counter[str]] = {}
    for tid, d in flagged.items():
        c = versions.setdefault(d["model_version"], Counter())
        c["alerts"] += 1
        if tid in latest:
            c["reviewed"] += 1
            c[latest[tid]] += 1
    return {"alerts": len(flagged), "reviewed": len(latest), "versions": versions}


def test_stats_count_what_the_database_holds_with_the_latest_verdict(
        console_server: ServerProcess) -> None:
    # A changed verdict: fraud, then genuine; the latest one counts.
    tid = alerts_api(console_server.url, limit=1)["alerts"][0]["transaction_id"]
    for label in ("fraud", "genuine"):
        r = httpx.post(f"{console_server.url}/v1/feedback", headers={"X-API-Key": ANALYST},
                       json={"transaction_id": tid, "label": label, "analyst": "ann"},
                       timeout=30)
        assert r.status_code == 200 and r.json()["stored"] == 1, r.text

    r = get(console_server, "/v1/alerts/stats")
    assert r.status_code == 200, r.text
    stats = r.json()
    want = expected_from_db(console_server)
    assert sum(d["alerts"] for d in stats["days"]) == want["alerts"]
    assert sum(d["reviewed"] for d in stats["days"]) == want["reviewed"]
    assert len(stats["days"]) in (7, 8)  # the default period: 7 days to now
    got = {v["model_version"]: v for v in stats["versions"]}
    assert set(got) == set(want["versions"])
    for version, c in want["versions"].items():
        v = got[version]
        assert (v["alerts"], v["reviewed"], v["fraud"], v["genuine"]) == (
            c["alerts"], c["reviewed"], c["fraud"], c["genuine"])
        assert v["precision"] == pytest.approx(c["fraud"] / c["reviewed"])
    waits = stats["time_to_verdict"]
    assert waits["reviewed"] == want["reviewed"] == sum(b["count"] for b in waits["buckets"])
    assert 0 <= waits["median_seconds"] <= waits["p90_seconds"] < 3600
    assert stats["backlog"]["open"] == want["alerts"] - want["reviewed"]
    assert stats["backlog"]["open"] == len(alerts_api(console_server.url, limit=500)["alerts"])


def test_stats_periods_and_filters(console_server: ServerProcess) -> None:
    now = datetime.now(UTC)
    later = get(console_server, "/v1/alerts/stats", since=(now + timedelta(days=1)).isoformat(),
                until=(now + timedelta(days=3)).isoformat()).json()
    assert sum(d["alerts"] for d in later["days"]) == 0 and len(later["days"]) >= 2
    assert later["versions"] == [] and later["backlog"] == {"open": 0, "oldest_decided_at": None}
    none = get(console_server, "/v1/alerts/stats", model_version="no-such-version").json()
    assert none["versions"] == [] and sum(d["alerts"] for d in none["days"]) == 0
    for params in ({"since": now.isoformat(), "until": now.isoformat()},
                   {"since": (now - timedelta(days=100)).isoformat()},
                   {"since": "yesterday"}):
        r = get(console_server, "/v1/alerts/stats", **params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["fields"][0]["field"] == "since"


def test_origin_names_the_key_and_keeps_entities_hashed(console_server: ServerProcess) -> None:
    alert = alerts_api(console_server.url, limit=1)["alerts"][0]
    tid = alert["transaction_id"]
    origin = get(console_server, f"/v1/decisions/{tid}/origin").json()
    assert origin["key_name"] == "checkout" and origin["transaction_id"] == tid
    row = next(d for d in table_rows(audit_db(console_server.home), "decisions")
               if d["transaction_id"] == tid)
    stored = row["entities"]
    assert origin["entities"] == (json.loads(stored) if isinstance(stored, str) else stored)
    assert set(origin["entities"]) == {"customer_id", "terminal_id"}
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in origin["entities"].values())
    assert get(console_server, "/v1/decisions/123/origin").status_code == 404


def test_the_console_routes_need_the_review_scope(console_server: ServerProcess) -> None:
    tid = alerts_api(console_server.url, limit=1)["alerts"][0]["transaction_id"]
    for path in ("/v1/alerts/stats", f"/v1/decisions/{tid}/origin"):
        assert get(console_server, path, SCORER).status_code == 403
        assert get(console_server, path, "").status_code == 401
    # The shell and its assets hold no data: no key needed, strict CSP.
    shell = httpx.get(f"{console_server.url}/console", timeout=30)
    assert shell.status_code == 200
    assert "script-src 'self'" in shell.headers["content-security-policy"]
    asset = httpx.get(f"{console_server.url}/console/assets/app.js", timeout=30)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
