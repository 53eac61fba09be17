"""The review queue riskiest first and by reason, its cursors, the record's
context in the audit, and migration 0004 on a database with decisions, on
SQLite and PostgreSQL (see test_stores for GENDETECT_TEST_POSTGRES_URL and
GENDETECT_REQUIRE_POSTGRES)."""

from __future__ import annotations

import asyncio
import base64
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, MetaData, Table, event, select, text

from gendetect.errors import InputError
from gendetect.schema import load_schema
from gendetect.stores import migrate
from gendetect.stores.audit import AuditWriter
from gendetect.stores.database import make_engine
from gendetect.stores.records import RowBuilder, context_fields
from gendetect.stores.review import AlertFilter, ReviewStore, encode_cursor
from gendetect.stores.tables import decisions
from gendetect.stores.verdicts import NewVerdict, VerdictStore
from tests.unit.gendetect.stores.test_stores import (
    create_postgres_database,
    drop_postgres_database,
)

KEY = b"queue-test-key"
SCHEMA = load_schema("transactions")
T0 = datetime(2025, 6, 1, 12, 0, 0)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each kind (no tables)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'queue.db'}", timeout=2.0)
    else:
        eng = make_engine(request.getfixturevalue("postgres_url"), timeout=2.0)
        with eng.begin() as conn:
            for table in ("verdicts", "decisions", "hash_key_check", "alembic_version"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    yield eng
    eng.dispose()


@pytest.fixture
def engine(bare: Engine) -> Engine:
    migrate.ensure_schema(bare)
    return bare


def record(tid: int, amount: float = 10.0, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "timestamp": T0, "customer_id": 5550001234 + tid,
            "terminal_id": f"TERM-{tid:04d}", "amount": amount, **extra}


def decision(tid: int, risk: float, reasons: tuple[str, ...] = ("amount",),
             flagged: bool = True) -> dict[str, Any]:
    return {"score": risk * 10, "risk": risk, "is_fraud": flagged, "threshold": 0.3,
            "top_features": [{"feature": "amount", "contribution": 0.5}],
            "top_reasons": [{"reason": r, "contribution": 0.5} for r in reasons],
            "model": {"name": "gendetect", "version": "1"}, "transaction_id": tid}


def write(engine: Engine, batches: list[list[tuple[dict[str, Any], dict[str, Any]]]],
          behaviour: list[dict[str, float]] | None = None) -> None:
    """Each batch one commit at its own time (T0 + i minutes)."""
    builder, w = RowBuilder(SCHEMA, KEY), AuditWriter(engine, timeout=5.0, queue_max=1000)
    w.start()
    try:
        for i, batch in enumerate(batches):
            recs, decs = [r for r, _ in batch], [d for _, d in batch]
            audit_rows = builder.rows(recs, decs, T0 + timedelta(minutes=i), "tester",
                                      behaviour=behaviour)
            assert asyncio.run(w.write(audit_rows)) == [None] * len(batch)
    finally:
        w.close()


def every_page(store: ReviewStore, flt: AlertFilter, order: str, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = store.alerts(flt, limit=limit, cursor=cursor, order=order)  # type: ignore[arg-type]
        seen += [a["transaction_id"] for a in page]
        if cursor is None:
            return seen


def expected(engine: Engine, keep: Any = lambda row: True) -> list[int]:
    """Riskiest first from the table itself: flagged, without a verdict,
    by (risk, decided_at, id) descending."""
    with engine.connect() as conn:
        found = list(conn.execute(select(decisions)).mappings())
    voted = {12}
    rows = [r for r in found if r["is_fraud"] and r["transaction_id"] not in voted and keep(r)]
    rows.sort(key=lambda r: (r["risk"], r["decided_at"], r["id"]), reverse=True)
    return [r["transaction_id"] for r in rows]


def test_riskiest_first_pages_through_ties_by_time_then_id(engine: Engine) -> None:
    write(engine, [
        [(record(10), decision(10, 0.9)), (record(11), decision(11, 0.7, ("velocity",)))],
        # Same risk as 11, a later time; 13 and 14 tie on risk and time (id decides).
        [(record(12), decision(12, 0.99)), (record(13), decision(13, 0.7)),
         (record(14), decision(14, 0.7, ("terminal", "amount")))],
        [(record(15), decision(15, 0.95, flagged=False)), (record(16), decision(16, 0.2))],
    ])
    VerdictStore(engine).add([NewVerdict(12, "fraud", "ann")], received_at=datetime.now(UTC),
                             source="feedback", key_name=None, apply=None)
    store = ReviewStore(engine)
    want = expected(engine)
    assert want[0] == 10 and want[-1] == 16 and set(want[1:4]) == {11, 13, 14}
    for limit in (1, 2, 50):
        assert every_page(store, AlertFilter(), "riskiest", limit) == want
    # Newest first is unchanged: time, then id.
    newest = every_page(store, AlertFilter(), "newest", 2)
    assert newest[0] == 16 and newest[-2:] in ([10, 11], [11, 10])


def test_the_reason_filter_matches_any_top_reason_across_pages(engine: Engine) -> None:
    write(engine, [[(record(t), decision(t, risk, reasons)) for t, risk, reasons in [
        (1, 0.9, ("amount",)), (2, 0.8, ("velocity", "amount")), (3, 0.7, ("velocity",)),
        (4, 0.6, ("terminal",)), (5, 0.5, ("amount", "terminal")),
        (6, 0.4, ("amount_x",)),  # a name that contains another is not it
    ]]])
    store = ReviewStore(engine)
    has = lambda name: lambda r: name in [x["reason"] for x in r["top_reasons"]]  # noqa: E731
    for name in ("amount", "terminal", "velocity"):
        want = expected(engine, has(name))
        assert every_page(store, AlertFilter(reason=name), "riskiest", 1) == want
        assert sorted(every_page(store, AlertFilter(reason=name), "newest", 1)) == sorted(want)
    assert every_page(store, AlertFilter(reason="amount"), "riskiest", 2) == [1, 2, 5]
    # LIKE's wildcards are plain characters in a reason name.
    assert every_page(store, AlertFilter(reason="amount%"), "riskiest", 5) == []
    assert every_page(store, AlertFilter(reason="amoun_"), "riskiest", 5) == []
    with pytest.raises(InputError) as refused:
        store.alerts(AlertFilter(reason="amount|velocity"), limit=5, cursor=None)
    assert refused.value.field == "reason"


def test_cursors_keep_their_order(engine: Engine) -> None:
    write(engine, [[(record(t), decision(t, 0.5 + t / 100))] for t in range(1, 6)])
    store = ReviewStore(engine)
    _, newest_cursor = store.alerts(AlertFilter(), limit=2, cursor=None, order="newest")
    _, risky_cursor = store.alerts(AlertFilter(), limit=2, cursor=None, order="riskiest")
    assert newest_cursor and risky_cursor
    for cursor, order in ((newest_cursor, "riskiest"), (risky_cursor, "newest")):
        with pytest.raises(InputError, match="cursor of order=") as refused:
            store.alerts(AlertFilter(), limit=2, cursor=cursor, order=order)  # type: ignore[arg-type]
        assert refused.value.field == "cursor"
    with pytest.raises(InputError) as refused:
        store.alerts(AlertFilter(), limit=2, cursor="bm90IGEgY3Vyc29y", order="riskiest")
    assert refused.value.field == "cursor"
    # A cursor handed out before there were two orders ([time, hex id]) still pages.
    with engine.connect() as conn:
        third = conn.execute(select(decisions).where(decisions.c.transaction_id == 3)
                             ).mappings().one()
    old = base64.urlsafe_b64encode(orjson.dumps(
        [third["decided_at"].isoformat(), third["id"].hex])).decode().rstrip("=")
    assert old == encode_cursor("newest", third)
    page, _ = store.alerts(AlertFilter(), limit=5, cursor=old)
    assert [a["transaction_id"] for a in page] == [2, 1]


def test_the_context_keeps_non_personal_fields_and_behaviour(engine: Engine) -> None:
    assert context_fields(SCHEMA) == ["amount"]  # not ids, entities, protected, file-only
    rec = record(7, amount=1250.5, customer_age_group="55+", fraud_scenario=2)
    behaviour = {"customer_nb_tx_1day": 3.0, "customer_avg_amount_7day": 48.25,
                 "terminal_risk_7day": math.nan}
    write(engine, [[(rec, decision(7, 0.9))]], behaviour=[behaviour])
    with engine.connect() as conn:
        raw = repr(list(conn.execute(text("SELECT * FROM decisions")).all()))
    for secret in (str(rec["customer_id"]), rec["terminal_id"], "55+"):
        assert secret not in raw
    found, _ = ReviewStore(engine).decision(7)
    assert found is not None
    assert found["context"] == {
        "record": {"amount": 1250.5},
        "behaviour": {"customer_nb_tx_1day": 3.0, "customer_avg_amount_7day": 48.25,
                      "terminal_risk_7day": None},  # JSON has no NaN: a gap
    }
    (alert,), _ = ReviewStore(engine).alerts(AlertFilter(), limit=5, cursor=None)
    assert alert["context"] == found["context"]


def test_upgrade_from_0003_backfills_reason_names(bare: Engine) -> None:
    migrate.upgrade(bare, "0003")
    old = Table("decisions", MetaData(), autoload_with=bare)
    builder = RowBuilder(SCHEMA, KEY)
    made = builder.rows([record(t) for t in (1, 2, 3)],
                        [decision(1, 0.4, ("velocity", "amount")), decision(2, 0.8, ()),
                         decision(3, 0.6, ("amount",))], T0, "tester")
    with bare.begin() as conn:  # as the 0003 writer stored them
        conn.execute(decisions.insert(), [
            {k: v for k, v in row.values(uuid.uuid4()).items() if k in old.c} for row in made])
    assert migrate.upgrade(bare) == "0003"
    migrate.ensure_schema(bare)
    with bare.connect() as conn:
        names = dict(conn.execute(select(decisions.c.transaction_id, decisions.c.reason_names,
                                         )).all())
        contexts = set(conn.execute(select(decisions.c.context)).scalars())
    assert names == {1: "|velocity|amount|", 2: None, 3: "|amount|"}
    assert contexts == {None}  # the records were not kept: nothing to backfill
    store = ReviewStore(bare)
    assert every_page(store, AlertFilter(), "riskiest", 1) == [2, 3, 1]
    assert every_page(store, AlertFilter(reason="amount"), "riskiest", 1) == [3, 1]
    assert store.decision(1)[0]["context"] is None  # type: ignore[index]


def test_each_order_is_a_range_scan_of_its_partial_index(tmp_path: Path) -> None:
    """SQLite's plan of the statements the store runs (PostgreSQL's planner
    picks by table statistics, which a test database does not have)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate.ensure_schema(eng)
    write(eng, [[(record(t), decision(t, 0.5))] for t in range(1, 4)])
    ran: list[tuple[str, Any]] = []

    @event.listens_for(eng, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM decisions" in statement and not statement.startswith("EXPLAIN"):
            ran.append((statement, parameters))

    store = ReviewStore(eng)
    for order in ("newest", "riskiest"):
        _, cursor = store.alerts(AlertFilter(reason="amount"), limit=1, cursor=None, order=order)
        store.alerts(AlertFilter(reason="amount"), limit=1, cursor=cursor, order=order)
    plans = []
    with eng.connect() as conn:
        for statement, parameters in ran:
            plans.append(" / ".join(r[3] for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)))
    eng.dispose()
    index = ["ix_decisions_flagged "] * 2 + ["ix_decisions_flagged_risk "] * 2
    for plan, name in zip(plans, index, strict=True):
        assert f"SEARCH decisions USING INDEX {name}" in plan or (
            f"SCAN decisions USING INDEX {name}" in plan), plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index is the order
