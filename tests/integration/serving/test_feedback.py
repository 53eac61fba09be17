"""Analyst feedback, the review queue and scoped keys over HTTP, against
the real server (its SQLite database is read directly to check what was
written)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.integration.api_helpers import (
    T0,
    _entity_ids,
    _tx_ids,
    assert_same_decision,
    concurrent_posts,
    expected,
    fresh,
    offline_windows,
    post_raw,
)
from tests.integration.conftest import audit_db, table_rows

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration

HUGE = 999_999.0  # an amount the model flags


def scored(client: httpx.Client, **kw: Any) -> dict[str, Any]:
    rec = fresh(**kw)
    r = client.post("/v1/score", json=rec)
    assert r.status_code == 200, r.text
    return {**r.json(), "record": rec}


def verdict(tid: int, label: str = "fraud", **kw: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "label": label, "analyst": "ann", **kw}


# ------------------------------------------------------------ bad input
BAD_VERDICTS: list[tuple[str, Any, str]] = [
    ("unknown label", {"label": "maybe"}, "label"),
    ("missing transaction id", {"transaction_id": None}, "transaction_id"),
    ("oversize note", {"note": "x" * 1001}, "note"),
    ("transaction id as text", {"transaction_id": "12"}, "transaction_id"),
    ("analyst not a string", {"analyst": 5}, "analyst"),
    ("blank analyst", {"analyst": "   "}, "analyst"),
    ("epoch time", {"labelled_at": 1700000000}, "labelled_at"),
    ("epoch time as text", {"labelled_at": "0"}, "labelled_at"),
    ("future time", {"labelled_at": "2999-01-01T00:00:00"}, "labelled_at"),
    ("unknown field", {"customer_id": 5}, "customer_id"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_VERDICTS,
                         ids=[c[0] for c in BAD_VERDICTS])
def test_bad_verdicts_are_422_naming_the_field_and_write_nothing(
    server: ServerProcess, client: httpx.Client, case: str, change: dict[str, Any], field: str
) -> None:
    tid = scored(client)["transaction_id"]
    db = audit_db(server.home)
    before = len(table_rows(db, "verdicts"))
    body = verdict(tid)
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    good = verdict(tid, "genuine")
    for payload, name in ((body, field), ([good, body], f"[1].{field}")):
        r = post_raw(client, "/v1/feedback", json.dumps(payload))
        assert r.status_code == 422, r.text
        assert name in [f["field"] for f in r.json()["error"]["fields"]], r.text
    assert len(table_rows(db, "verdicts")) == before  # not even the good one of the list
    # The transaction is still in the queue's state: no verdict.
    assert client.get(f"/v1/decisions/{tid}").json()["verdicts"] == []


def test_unknown_transactions_are_refused(server: ServerProcess, client: httpx.Client) -> None:
    db = audit_db(server.home)
    before = len(table_rows(db, "verdicts"))
    # Ids from the session's counter that no request used (the fuzz test
    # scores small ids too).
    never, also_never = next(_tx_ids), next(_tx_ids)
    r = client.post("/v1/feedback", json=verdict(never))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_transaction"
    tid = scored(client)["transaction_id"]
    r = client.post("/v1/feedback", json=[verdict(also_never), verdict(tid)])
    assert r.json() == {"accepted": 1, "stored": 1, "duplicates": 0, "unknown": [also_never]}
    assert len(table_rows(db, "verdicts")) == before + 1


def test_verdicts_are_idempotent_and_keep_their_history(client: httpx.Client) -> None:
    first = scored(client)
    tid = first["transaction_id"]
    at = (T0 + timedelta(days=1)).isoformat()
    body = verdict(tid, note="chargeback", labelled_at=at)
    assert client.post("/v1/feedback", json=body).json()["stored"] == 1
    again = client.post("/v1/feedback", json=body).json()
    assert (again["stored"], again["duplicates"]) == (0, 1)
    changed = verdict(tid, "genuine", analyst="bob", labelled_at=(T0 + timedelta(days=2))
                      .isoformat())
    assert client.post("/v1/feedback", json=changed).json()["stored"] == 1
    got = client.get(f"/v1/decisions/{tid}").json()
    assert got["label"] == "genuine"
    assert [(v["label"], v["analyst"], v["note"]) for v in got["verdicts"]] == [
        ("fraud", "ann", "chargeback"), ("genuine", "bob", None)]
    assert got["verdicts"][0]["labelled_at"] == at + "Z"
    decision = got["decision"]
    for key in ("score", "risk", "is_fraud", "threshold", "top_features", "top_reasons",
                "model", "transaction_id"):
        assert decision[key] == first[key], key
    assert decision["event_time"] == first["record"]["timestamp"] + "Z"


def test_the_review_queue(client: httpx.Client) -> None:
    since = datetime.now(UTC).isoformat()
    flagged = [scored(client, amount=HUGE) for _ in range(5)]
    assert all(d["is_fraud"] for d in flagged)
    # Each top feature says what the record had and what the model expected
    # instead (original units): for the amount's features (the amount, its
    # ratios, the card's averages: a fresh card's first), far less.
    for decision in flagged:
        top = decision["top_features"]
        assert all(set(f) == {"feature", "contribution", "value", "expected"} for f in top)
        shown = [f for f in top if "amount" in f["feature"]]
        assert shown, top
        for f in shown:
            if f["feature"] in ("amount", "log_amount"):
                assert f["value"] == pytest.approx(HUGE)
            assert 0.0 <= f["expected"] < f["value"] / 10, f
    scored(client, amount=10.0)
    version = flagged[0]["model"]["version"]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"since": since, "limit": 2, "model_version": version}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/alerts", params=params)
        assert page.status_code == 200, page.text
        seen += [a["transaction_id"] for a in page.json()["alerts"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ids = [d["transaction_id"] for d in flagged]
    assert seen == ids[::-1]  # newest first, each once
    alert = client.get("/v1/alerts", params={"since": since, "limit": 1}).json()["alerts"][0]
    assert alert["top_reasons"] and alert["model"]["version"] == version
    # The queue shows the explanation as scored, values and expectations included.
    assert alert["top_features"] == flagged[-1]["top_features"]
    # A verdict takes the alert off the queue.
    assert client.post("/v1/feedback", json=verdict(ids[-1])).json()["stored"] == 1
    page = client.get("/v1/alerts", params={"since": since}).json()
    assert [a["transaction_id"] for a in page["alerts"]] == ids[-2::-1]
    assert client.get("/v1/alerts", params={"model_version": "nope"}).json()["alerts"] == []
    r = client.get("/v1/alerts", params={"limit": 0, "since": "yesterday"})
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["error"]["fields"]} == {"limit", "since"}
    assert client.get(f"/v1/decisions/{next(_tx_ids)}").status_code == 404


def test_a_verdict_feeds_terminal_risk_like_the_offline_engine(
    client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    """The parity test of /v1/labels, through /v1/feedback: a fraud verdict
    known from day 1 counts in the terminal's delayed window 7 days later,
    a second analyst's later confirmation does not move it, and a genuine
    verdict on another transaction counts as no fraud."""
    terminal = next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), terminal=terminal) for h in (0, 1, 2)]
    for rec in history:
        assert client.post("/v1/score", json=rec).status_code == 200
    day1 = (T0 + timedelta(days=1)).isoformat()
    r = client.post("/v1/feedback", json=[
        verdict(history[1]["transaction_id"], labelled_at=day1),
        verdict(history[0]["transaction_id"], "genuine", labelled_at=day1),
        verdict(history[1]["transaction_id"], analyst="bob",
                labelled_at=(T0 + timedelta(days=6)).isoformat()),
    ])
    assert r.json() == {"accepted": 3, "stored": 3, "duplicates": 0, "unknown": []}
    later = fresh(T0 + timedelta(days=7, hours=3), terminal=terminal)
    got = client.post("/v1/score", json=later).json()
    windows = offline_windows([*history, later], labels=[0, 1, 0, 0],
                              registered=registered_model)
    assert windows[-1]["terminal_risk_1d"] == pytest.approx(1 / 3)
    assert_same_decision(got, expected(registered_model, [later], windows[-1:])[0])
    # Changed to genuine (after bob's confirmation: the latest wins), the
    # terminal's risk goes back to what no fraud gives.
    r = client.post("/v1/feedback", json=verdict(history[1]["transaction_id"], "genuine",
                                                 labelled_at=(T0 + timedelta(days=6, hours=1))
                                                 .isoformat()))
    assert r.json()["stored"] == 1
    next_one = fresh(T0 + timedelta(days=7, hours=4), terminal=terminal)
    got = client.post("/v1/score", json=next_one).json()
    windows = offline_windows([*history, later, next_one], registered=registered_model)
    assert windows[-1]["terminal_risk_1d"] == 0
    assert_same_decision(got, expected(registered_model, [next_one], windows[-1:])[0])


def test_labels_is_an_alias_of_feedback(client: httpx.Client) -> None:
    tid = scored(client)["transaction_id"]
    r = client.post("/v1/labels", json={"transaction_id": tid, "is_fraud": True,
                                        "labelled_at": T0.isoformat()})
    assert r.json() == {"accepted": 1, "unknown": []}
    got = client.get(f"/v1/decisions/{tid}").json()
    assert [(v["label"], v["source"], v["analyst"]) for v in got["verdicts"]] == [
        ("fraud", "labels", "default")]
    # The same label again is the same verdict: no second row.
    r = client.post("/v1/labels", json={"transaction_id": tid, "is_fraud": True,
                                        "labelled_at": T0.isoformat()})
    assert r.json() == {"accepted": 1, "unknown": []}
    assert len(client.get(f"/v1/decisions/{tid}").json()["verdicts"]) == 1


@pytest.mark.parametrize("value", [1, 0, "true", 1.0, None])
def test_labels_are_strict_booleans(client: httpx.Client, value: Any) -> None:
    """Like every record field: `1` is not guessed to mean true."""
    tid = scored(client)["transaction_id"]
    body = {"transaction_id": tid, "is_fraud": value}
    for payload, name in ((body, "is_fraud"), ([body], "[0].is_fraud")):
        r = client.post("/v1/labels", json=payload)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_input"
        assert [f["field"] for f in r.json()["error"]["fields"]] == [name]
    assert client.get(f"/v1/decisions/{tid}").json()["verdicts"] == []


def test_a_verdict_dated_before_its_transaction_is_422(client: httpx.Client) -> None:
    tid = scored(client)["transaction_id"]  # timestamp T0
    early = (T0 - timedelta(minutes=1)).isoformat() + "Z"
    cases: list[tuple[str, Any, str]] = [
        ("/v1/feedback", verdict(tid, labelled_at=early), "labelled_at"),
        ("/v1/feedback", [verdict(tid, labelled_at=T0.isoformat()),
                          verdict(tid, "genuine", analyst="bob", labelled_at=early)],
         "[1].labelled_at"),
        ("/v1/labels", {"transaction_id": tid, "is_fraud": True, "labelled_at": early},
         "labelled_at"),
    ]
    for path, body, field in cases:
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_input"
        assert [f["field"] for f in r.json()["error"]["fields"]] == [field], r.text
    # Nothing of those requests, not even the list's good verdict.
    assert client.get(f"/v1/decisions/{tid}").json()["verdicts"] == []
    # At the transaction's own time: taken.
    r = client.post("/v1/feedback", json=verdict(tid, labelled_at=T0.isoformat()))
    assert r.status_code == 200 and r.json()["stored"] == 1


def test_a_locked_database_is_a_bounded_503_and_nothing_is_stored_later(
    server_factory: Any,
) -> None:
    """GENDETECT_DATABASE_TIMEOUT_SECONDS bounds a verdict's whole wait, also
    behind a write lock held elsewhere (another process's BEGIN EXCLUSIVE)
    and with more requests than worker threads and pooled connections: each
    answers 503 within the setting (plus slack for a loaded machine, far
    below a second timeout), and none is stored once the lock is gone."""
    timeout = 1.0
    proc = server_factory(GENDETECT_DATABASE_TIMEOUT_SECONDS=str(timeout))
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        tid = scored(c)["transaction_id"]
        lock = sqlite3.connect(proc.home / "gendetect.db", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            answers = concurrent_posts(proc.url, "/v1/feedback",
                                       [verdict(tid, analyst=f"a{i}") for i in range(60)])
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert {(status, code) for status, code, _ in answers} == {
            (503, "database_unavailable")}
        slowest = max(elapsed for *_, elapsed in answers)
        assert slowest < timeout + 1.5, slowest
        time.sleep(timeout + 1.5)  # what a thread left behind would have committed by now
        assert table_rows(audit_db(proc.home), "verdicts") == []
        r = c.post("/v1/feedback", json=verdict(tid))
        assert r.status_code == 200 and r.json()["stored"] == 1


# ------------------------------------------------------------ scoped keys
KEYS = {
    "checkout": {"key": "score-key-0123456789", "scopes": ["score"]},
    "analysts": {"key": "review-key-0123456789", "scopes": ["review", "feedback"]},
    "ops": {"key": "admin-key-0123456789", "scopes": ["admin"]},
}


def test_keys_have_scopes(server_factory: Any) -> None:
    proc = server_factory(GENDETECT_API_KEYS=json.dumps(KEYS), GENDETECT_API_KEY="k" * 24)
    proc.start()

    def call(key: str, method: str, path: str, body: Any = None) -> int:
        r = httpx.request(method, f"{proc.url}{path}", headers={"X-API-Key": key}, json=body,
                          timeout=30)
        if r.status_code == 403:
            assert r.json()["error"]["code"] == "forbidden"
        return r.status_code

    scorer, analyst, admin = (KEYS[n]["key"] for n in ("checkout", "analysts", "ops"))
    rec = fresh()
    assert call(scorer, "POST", "/v1/score", rec) == 200
    tid = rec["transaction_id"]
    assert call(scorer, "POST", "/v1/score/batch", {"records": [fresh()]}) == 200
    assert call(scorer, "GET", "/v1/model") == 200
    for method, path, body in (
        ("GET", "/v1/alerts", None), ("GET", f"/v1/decisions/{tid}", None),
        ("POST", "/v1/feedback", verdict(tid)),
        ("POST", "/v1/labels", {"transaction_id": tid, "is_fraud": True}),
        ("POST", "/v1/model/reload", None),
    ):
        assert call(scorer, method, path, body) == 403, path
    assert call(analyst, "POST", "/v1/score", fresh()) == 403
    assert call(analyst, "POST", "/v1/model/reload") == 403
    assert call(analyst, "GET", "/v1/alerts") == 200
    assert call(analyst, "POST", "/v1/feedback", verdict(tid)) == 200
    assert call(analyst, "GET", f"/v1/decisions/{tid}") == 200
    assert call(admin, "POST", "/v1/model/reload") == 200
    assert call(admin, "POST", "/v1/score", fresh()) == 403
    # GENDETECT_API_KEY: every scope.
    for path in ("/v1/alerts", f"/v1/decisions/{tid}"):
        assert call("k" * 24, "GET", path) == 200
    assert call("k" * 24, "POST", "/v1/score", fresh()) == 200
    for wrong in ("", "wrong", scorer[:-1]):
        assert call(wrong, "GET", "/v1/model") == 401
    # Who did what is kept (the key's name), never the key.
    db = audit_db(proc.home)
    assert {r["key_name"] for r in table_rows(db, "decisions")} == {"checkout", "default"}
    assert [r["key_name"] for r in table_rows(db, "verdicts")] == ["analysts"]
    log = proc.log()
    assert "checkout (score)" in log
    assert all(k["key"] not in log for k in KEYS.values())


def test_bad_key_settings_are_startup_errors(registered_model: RegisteredFixture,
                                             tmp_path: Any) -> None:
    import subprocess

    from tests.integration.conftest import ServerProcess, server_env

    for keys, message in (
        ({"a": {"key": "short", "scopes": ["score"]}}, "at least 16 characters"),
        ({"a": {"key": "x" * 20, "scopes": ["scoring"]}}, "api_keys"),
        ({"a b": {"key": "x" * 20, "scopes": ["score"]}}, "key name"),
    ):
        env = server_env(registered_model.settings, tmp_path, GENDETECT_API_KEYS=json.dumps(keys))
        done = subprocess.run(ServerProcess.command(), env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert "x" * 20 not in done.stderr


def test_an_open_server_says_so_and_audit_off_writes_no_decisions(server_factory: Any) -> None:
    proc = server_factory(GENDETECT_AUTH="disabled", GENDETECT_AUDIT_ENABLED="false")
    proc.start()
    assert "GENDETECT_AUTH=disabled: the API is open" in proc.log()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        rec = fresh()
        assert c.post("/v1/score", json=rec).status_code == 200
        # Known to the online state: the verdict is stored all the same.
        r = c.post("/v1/feedback", json=verdict(rec["transaction_id"]))
        assert r.json()["stored"] == 1
        got = c.get(f"/v1/decisions/{rec['transaction_id']}").json()
        assert got["decision"] is None and got["label"] == "fraud"
    assert table_rows(audit_db(proc.home), "decisions") == []
