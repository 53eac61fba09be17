"""The stores (gendetect.stores) against SQLite and the real PostgreSQL on
127.0.0.1:5432: migrations equal to the models, the group-commit audit
writer (grouping, retries, conflicts, failures), verdict history and the
online-state updates it asks for, the review queue's pages, the labels
export and the `db` / `labels` commands.

PostgreSQL: each session creates a database of its own next to the test
database (GENDETECT_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/gendetect_test) and drops it at the end.
When it is unreachable the PostgreSQL cases fail if GENDETECT_REQUIRE_POSTGRES
is 1 (scripts/test.sh and CI set it), and skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from gendetect.errors import DuplicateTransactionError, StoreUnavailableError
from gendetect.keyed_hash import EntityHasher
from gendetect.schema import load_schema
from gendetect.stores import migrate
from gendetect.stores.audit import AuditWriter
from gendetect.stores.database import make_engine, normalise_url
from gendetect.stores.errors import SchemaVersionError
from gendetect.stores.export import export_labels, latest_labels
from gendetect.stores.records import RowBuilder
from gendetect.stores.review import AlertFilter, ReviewStore
from gendetect.stores.tables import Base, decisions, verdicts
from gendetect.stores.verdicts import Deadline, NewVerdict, VerdictStore, VerdictTimeError

POSTGRES_URL = os.environ.get("GENDETECT_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/gendetect_test")
KEY = b"test-hash-key"
T0 = datetime(2024, 3, 1, 10, 0, 0)


# ----------------------------------------------------------- databases
def postgres_required() -> bool:
    return os.environ.get("GENDETECT_REQUIRE_POSTGRES") == "1"


def _admin_engine(base_url: str) -> Engine:
    return create_engine(normalise_url(base_url), isolation_level="AUTOCOMMIT",
                         connect_args={"connect_timeout": 3})


def create_postgres_database(base_url: str = POSTGRES_URL) -> str:
    """A new empty database on the server of `base_url`; returns its URL.
    Fails (or skips, when PostgreSQL is not required) if the server is not
    reachable."""
    name = f"gendetect_t_{os.getpid()}_{secrets.token_hex(4)}"
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        message = f"PostgreSQL at {base_url} not usable: {type(exc).__name__}: {exc}"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message + " (set GENDETECT_REQUIRE_POSTGRES=1 to fail instead)")
    finally:
        engine.dispose()
    return str(normalise_url(base_url)).rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str, base_url: str = POSTGRES_URL) -> None:
    name = url.rsplit("/", 1)[1]
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty, migrated database of each kind (PostgreSQL: fresh tables in
    the module's database)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'stores.db'}", timeout=2.0)
    else:
        url = request.getfixturevalue("postgres_url")
        eng = make_engine(url, timeout=2.0)
        with eng.begin() as conn:
            for table in ("verdicts", "decisions", "hash_key_check", "alembic_version"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    migrate.ensure_schema(eng)
    yield eng
    eng.dispose()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


# ------------------------------------------------------------- helpers
SCHEMA = load_schema("transactions")


def record(tid: int, customer: int = 7, terminal: int = 9, amount: float = 10.0,
           at: datetime = T0) -> dict[str, Any]:
    return {"transaction_id": tid, "timestamp": at, "customer_id": customer,
            "terminal_id": terminal, "amount": amount}


def decision(tid: int, score: float = 0.5, flagged: bool = False,
             version: str = "1") -> dict[str, Any]:
    return {"score": score, "risk": score / 2, "is_fraud": flagged, "threshold": 0.3,
            "top_features": [{"feature": "amount", "contribution": 0.1 + 1e-17}],
            "top_reasons": [{"reason": "amount", "contribution": 1 / 3}],
            "model": {"name": "gendetect", "version": version}, "transaction_id": tid}


def rows(records: list[dict[str, Any]], decided: list[dict[str, Any]],
         at: datetime | None = None) -> Any:
    return RowBuilder(SCHEMA, KEY).rows(records, decided, at or datetime.now(UTC), "tester")


async def write_all(writer: AuditWriter, *batches: Any) -> list[Any]:
    return await asyncio.gather(*(writer.write(b) for b in batches), return_exceptions=True)


@pytest.fixture
def writer(engine: Engine) -> Iterator[AuditWriter]:
    w = AuditWriter(engine, timeout=5.0, queue_max=10_000)
    w.start()
    yield w
    w.close()


# ---------------------------------------------------------- migrations
def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.ensure_schema(engine)  # at head: nothing to do


def test_a_database_at_another_revision_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaVersionError, match="gendetect db upgrade"):
        migrate.ensure_schema(engine)


def test_tables_without_migrations_are_refused(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    Base.metadata.create_all(eng)  # what a production path must never do
    with pytest.raises(SchemaVersionError, match="not created by gendetect's migrations"):
        migrate.ensure_schema(eng)


# --------------------------------------------------------------- audit
def test_rows_hold_keyed_hashes_and_no_pii(engine: Engine, writer: AuditWriter) -> None:
    from gendetect.features.online import OnlineWindowFeatures

    customer, terminal = 987_654_321_123, "TERM-XYZ-42"
    rec = record(1, customer=customer, terminal=terminal)  # type: ignore[arg-type]
    assert asyncio.run(writer.write(rows([rec], [decision(1)]))) == [None]
    with engine.connect() as conn:
        stored = [dict(r) for r in conn.execute(select(decisions)).mappings()]
        dump = repr(stored)
    assert str(customer) not in dump and terminal not in dump
    online = OnlineWindowFeatures(entity_key=KEY)
    assert stored[0]["entities"] == {"customer_id": online.entity_digest(customer),
                                     "terminal_id": online.entity_digest(terminal)}
    assert EntityHasher(KEY).digest("42") == EntityHasher(KEY).digest(42)
    (row,) = stored
    assert row["transaction_id"] == 1 and row["event_time"] == T0
    assert row["model_version"] == "1" and row["key_name"] == "tester"
    # Doubles and JSON read back bit for bit.
    assert row["top_features"][0]["contribution"] == 0.1 + 1e-17
    assert row["top_reasons"][0]["contribution"] == 1 / 3


def test_concurrent_writes_share_commits(engine: Engine, writer: AuditWriter) -> None:
    from sqlalchemy import event

    slow = {"first": True}

    def delay(*_: Any) -> None:
        # The first commit takes a while: the requests arriving meanwhile
        # must all go into the next one.
        if slow["first"]:
            slow["first"] = False
            import time

            time.sleep(0.3)

    event.listen(engine, "before_cursor_execute", delay)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(writer.write(rows([record(100)], [decision(100)])))
        await asyncio.sleep(0.1)
        rest = [writer.write(rows([record(101 + i)], [decision(101 + i)])) for i in range(20)]
        return [await first, *await asyncio.gather(*rest)]

    try:
        outcomes = asyncio.run(scenario())
    finally:
        event.remove(engine, "before_cursor_execute", delay)
    assert outcomes == [[None]] * 21
    assert writer.commits == 2
    assert count(engine, decisions) == 21


def test_a_retry_gets_the_stored_decision(engine: Engine, writer: AuditWriter) -> None:
    first = decision(5, score=0.9, flagged=True, version="1")
    assert asyncio.run(writer.write(rows([record(5)], [first]))) == [None]
    # Same record again, decided by another model version: the stored one comes back.
    again = asyncio.run(writer.write(rows([record(5)], [decision(5, score=0.1, version="2")])))
    assert again == [first]
    # Other content under the same id: a conflict, and nothing of that request is written.
    with pytest.raises(DuplicateTransactionError):
        asyncio.run(writer.write(rows([record(6), record(5, amount=99.0)],
                                      [decision(6), decision(5)])))
    assert count(engine, decisions) == 1
    # Within one group, the first row of an id wins; same content is a replay.
    out = asyncio.run(write_all(writer, rows([record(7)], [decision(7, score=0.7)]),
                                rows([record(7)], [decision(7, score=0.2)])))
    assert out[0] == [None] and out[1] in ([None], [decision(7, score=0.7)])
    assert count(engine, decisions) == 2


def test_an_unreachable_database_is_a_bounded_failure() -> None:
    import time

    eng = make_engine("postgresql://postgres@127.0.0.1:9/nothing", timeout=0.5)
    w = AuditWriter(eng, timeout=0.5, queue_max=10)
    w.start()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            asyncio.run(w.write(rows([record(1)], [decision(1)])))
        assert time.monotonic() - started < 5
        # Back-pressure: more rows than the queue may hold are refused at once.
        with pytest.raises(StoreUnavailableError, match="too many"):
            asyncio.run(w.write(rows([record(i) for i in range(11)],
                                     [decision(i) for i in range(11)])))
    finally:
        w.close()
        eng.dispose()


def test_a_writer_that_is_not_running_refuses(engine: Engine) -> None:
    w = AuditWriter(engine, timeout=1.0, queue_max=10)
    with pytest.raises(StoreUnavailableError):
        asyncio.run(w.write(rows([record(1)], [decision(1)])))


# ------------------------------------------------------------ verdicts
class FakeOnline:
    """What OnlineState.add_label is asked (and which ids it knows)."""

    def __init__(self, known: set[int]) -> None:
        self.known = known
        self.calls: list[tuple[int, bool, datetime]] = []

    def __call__(self, tid: int, is_fraud: bool, at: datetime) -> bool:
        self.calls.append((tid, is_fraud, at))
        return tid in self.known


def _scored(engine: Engine, *tids: int, flagged: bool = True, version: str = "1",
            at: datetime | None = None) -> None:
    w = AuditWriter(engine, timeout=5.0, queue_max=1000)
    w.start()
    try:
        asyncio.run(w.write(rows([record(t) for t in tids],
                                 [decision(t, flagged=flagged, version=version) for t in tids],
                                 at)))
    finally:
        w.close()


def test_verdicts_keep_history_and_the_latest_wins(engine: Engine) -> None:
    _scored(engine, 1)
    store, online = VerdictStore(engine), FakeOnline(set())
    now = datetime(2025, 1, 1, tzinfo=UTC)
    t1, t2, t3 = (T0 + timedelta(days=d) for d in (1, 2, 3))

    def add(*items: NewVerdict) -> Any:
        return store.add(list(items), received_at=now, source="feedback", key_name="k",
                         apply=online)

    r = add(NewVerdict(1, "fraud", "ann", "card reported stolen", t1))
    assert (r.stored, r.duplicates, r.unknown) == (1, 0, [])
    assert online.calls == [(1, True, t1)]
    # The same verdict again: nothing stored, nothing applied.
    r = add(NewVerdict(1, "fraud", "ann", "card reported stolen", t1))
    assert (r.stored, r.duplicates) == (0, 1)
    # A second analyst confirms later: stored, but the fraud still counts from t1.
    r = add(NewVerdict(1, "fraud", "bob", None, t3))
    assert r.stored == 1 and len(online.calls) == 1
    # Without a time, equal to the latest verdict: a retry.
    assert add(NewVerdict(1, "fraud", "bob")).duplicates == 1
    # Changed: the latest wins, the history stays.
    r = add(NewVerdict(1, "genuine", "cat", "customer confirmed", t3 + timedelta(hours=1)))
    assert r.stored == 1 and online.calls[-1] == (1, False, t3 + timedelta(hours=1))
    # A late verdict with an earlier time is history: the label does not change.
    r = add(NewVerdict(1, "fraud", "dan", None, t2))
    assert r.stored == 1 and len(online.calls) == 2
    decided, history = ReviewStore(engine).decision(1)
    assert decided is not None and decided["transaction_id"] == 1
    assert [v["analyst"] for v in history] == ["ann", "dan", "bob", "cat"]
    assert history[-1]["label"] == "genuine"
    assert count(engine, verdicts) == 4


def test_verdicts_for_unknown_transactions_are_not_stored(engine: Engine) -> None:
    _scored(engine, 1)
    store, online = VerdictStore(engine), FakeOnline({50})
    r = store.add([NewVerdict(1, "fraud", "ann"), NewVerdict(2, "fraud", "ann"),
                   NewVerdict(50, "genuine", "ann")],
                  received_at=datetime.now(UTC), source="feedback", key_name=None, apply=online)
    # 1 is in the audit, 50 only in the online state (audit off or older), 2 nowhere.
    assert (r.stored, r.unknown) == (2, [2])
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(verdicts.c.transaction_id))) == [1, 50]


def test_a_failing_online_state_stores_nothing(engine: Engine) -> None:
    from gendetect.errors import StateUnavailableError

    _scored(engine, 1)

    def down(*_: Any) -> bool:
        raise StateUnavailableError("redis down")

    with pytest.raises(StateUnavailableError):
        VerdictStore(engine).add([NewVerdict(1, "fraud", "ann")], received_at=datetime.now(UTC),
                                 source="feedback", key_name=None, apply=down)
    assert count(engine, verdicts) == 0


def test_a_verdict_dated_before_its_transaction_is_refused(engine: Engine) -> None:
    _scored(engine, 1, 2)  # event time T0 (the records' timestamp)
    store, online = VerdictStore(engine), FakeOnline({50})
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def add(*items: NewVerdict) -> Any:
        return store.add(list(items), received_at=now, source="feedback", key_name=None,
                         apply=online)

    early = T0 - timedelta(seconds=1)
    with pytest.raises(VerdictTimeError) as caught:
        add(NewVerdict(1, "fraud", "ann", None, T0 + timedelta(days=1)),
            NewVerdict(2, "fraud", "ann", None, early),
            NewVerdict(1, "genuine", "bob", None, early.replace(tzinfo=UTC)))
    assert caught.value.items == [1, 2] and caught.value.field == "labelled_at"
    # Nothing of the request: not the good verdict, not the online state.
    assert count(engine, verdicts) == 0 and online.calls == []
    # At the transaction's own time, or without a time (dated on arrival): taken.
    assert add(NewVerdict(1, "fraud", "ann", None, T0), NewVerdict(2, "fraud", "ann")).stored == 2
    # Unknown to the audit (only the online state knows it): no event time to
    # compare with, taken as before.
    assert add(NewVerdict(50, "fraud", "ann", None, early)).stored == 1


def _hold_write_lock(engine: Engine, release_after: float) -> threading.Thread:
    """Another session holds the lock a verdict write needs (SQLite: the
    database's write lock; PostgreSQL: the verdicts table), released after
    `release_after` seconds; returns once the lock is held."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        if engine.dialect.name == "sqlite":
            other = sqlite3.connect(str(engine.url.database), isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(release_after)
            other.execute("ROLLBACK")
            other.close()
        else:
            url = engine.url.render_as_string(hide_password=False)
            other = create_engine(url)
            try:
                with other.begin() as conn:
                    conn.execute(text("LOCK TABLE verdicts IN ACCESS EXCLUSIVE MODE"))
                    held.set()
                    time.sleep(release_after)
            finally:
                other.dispose()
        done.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10), "the lock was not taken"
    return thread


def test_a_deadline_bounds_the_whole_verdict_write(engine: Engine) -> None:
    """The engine waits up to 2 s per lock; the lock is released after 1.5 s,
    so without the deadline the write would wait and succeed. With a 0.5 s
    deadline it fails by then, and stores nothing, not even once the lock is
    free."""
    _scored(engine, 1)
    store = VerdictStore(engine)
    holder = _hold_write_lock(engine, release_after=1.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        store.add([NewVerdict(1, "fraud", "ann")], received_at=datetime.now(UTC),
                  source="feedback", key_name=None, apply=None, deadline=Deadline(0.5))
    assert time.monotonic() - started < 1.2
    holder.join()
    assert count(engine, verdicts) == 0
    # A spent deadline writes nothing even with the database free; the
    # engine's connections keep their own waits afterwards.
    with pytest.raises(StoreUnavailableError):
        store.add([NewVerdict(1, "fraud", "ann")], received_at=datetime.now(UTC),
                  source="feedback", key_name=None, apply=None, deadline=Deadline(0))
    assert store.add([NewVerdict(1, "fraud", "ann")], received_at=datetime.now(UTC),
                     source="feedback", key_name=None, apply=None).stored == 1


def test_a_write_given_up_by_its_request_is_never_committed(engine: Engine) -> None:
    """The request stopped waiting (its deadline passed while the thread was
    still working): the thread rolls back instead of committing late."""
    _scored(engine, 1)
    deadline = Deadline(5.0)

    def give_up_first(*_: Any) -> bool:
        assert deadline.abandon()  # the request's side, before the commit
        return True

    with pytest.raises(StoreUnavailableError):
        VerdictStore(engine).add([NewVerdict(1, "fraud", "ann")], received_at=datetime.now(UTC),
                                 source="feedback", key_name=None, apply=give_up_first,
                                 deadline=deadline)
    assert count(engine, verdicts) == 0


# -------------------------------------------------------- review queue
def test_the_alert_queue_pages_newest_first(engine: Engine) -> None:
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(7):  # one group per time, so decided_at differs
        _scored(engine, 10 + i, version="1" if i < 5 else "2", at=base + timedelta(minutes=i))
    _scored(engine, 30, flagged=False, at=base)
    _scored(engine, 31, 32, at=base + timedelta(minutes=10))  # two at the same time
    VerdictStore(engine).add([NewVerdict(12, "fraud", "ann")], received_at=datetime.now(UTC),
                             source="feedback", key_name=None, apply=None)
    review = ReviewStore(engine)
    seen, cursor = [], None
    while True:
        page, cursor = review.alerts(AlertFilter(), limit=3, cursor=cursor)
        seen += [a["transaction_id"] for a in page]
        if cursor is None:
            break
    # Flagged, without a verdict (not 12, not the unflagged 30), newest first.
    assert seen[2:] == [16, 15, 14, 13, 11, 10]
    assert sorted(seen[:2]) == [31, 32]
    flt = AlertFilter(since=base + timedelta(minutes=1), until=base + timedelta(minutes=5))
    assert [a["transaction_id"] for a in review.alerts(flt, limit=50, cursor=None)[0]] == [
        14, 13, 11]
    only_v2 = review.alerts(AlertFilter(model_version="2"), limit=50, cursor=None)[0]
    assert [a["transaction_id"] for a in only_v2] == [16, 15]
    alert = only_v2[0]
    assert alert["top_reasons"] and alert["model"] == {"name": "gendetect", "version": "2"}
    digest = EntityHasher(KEY).digest(7)
    by_customer = review.alerts(AlertFilter(entity=("customer_id", digest)), limit=50,
                                cursor=None)[0]
    assert len(by_customer) == 8


# -------------------------------------------------------------- export
def test_labels_export_uses_what_was_known_by_until(engine: Engine, tmp_path: Path) -> None:
    _scored(engine, 1, 2, 3)
    store = VerdictStore(engine)
    day = [T0 + timedelta(days=d) for d in range(6)]
    for item in (NewVerdict(1, "fraud", "a", None, day[1]), NewVerdict(1, "genuine", "b", None,
                                                                     day[4]),
                 NewVerdict(2, "genuine", "a", None, day[2]), NewVerdict(3, "fraud", "a", None,
                                                                       day[0])):
        store.add([item], received_at=datetime.now(UTC), source="feedback", key_name=None,
                  apply=None)
    frame = latest_labels(engine, since=day[1], until=day[3])
    # 1: fraud (its genuine verdict comes after until); 3: known before since.
    assert frame.to_dict("records") == [
        {"transaction_id": 1, "is_fraud": 1, "labelled_at": pd.Timestamp(day[1])},
        {"transaction_id": 2, "is_fraud": 0, "labelled_at": pd.Timestamp(day[2])},
    ]
    assert latest_labels(engine).set_index("transaction_id")["is_fraud"].to_dict() == {
        3: 1, 2: 0, 1: 0}
    out = tmp_path / "labels.csv"
    assert export_labels(engine, out, until=day[3]) == 3
    from gendetect.data.io import read_table

    back = read_table(out)
    assert list(back.columns) == ["transaction_id", "is_fraud", "labelled_at"]
    # Joinable: replaces the label column of a transactions file.
    tx = pd.DataFrame({"transaction_id": [1, 2, 3, 4], "amount": [1.0, 2.0, 3.0, 4.0]})
    joined = tx.merge(back[["transaction_id", "is_fraud"]], on="transaction_id", how="left")
    assert joined["is_fraud"].tolist()[:3] == [1, 0, 1] and pd.isna(joined["is_fraud"][3])


# ------------------------------------------------------------- commands
def test_db_and_labels_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from gendetect.cli import main
    from gendetect.config import get_settings

    monkeypatch.setenv("GENDETECT_HOME", str(tmp_path))
    monkeypatch.delenv("GENDETECT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["db", "current"]) == 1
        assert "empty" in capsys.readouterr().out
        assert main(["db", "upgrade"]) == 0
        assert main(["db", "current"]) == 0
        assert "up to date" in capsys.readouterr().out
        eng = make_engine(f"sqlite:///{tmp_path / 'gendetect.db'}")
        _scored(eng, 1)
        VerdictStore(eng).add([NewVerdict(1, "fraud", "a", None, T0)],
                              received_at=datetime.now(UTC), source="feedback", key_name=None,
                              apply=None)
        out = tmp_path / "labels.parquet"
        assert main(["labels", "export", "--since", "2024-01-01", "--until", "2024-04-01",
                     "--out", str(out)]) == 0
        assert pd.read_parquet(out)["transaction_id"].tolist() == [1]
        assert main(["labels", "export", "--since", "2024-05-01", "--until", "2024-04-01",
                     "--out", str(out)]) == 2
        assert main(["db", "upgrade", "--database-url",
                     "postgresql://postgres@127.0.0.1:9/x"]) == 2
        err = capsys.readouterr().err
        assert "database error" in err and "Traceback" not in err
    finally:
        get_settings.cache_clear()


def test_db_and_labels_commands_refuse_bad_arguments_clearly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from gendetect.cli import main
    from gendetect.config import get_settings

    monkeypatch.setenv("GENDETECT_HOME", str(tmp_path))
    monkeypatch.delenv("GENDETECT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    out = str(tmp_path / "labels.csv")
    cases = [
        # Before: a traceback (no driver), or a message echoing the URL.
        (["db", "upgrade", "--database-url", "nope://x"], "--database-url: no driver"),
        (["db", "upgrade", "--database-url", "postgresql://u:s3cret@h:port/x"],
         "--database-url: not a SQLAlchemy URL"),
        # Before: "no such table: verdicts", or the database asked first.
        (["labels", "export", "--out", out], "run `gendetect db upgrade` first"),
        (["labels", "export", "--out", str(tmp_path / "labels.json")], "--out: cannot write"),
        (["labels", "export", "--out", out, "--label-column", " "], "--label-column"),
    ]
    try:
        for args, message in cases:
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and "s3cret" not in err
        assert not (tmp_path / "labels.csv").exists()
    finally:
        get_settings.cache_clear()


def test_uuid_ids_order_the_same_on_both_databases(engine: Engine) -> None:
    # The cursor compares ids: SQLite's hex text and PostgreSQL's uuid must agree.
    ids = sorted(uuid.uuid4() for _ in range(20))
    with engine.begin() as conn:
        conn.execute(decisions.insert(), [
            {"id": i, "transaction_id": None, "decided_at": T0, "event_time": None,
             "model_name": "m", "model_version": "1", "score": 1.0, "risk": 1.0,
             "is_fraud": True, "threshold": 0.5, "top_features": [], "top_reasons": [],
             "entities": {}, "fingerprint": "f", "key_name": None} for i in ids])
        got = list(conn.scalars(select(decisions.c.id).order_by(decisions.c.id)))
    assert got == ids


# ------------------------------------------------------------ hash key
# The database records the hash key's check value; before, a changed key
# went unnoticed and an exact retry of an acknowledged decision got 409.
def test_the_hash_key_check_is_recorded_and_compared(engine: Engine) -> None:
    from gendetect.key_check import HashKeyChangedError, key_check
    from gendetect.stores.hash_key import check_hash_key
    from gendetect.stores.tables import hash_key_check

    old, new = key_check(KEY), key_check(b"another-hash-key")
    assert check_hash_key(engine, old) == "recorded"
    assert check_hash_key(engine, old) == "same"
    _scored(engine, 1, 2)
    with pytest.raises(HashKeyChangedError) as info:
        check_hash_key(engine, new)
    message = str(info.value)
    assert "audit database" in message and "hash key changed" in message
    assert engine.url.database is not None and engine.url.database in message
    assert "GENDETECT_ACCEPT_NEW_HASH_KEY=true" in message
    # Accepted: the new value is recorded, and nothing is deleted.
    assert check_hash_key(engine, new, accept_new_key=True) == "accepted"
    assert check_hash_key(engine, new) == "same" and count(engine, decisions) == 2
    with pytest.raises(HashKeyChangedError):
        check_hash_key(engine, old)
    assert count(engine, hash_key_check) == 1


def test_a_database_from_before_key_checks_adopts_the_key(engine: Engine) -> None:
    from gendetect.key_check import HashKeyChangedError, key_check
    from gendetect.stores.hash_key import check_hash_key

    _scored(engine, 1)  # decisions, and no check value (as after `db upgrade`)
    assert check_hash_key(engine, key_check(KEY)) == "recorded"
    with pytest.raises(HashKeyChangedError):
        check_hash_key(engine, key_check(b"another-hash-key"))


def test_db_upgrade_adds_the_key_check_table_to_an_older_database(tmp_path: Path) -> None:
    from sqlalchemy import MetaData, Table, inspect

    eng = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(eng, "0001")
    # A decision as the 0001 schema holds it (the writer of today adds columns).
    old = Table("decisions", MetaData(), autoload_with=eng)
    (row,) = rows([record(1)], [decision(1)])
    with eng.begin() as conn:  # the model's types, the old table's columns
        conn.execute(decisions.insert(), {k: v for k, v in row.values(uuid.uuid4()).items()
                                          if k in old.c})
    with pytest.raises(SchemaVersionError, match="gendetect db upgrade"):
        migrate.ensure_schema(eng)
    assert migrate.upgrade(eng) == "0001"
    assert "hash_key_check" in inspect(eng).get_table_names()
    assert "request_id" in {c["name"] for c in inspect(eng).get_columns("decisions")}
    assert count(eng, decisions) == 1
    migrate.ensure_schema(eng)
    eng.dispose()


def test_the_api_stays_not_ready_on_an_audit_database_of_another_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """serving.stores.Stores.prepare: a database whose decisions were made
    with another key keeps scoring at 503 with the reason (and a log line);
    the accept setting records the new key and keeps the rows."""
    from serving.settings import ServingSettings
    from serving.stores import Stores

    def prepared(key: str, **extra: Any) -> Stores:
        stores = Stores(ServingSettings(home=tmp_path, hash_key=key, **extra))  # type: ignore[arg-type]
        asyncio.run(asyncio.wait_for(stores.prepare(), 30))
        return stores

    first = prepared("the-first-hash-key")
    assert first.ready
    first.close()
    _scored(make_engine(f"sqlite:///{tmp_path / 'gendetect.db'}"), 1)
    with caplog.at_level("ERROR", logger="gendetect.serving"):
        second = prepared("a-second-hash-key")
    assert not second.ready and second.writer is not None and not second.writer.running
    assert second.problem is not None and "hash key changed" in second.problem
    assert str(tmp_path / "gendetect.db") in second.problem
    assert "GENDETECT_HASH_KEY" in second.problem and second.problem in caplog.text
    second.close()
    third = prepared("a-second-hash-key", accept_new_hash_key=True)
    assert third.ready
    third.close()
    assert prepared("a-second-hash-key").ready
    assert count(make_engine(f"sqlite:///{tmp_path / 'gendetect.db'}"), decisions) == 1


# -------------------------------------------------------------- privacy
def test_the_sqlite_database_and_its_side_files_are_private(tmp_path: Path) -> None:
    """Analysts' names and notes: the file SQLite made was 0644 (the umask's
    mode), and its -wal and -shm files followed it."""
    from serving.settings import ServingSettings
    from serving.stores import Stores

    old_umask = os.umask(0o022)  # the common default, whatever the runner's
    try:
        home = tmp_path / "new" / "home"
        stores = Stores(ServingSettings(home=home, hash_key="privacy-test-hash-key"))  # type: ignore[arg-type]
        asyncio.run(asyncio.wait_for(stores.prepare(), 30))
        assert stores.ready
        with stores.engine.connect() as conn:  # open: the -wal and -shm files exist
            conn.execute(text("SELECT count(*) FROM decisions"))
            db = home / "gendetect.db"
            files = [db, db.with_name("gendetect.db-wal"), db.with_name("gendetect.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: f.stat().st_mode & 0o777 for f in files} == {
                f.name: 0o600 for f in files}
        for folder in (home, home.parent):  # both made by us
            assert folder.stat().st_mode & 0o777 == 0o700, folder
        stores.close()
    finally:
        os.umask(old_umask)
