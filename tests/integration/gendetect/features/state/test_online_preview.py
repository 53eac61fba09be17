"""Preview, then record or discard (the API's order with its audit on): the
previewed features equal those of recording one by one, a preview changes
nothing in the store, a discarded one leaves no trace, and previews still in
flight count for concurrent requests of the same customer. In the memory
store and in a real Redis. Fingerprints kept by the state are keyed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import timezone as tz
from typing import Any

import numpy as np
import pytest

from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore, RedisStateStore, StateStore
from gendetect.keyed_hash import RecordFingerprint, record_digest
from gendetect.schema import load_schema
from tests.integration.gendetect.features.state.test_state_redis import _connect
from tests.records import tx

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 12, 0, 0)
KEY = b"preview-test-key"


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[RedisStateStore] = []

    def make() -> StateStore:
        if request.param == "memory":
            return MemoryStateStore()
        store = _connect(f"gendetect-test-{uuid.uuid4().hex[:12]}")
        made.append(store)
        return store

    yield make
    for store in made:
        store.clear()
        store.close()


def _stream(n: int, seed: int) -> list[dict[str, Any]]:
    """Few customers and terminals, tied and out-of-order times."""
    rng = np.random.default_rng(seed)
    return [tx(int(rng.integers(0, 10**6)) * 100 + i,
               START + timedelta(hours=int(rng.integers(0, 72)), minutes=int(rng.integers(0, 3))),
               customer=int(rng.integers(0, 4)), terminal=int(rng.integers(0, 3)),
               amount=float(rng.integers(1, 5000)) / 4)
            for i in range(n)]


def test_a_preview_equals_recording_one_by_one(make_store: Any) -> None:
    history, batch = _stream(40, 1), _stream(25, 2)
    batch.insert(7, batch[3])  # the same transaction twice in one batch
    batch.insert(12, history[5])  # a retry of a stored one
    recorded = OnlineWindowFeatures(store=make_store(), entity_key=KEY)
    previewed = OnlineWindowFeatures(store=make_store(), entity_key=KEY)
    for online in (recorded, previewed):
        online.compute_and_record_many(history)
    want = recorded.compute_and_record_many(batch)
    probe = tx(99, START + timedelta(days=2), customer=1, terminal=1)
    before = previewed.compute(probe)
    preview = previewed.preview(batch)
    for got, expected in zip(preview.features, want, strict=True):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert previewed.compute(probe) == before  # nothing recorded by a preview
    previewed.record(preview)
    assert previewed.compute(probe) == pytest.approx(recorded.compute(probe), rel=1e-12)


def test_a_discarded_preview_leaves_no_trace(make_store: Any) -> None:
    online = OnlineWindowFeatures(store=make_store(), entity_key=KEY)
    online.compute_and_record(tx(1, START, customer=5, terminal=6))
    probe = tx(50, START + timedelta(hours=2), customer=5, terminal=6)
    before = online.compute(probe)
    failed = online.preview([tx(2, START + timedelta(hours=1), customer=5, terminal=6,
                                amount=999.0)])
    assert failed.features[0]["customer_nb_tx_1d"] == 2
    online.discard(failed)
    assert online.compute(probe) == before
    # The refused transaction id is free: other content is not a conflict.
    online.compute_and_record(tx(2, START + timedelta(hours=1), customer=5, terminal=6))


def test_previews_in_flight_count_for_each_other(make_store: Any) -> None:
    online = OnlineWindowFeatures(store=make_store(), entity_key=KEY)
    first = online.preview([tx(1, START, customer=7, terminal=8, amount=100.0)])
    second = online.preview([tx(2, START + timedelta(minutes=1), customer=7, terminal=9,
                                amount=50.0)])
    seen = second.features[0]
    assert seen["customer_nb_tx_1d"] == 2
    assert seen["customer_avg_amount_1d"] == pytest.approx(75.0)
    online.discard(first)
    online.record(second)
    third = online.preview([tx(3, START + timedelta(minutes=2), customer=7, terminal=8)])
    assert third.features[0]["customer_nb_tx_1d"] == 2  # second, itself
    assert third.features[0]["terminal_nb_tx_1d"] == 0  # delayed windows
    online.discard(third)


def test_fingerprints_at_rest_are_keyed(tmp_path: Any) -> None:
    """An unkeyed digest of a record kept next to its time and amount gives
    the ids back to a brute-force search: the journal keeps keyed ones."""
    record = tx(1, START, customer=3141, terminal=2718)
    store = MemoryStateStore(snapshot_path=tmp_path / "state")
    OnlineWindowFeatures(store=store, entity_key=KEY).compute_and_record(record)
    store.close()
    at_rest = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert record_digest(record).encode() not in at_rest
    assert record_digest(record, KEY).encode() in at_rest


def test_one_identity_whatever_the_spelling() -> None:
    identity = RecordFingerprint.for_schema(load_schema("transactions"), KEY)
    base = {"transaction_id": 1, "timestamp": datetime(2024, 3, 1, 10),
            "customer_id": 990001, "terminal_id": "T-1", "amount": 42.0}
    same = [
        {**base, "customer_id": "990001"},
        {**base, "customer_id": 990001.0},
        {**base, "amount": 42},
        {**base, "timestamp": datetime(2024, 3, 1, 10, tzinfo=UTC)},
        {**base, "timestamp": datetime(2024, 3, 1, 11, tzinfo=tz(timedelta(hours=1)))},
    ]
    for other in same:
        assert identity.digest(other) == identity.digest(base), other
    for other in ({**base, "amount": 42.5}, {**base, "customer_id": 990002},
                  {**base, "timestamp": datetime(2024, 3, 1, 10, 0, 1)}):
        assert identity.digest(other) != identity.digest(base), other
    assert RecordFingerprint.for_schema(load_schema("transactions"), b"other").digest(base) \
        != identity.digest(base)
