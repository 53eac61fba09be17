"""Validation, then the audit, then the state: a request whose decision was
not stored leaves the behaviour state as it was; a retry in another spelling
is the same transaction; /readyz checks the schema that scoring writes to.
Real server processes, a real SQLite audit database."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import inspect, text

from tests.integration.api_helpers import (
    T0,
    assert_same_decision,
    expected,
    fresh,
    offline_windows,
)
from tests.integration.conftest import API_KEY, audit_db, table_rows

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def database_locked(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock: the audit writer cannot
    commit within its timeout (a database that hangs)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _expected_alone(registered: RegisteredFixture,
                    history: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision for history[-1] when the state holds exactly `history`."""
    windows = offline_windows(history, registered=registered)
    # Scored alone, as the API scores one request: a block of several rows
    # rounds the networks' float32 products differently (last bit).
    return expected(registered, history[-1:], windows[-1:])[0]


def test_a_decision_not_stored_leaves_no_trace_in_the_state(
    server_factory: Any, registered_model: RegisteredFixture
) -> None:
    proc: ServerProcess = server_factory(GENDETECT_API_KEY=API_KEY,
                                         GENDETECT_DATABASE_TIMEOUT_SECONDS="0.5")
    proc.start()
    customer, terminal = 7_310_000_001, 7_310_000_002
    failed = [fresh(T0 + timedelta(minutes=i), customer=customer, terminal=terminal,
                    amount=900.0) for i in range(4)]
    with httpx.Client(base_url=proc.url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        with database_locked(proc.home / "gendetect.db"):
            for rec in failed[:2]:
                r = c.post("/v1/score", json=rec)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "audit_unavailable"
            r = c.post("/v1/score/batch", json={"records": failed[2:]})
            assert r.status_code == 503, r.text
        # Nothing of the four counts: the next transaction of the same customer
        # and terminal is scored as if the state had never seen them.
        probe = fresh(T0 + timedelta(hours=1), customer=customer, terminal=terminal)
        got = c.post("/v1/score", json=probe).json()
        assert_same_decision(got, _expected_alone(registered_model, [probe]))
        # A corrected resend of a refused record is a new transaction, not a 409.
        corrected = {**failed[0], "amount": 12.5}
        assert c.post("/v1/score", json=corrected).status_code == 200
    stored = {r["transaction_id"] for r in table_rows(audit_db(proc.home), "decisions")}
    assert stored == {probe["transaction_id"], corrected["transaction_id"]}


def test_a_retry_in_another_spelling_is_the_same_transaction(
    client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    customer, terminal = 7_320_000_001, 7_320_000_002
    first = fresh(T0, customer=customer, terminal=terminal, amount=42.0)
    first["timestamp"] = "2024-03-01T10:00:00Z"
    decided = client.post("/v1/score", json=first)
    assert decided.status_code == 200
    spellings = [
        {**first, "timestamp": "2024-03-01T10:00:00+00:00"},
        {**first, "timestamp": "2024-03-01T11:00:00+01:00"},
        {**first, "timestamp": "2024-03-01T10:00:00"},  # no offset: UTC
        {**first, "customer_id": str(customer)},
        {**first, "amount": 42},
    ]
    for retry in spellings:
        r = client.post("/v1/score", json=retry)
        assert r.status_code == 200, (retry, r.text)
        assert r.json() == decided.json()
    # Also inside one batch: the same transaction twice, two spellings.
    r = client.post("/v1/score/batch", json={"records": spellings[:2]})
    assert r.status_code == 200, r.text
    # Counted once: the next transaction sees one earlier transaction.
    probe = fresh(T0 + timedelta(hours=1), customer=customer, terminal=terminal)
    got = client.post("/v1/score", json=probe).json()
    want = _expected_alone(registered_model,
                           [{**first, "timestamp": "2024-03-01T10:00:00"}, probe])
    assert_same_decision(got, want)


def test_readiness_checks_the_schema_scoring_writes_to(server_factory: Any) -> None:
    proc: ServerProcess = server_factory(GENDETECT_API_KEY=API_KEY)
    proc.start()
    engine = audit_db(proc.home)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    with httpx.Client(base_url=proc.url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        # A database at another revision (a newer replica upgraded it): not
        # ready, saying what to run, so that a load balancer drains this one.
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'someother0001'"))
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "gendetect db upgrade" in ready.json()["reason"]
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/score", json=fresh(T0)).status_code == 200
        # The database recreated empty: the schema is created again, as at start.
        with engine.begin() as conn:
            for table in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE "{table}"'))
        assert c.get("/readyz").status_code == 200
        rec = fresh(T0)
        assert c.post("/v1/score", json=rec).status_code == 200
    assert [r["transaction_id"] for r in table_rows(engine, "decisions")] == [
        rec["transaction_id"]]
