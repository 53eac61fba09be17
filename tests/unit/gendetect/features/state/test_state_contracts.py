"""State-store contracts the API relies on (memory store): the same
transaction id again is a retry (same record) or a conflict (another record:
DuplicateTransactionError, nothing changes); a request that fails changes
nothing; whatever was accepted can always be snapshotted and read back; ids
are stored only as keyed hashes; ping() answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from gendetect.errors import DuplicateTransactionError, InputError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore
from gendetect.features.windows import WindowConfig
from gendetect.keyed_hash import record_digest
from tests.records import tx

START = datetime(2024, 3, 1, 12)
KEY = b"contract-test-key"


def test_a_retry_is_counted_once_and_a_conflict_changes_nothing(tmp_path: Path) -> None:
    store = MemoryStateStore(tmp_path / "state.snapshot")
    online = OnlineWindowFeatures(WindowConfig(), store, entity_key=KEY)
    first = online.compute_and_record(tx(1, START, amount=10.0))
    assert online.compute_and_record(tx(1, START, amount=10.0)) == first  # a retry
    journal = sorted(tmp_path.glob("state.snapshot.journal.*"))
    size = sum(p.stat().st_size for p in journal)
    for changed in (
        tx(1, START, amount=11.0),
        tx(1, START, customer=2),
        tx(1, START + timedelta(seconds=1)),
        tx(1, START) | {"merchant_category": "5411"},  # any field of the record
    ):
        with pytest.raises(DuplicateTransactionError) as info:
            online.compute_and_record(changed)
        assert info.value.field == "transaction_id"
    # Nothing was recorded or journaled for the conflicts.
    assert sum(p.stat().st_size for p in journal) == size and len(store) == 1
    peek = online.compute(tx(2, START + timedelta(hours=1), amount=30.0))
    assert peek["customer_nb_tx_1d"] == 2 and peek["customer_avg_amount_1d"] == 20.0
    assert online.compute(tx(3, START, customer=2))["customer_nb_tx_1d"] == 1
    store.close()


def test_the_fingerprint_covers_the_whole_record_in_a_canonical_form() -> None:
    a = {"transaction_id": 1, "amount": 10.0, "extra": [1, 2]}
    assert record_digest(a) == record_digest(dict(reversed(list(a.items()))))
    assert record_digest(a) != record_digest(a | {"extra": [2, 1]})
    assert record_digest(a) != record_digest(a | {"amount": 10.5})
    # Values as given: the same value in another type is other content...
    assert record_digest(a) != record_digest(a | {"transaction_id": "1"})
    # ...and values orjson does not know still get a stable digest.
    ts = {"t": np.datetime64("2024-03-01T00:00:00.000000007"), "n": np.int64(3), 2: object}
    assert record_digest(ts) == record_digest(dict(ts))
    assert record_digest(ts) != record_digest(ts | {"t": np.datetime64("2024-03-01T00:00:00")})
    assert record_digest({"big": 2**70}) != record_digest({"big": 2**70 + 1})


def test_a_failing_request_changes_nothing() -> None:
    online = OnlineWindowFeatures(entity_key=KEY)
    online.compute_and_record(tx(1, START))
    for bad in (
        tx(2, START) | {"amount": float("nan")},
        tx(2, START) | {"timestamp": "not a time"},
        tx(2, START) | {"transaction_id": 2**64},
        tx(2, START) | {"customer_id": None},
        tx(2, START) | {"amount": 1e19},
    ):
        with pytest.raises(InputError):
            online.compute_and_record(bad)
    assert len(online.store) == 1  # type: ignore[arg-type]
    assert online.compute_and_record(tx(2, START))["customer_nb_tx_1d"] == 2


def test_extreme_accepted_values_never_break_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "state.snapshot"
    online = OnlineWindowFeatures(WindowConfig(), MemoryStateStore(path), entity_key=KEY)
    extremes = [
        tx(2**63 - 1, datetime(2262, 4, 11), customer=2**70, amount=1e18),
        tx(-(2**63), datetime(1677, 9, 22), customer="x" * 10_000, terminal=-1),
        tx(0, np.datetime64(-(2**63) + 1, "ns"), customer=1.5, terminal=float("inf")),  # type: ignore[arg-type]
        tx(5, np.datetime64(2**63 - 1, "ns"), customer="ünïcødé", terminal=""),  # type: ignore[arg-type]
    ]
    answers = [online.compute_and_record(r) for r in extremes]
    online.store.snapshot()
    online.add_label(2**63 - 1, True, datetime(2262, 4, 11))
    online.store.close()
    reopened = OnlineWindowFeatures(WindowConfig(), MemoryStateStore(path), entity_key=KEY)
    # Retries after the restart are recognised (same answers, nothing new).
    assert [reopened.compute_and_record(r) for r in extremes] == answers
    assert all(np.isfinite(list(a.values())).all() for a in answers)
    assert reopened.store.lookup(2**63 - 1) == (1, 9_223_286_400_000_000_000)  # type: ignore[attr-defined]
    reopened.store.snapshot()
    reopened.store.close()


def test_files_hold_only_keyed_hashes_and_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "features.snapshot"
    customer, terminal = 987_654_321_123, "TERM-XYZ-42"
    online = OnlineWindowFeatures(WindowConfig(), MemoryStateStore(path), entity_key=KEY)
    online.compute_and_record(tx(1, START, customer=customer, terminal=terminal))  # type: ignore[arg-type]
    journal_only = path.parent / "journal-copy"
    journal_only.write_bytes(b"".join(p.read_bytes() for p in path.parent.glob("*.journal.*")))
    online.store.snapshot()
    online.compute_and_record(tx(2, START, customer=customer, terminal=terminal))  # type: ignore[arg-type]
    files = [p for p in path.parent.iterdir() if p != journal_only]
    assert {p.name for p in files} >= {path.name}
    for p in [*files, journal_only]:
        blob = p.read_bytes()
        assert blob, p.name  # each holds the entity (so the check has teeth)
        assert str(customer).encode() not in blob and terminal.encode() not in blob
        assert online.entity_digest(customer).encode() in blob
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o600, p.name
    assert path.parent.stat().st_mode & 0o077 == 0
    # The digest depends on the key: another key, other digests.
    other = OnlineWindowFeatures(entity_key=b"another key")
    assert other.entity_digest(customer) != online.entity_digest(customer)
    assert online.entity_digest(42) == online.entity_digest("42") == online.entity_digest(42.0)
    assert online.entity_digest(np.int64(42)) == online.entity_digest(42)
    online.store.close()


def test_ping_and_close() -> None:
    store = MemoryStateStore()
    assert store.ping() is True
    store.close()
    store.close()  # twice is fine


def test_a_batch_is_all_or_nothing_for_conflicts_and_bad_input(tmp_path: Path) -> None:
    store = MemoryStateStore(tmp_path / "state.snapshot")
    online = OnlineWindowFeatures(WindowConfig(), store, entity_key=KEY)
    online.compute_and_record(tx(1, START, amount=10.0))
    journal = sorted(tmp_path.glob("state.snapshot.journal.*"))
    size = sum(p.stat().st_size for p in journal)
    good = [tx(k, START + timedelta(minutes=k), amount=float(k)) for k in range(2, 6)]
    for bad in (
        tx(1, START, amount=99.0),  # known id, other content
        tx(3, START, amount=1.0),  # repeated in the batch with other content
        tx(6, START) | {"amount": "a lot"},  # invalid
    ):
        with pytest.raises((DuplicateTransactionError, InputError)):
            online.compute_and_record_many([*good, bad])
    assert len(store) == 1 and sum(p.stat().st_size for p in journal) == size
    # Valid: in order, later records see earlier ones, a repeat counts once.
    records = [*good, good[0], tx(1, START, amount=10.0)]
    batch = online.compute_and_record_many(records)
    one_by_one = OnlineWindowFeatures(WindowConfig(), MemoryStateStore(), entity_key=KEY)
    one_by_one.compute_and_record(tx(1, START, amount=10.0))
    assert batch == [one_by_one.compute_and_record(r) for r in records]
    assert len(store) == 5 and batch[-1]["customer_nb_tx_1d"] == 1
    store.close()
    assert len(MemoryStateStore(tmp_path / "state.snapshot")) == 5


def test_v1_snapshots_with_raw_ids_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "features.snapshot"
    path.write_bytes(b'{"version": 1, "customers": {"987654321": [[1], [1], [1.0]]}}')
    store = MemoryStateStore(path)
    assert len(store) == 0 and not store._state.series
    store.close()  # the new snapshot replaces it
    assert b"987654321" not in path.read_bytes()


@pytest.mark.parametrize("version", [2, 3])
def test_snapshots_of_the_fixed_customer_terminal_state_are_refused(
    tmp_path: Path, version: int
) -> None:
    """The state before declared aggregates (one customer and one terminal
    history, keys that do not say their column) is never misread as the new
    one: opening it fails, naming the file and what to do."""
    path = tmp_path / "features.snapshot"
    old = {"version": version, "journal_seq": 0, "writes": 1, "tx": {},
           "customers": {"ab" * 16: [[1], [1], [1.0], 0.0]},
           "terminals": {"cd" * 16: [[1], [1], 0.0]}}
    path.write_bytes(orjson.dumps(old))
    with pytest.raises(ValueError, match=f"{path}.*version {version}.*start the online state"):
        MemoryStateStore(path)
    assert orjson.loads(path.read_bytes()) == old  # left as it was


def test_a_journal_of_the_fixed_customer_terminal_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "features.snapshot"
    segment = path.with_name(path.name + ".journal.0000000000")
    segment.write_bytes(orjson.dumps(["r", 1, 0, "ab" * 16, "cd" * 16, 1.0, "f", 10, 20]) + b"\n")
    with pytest.raises(ValueError, match="older state format"):
        MemoryStateStore(path)
    assert segment.stat().st_size > 0
