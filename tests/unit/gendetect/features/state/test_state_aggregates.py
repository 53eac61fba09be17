"""Every declared aggregate kind online equals the offline engine: random
record streams, hostile ones included (ties at one timestamp, out-of-order
and far-apart times that prune, retries and conflicting duplicates, late,
changed and unknown labels, missing keys and values, pair keys, reads that
record nothing), fed to both state stores through OnlineWindowFeatures; each
answer must equal the offline engine's over what the store holds by its
documented rules (aggregate_reference), to 1e-9. Durability: a store
reopened from its journal alone, and from a snapshot plus journal, answers
exactly as the store that wrote them.

The Redis store runs against 127.0.0.1:6379 database 9 (GENDETECT_REDIS_URL
overrides it), a key prefix per example, when Redis answers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gendetect.aggregates import AggregateDeclaration
from gendetect.errors import DuplicateTransactionError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore, RedisStateStore, StateStore
from gendetect.timestamps import to_ns
from tests.unit.gendetect.features.state.aggregate_reference import Reference

REDIS_URL = os.environ.get("GENDETECT_REDIS_URL", "redis://127.0.0.1:6379/9")
HOUR = 3600 * 10**9
BASE = to_ns("2024-03-01T00:00:00")
EVERY_KIND = ["count", "first_seen", "label_rate", "since_previous",
              *({"kind": k, "of": "amount"} for k in ("sum", "mean", "std", "min", "max",
                                                      "zscore")),
              {"kind": "distinct", "of": "category"}]
DECLARATION = AggregateDeclaration.from_list(
    [
        {"key": "customer_id", "windows": ["3h", "1d"], "features": EVERY_KIND},
        {"key": "merchant_id", "windows": ["6h", "2d"], "delay": "1d",
         "features": [*EVERY_KIND, {"kind": "distinct", "of": "customer_id"},
                      {"kind": "mean", "of": "score"}]},
        {"key": ["customer_id", "merchant_id"], "windows": ["1d"], "name": "pair",
         "features": ["count", "first_seen", "label_rate", {"kind": "std", "of": "score"},
                      "since_previous"]},
        {"key": "device_id", "horizon": "12h", "features": ["since_previous"]},
        # A second group over the customer: its history keeps the longer horizon.
        {"key": "customer_id", "windows": ["2d"], "name": "customer_long",
         "features": [{"kind": "max", "of": "score"}, "count"]},
    ],
    entity_columns=["customer_id", "merchant_id", "device_id"],
    numeric_columns=["amount", "score"],
    all_columns=["customer_id", "merchant_id", "device_id", "amount", "score", "category"],
    has_label=True,
)

FAR_TIMES = [to_ns("1969-12-31T23:00:00"), BASE - 30 * 24 * HOUR, BASE + 365 * 24 * HOUR]
hourly = st.integers(0, 24 * 4).map(lambda h: BASE + h * HOUR)
seconds = st.integers(0, 4 * 86_400).map(lambda s: BASE + s * 10**9 + 7)
times = st.integers(0, 19).flatmap(
    lambda r: st.sampled_from(FAR_TIMES) if r == 0 else hourly if r < 12 else seconds)
ids = st.one_of(st.integers(0, 30), st.sampled_from([2**63 - 1, -(2**63)]))
maybe = st.sampled_from([False, False, False, True])  # a value missing one time in 4
amounts = st.one_of(st.sampled_from([0.0, 1.0, 10.5, 99.99, 1e6]),
                    st.floats(0.0, 1e5, allow_nan=False, width=32))


@st.composite
def records(draw: Any) -> dict[str, Any]:
    rec = {"transaction_id": draw(ids), "timestamp": draw(times),
           "customer_id": draw(st.integers(0, 2)), "merchant_id": draw(st.integers(0, 1)),
           "device_id": draw(st.integers(0, 1)), "amount": draw(amounts),
           "score": draw(st.sampled_from([0.5, 2.0, 3.25])),
           "category": draw(st.sampled_from(["a", "b", "c"]))}
    for name in ("merchant_id", "device_id", "amount", "score", "category"):
        if draw(maybe):
            rec[name] = None
    return rec


operations = st.one_of(
    st.tuples(st.just("record"), records()),
    st.tuples(st.just("record"), records()),
    st.tuples(st.just("record"), records()),
    st.tuples(st.just("retry"), st.integers(0, 10**6)),
    st.tuples(st.just("conflict"), st.integers(0, 10**6)),
    st.tuples(st.just("peek"), records()),
    st.tuples(st.just("label"), ids, st.booleans(), times),
    st.tuples(st.just("label_near"), st.integers(0, 10**6), st.sampled_from([True, True, False]),
              st.integers(-12, 60)),
    st.tuples(st.just("label_near"), st.integers(0, 10**6), st.sampled_from([True, True, False]),
              st.integers(-12, 60)),
)
streams = st.lists(operations, min_size=8, max_size=40)


def _as_record(rec: dict[str, Any]) -> dict[str, Any]:
    return rec | {"timestamp": np.datetime64(rec["timestamp"], "ns")}


def _assert_equal(got: dict[str, float], want: list[float], where: str) -> None:
    assert sorted(got) == sorted(DECLARATION.feature_names)
    np.testing.assert_allclose([got[name] for name in DECLARATION.feature_names], want,
                               rtol=1e-9, atol=1e-9, err_msg=where)


def run_stream(store: StateStore, ops: list[tuple[Any, ...]]) -> OnlineWindowFeatures:
    online = OnlineWindowFeatures(DECLARATION, store, entity_key=b"aggregate-test")
    ref = Reference(DECLARATION)
    seen: list[dict[str, Any]] = []
    for step, op in enumerate(ops):
        kind, where = op[0], f"step {step}: {op}"
        if kind in ("retry", "conflict", "label_near") and not seen:
            continue
        if kind in ("record", "retry", "conflict", "peek"):
            rec = op[1] if kind in ("record", "peek") else seen[op[1] % len(seen)]
            if kind == "conflict":
                rec = rec | {"category": "z"}
            want = ref.record(rec, store=kind != "peek")
            if want is None:
                with pytest.raises(DuplicateTransactionError):
                    online.compute_and_record(_as_record(rec))
                continue
            if kind == "peek":
                got = online.compute(_as_record(rec))
            else:
                got = online.compute_and_record(_as_record(rec))
                seen.append(rec)
            _assert_equal(got, want, where)
        else:
            if kind == "label":
                tid, fraud, at = op[1], op[2], op[3]
            else:
                rec = seen[op[1] % len(seen)]
                tid, fraud, at = rec["transaction_id"], op[2], rec["timestamp"] + op[3] * HOUR
            assert online.add_label(tid, fraud, np.datetime64(at, "ns")) == ref.label(
                tid, fraud, at), where
    return online


PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(streams)
def test_memory_store_answers_every_kind_as_the_offline_engine(ops: list) -> None:
    run_stream(MemoryStateStore(), ops)


@pytest.fixture(scope="module")
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.mark.integration
@PROPERTY
@given(ops=streams)
def test_redis_store_answers_every_kind_as_the_offline_engine(redis_client: Any,
                                                              ops: list) -> None:
    store = RedisStateStore(prefix=f"gendetect-agg-{uuid.uuid4().hex[:12]}", client=redis_client)
    try:
        run_stream(store, ops)
    finally:
        store.clear()


def _reads(online: OnlineWindowFeatures) -> list[list[float]]:
    """Reads over the whole grid of keys and times: what a restored store
    must answer exactly as the one that wrote it."""
    out = []
    for c in range(3):
        for m in (0, 1, None):
            for h in range(0, 24 * 4, 7):
                rec = {"transaction_id": 10**6, "timestamp": np.datetime64(BASE + h * HOUR, "ns"),
                       "customer_id": c, "merchant_id": m, "device_id": 1, "amount": 5.0,
                       "score": 1.0, "category": "a"}
                out.append(list(online.compute(rec).values()))
    return out


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=streams, cut=st.integers(0, 40))
def test_journal_replay_and_snapshot_restore_answer_the_same(
    tmp_path_factory: pytest.TempPathFactory, ops: list, cut: int
) -> None:
    path = tmp_path_factory.mktemp("state") / "features.snapshot"
    store = MemoryStateStore(path)
    online = run_stream(store, ops[:cut])
    store.snapshot()  # then more, in the journal only
    for op in ops[cut:]:
        if op[0] == "record":
            with contextlib.suppress(DuplicateTransactionError):
                online.compute_and_record(_as_record(op[1]))
        elif op[0] == "label":
            online.add_label(op[1], op[2], np.datetime64(op[3], "ns"))
    want = _reads(online)
    replayed = MemoryStateStore(path)  # snapshot + journal, as after a kill
    got = _reads(OnlineWindowFeatures(DECLARATION, replayed, entity_key=b"aggregate-test"))
    np.testing.assert_array_equal(np.array(got), np.array(want))
    replayed.close()  # a final snapshot holds everything
    store.close()
    restored = MemoryStateStore(path)
    got = _reads(OnlineWindowFeatures(DECLARATION, restored, entity_key=b"aggregate-test"))
    np.testing.assert_array_equal(np.array(got), np.array(want))
    restored.close()


def test_a_missing_key_is_nan_and_in_no_window() -> None:
    online = OnlineWindowFeatures(DECLARATION, MemoryStateStore())
    rec = {"transaction_id": 1, "timestamp": np.datetime64(BASE, "ns"), "customer_id": 1,
           "merchant_id": None, "device_id": 1, "amount": 3.0, "score": None, "category": "a"}
    got = online.compute_and_record(rec)
    merchant = [n for n in got if n.startswith(("merchant_id_", "pair_"))]
    assert merchant and all(np.isnan(got[n]) for n in merchant)
    assert got["customer_id_count_3h"] == 1.0 and got["customer_id_mean_amount_3h"] == 3.0
    later = rec | {"transaction_id": 2, "merchant_id": 7,
                   "timestamp": np.datetime64(BASE + 2 * 86_400 * 10**9, "ns")}
    got = online.compute_and_record(later)
    assert got["merchant_id_count_2d"] == 0.0 and got["pair_first_seen_1d"] == 1.0


def test_files_hold_no_raw_values_of_keys_or_distinct_columns(tmp_path: Path) -> None:
    path = tmp_path / "features.snapshot"
    online = OnlineWindowFeatures(DECLARATION, MemoryStateStore(path), entity_key=b"k")
    online.compute_and_record({"transaction_id": 1, "timestamp": np.datetime64(BASE, "ns"),
                               "customer_id": 987654321, "merchant_id": 123456789,
                               "device_id": 55555555, "amount": 1.0, "score": 1.0,
                               "category": "secret-category"})
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("*.journal.*"))
    online.store.close()
    for data in (journal, path.read_bytes()):
        for raw in (b"987654321", b"123456789", b"55555555", b"secret-category"):
            assert raw not in data


def check_previews(store: StateStore, recs: list[dict[str, Any]]) -> None:
    """Each record previewed on its own while the earlier previews are still
    in flight (concurrent requests) gets the features it gets recorded in
    turn; recording the previews then leaves the state the records make."""
    recorded = OnlineWindowFeatures(DECLARATION, MemoryStateStore())
    want = [recorded.compute_and_record(_as_record(r)) for r in recs]
    online = OnlineWindowFeatures(DECLARATION, store)
    previews = [online.preview([_as_record(r)]) for r in recs]
    for preview, expected in zip(previews, want, strict=True):
        np.testing.assert_allclose(list(preview.features[0].values()), list(expected.values()),
                                   rtol=1e-12, atol=1e-12)
    for preview in previews:
        online.record(preview)
    probe = recs[-1] | {"transaction_id": 10**6}
    np.testing.assert_array_equal(list(online.compute(_as_record(probe)).values()),
                                  list(recorded.compute(_as_record(probe)).values()))


PREVIEWS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
distinct_records = st.lists(records(), min_size=1, max_size=12,
                            unique_by=lambda r: r["transaction_id"])


@PREVIEWS
@given(distinct_records)
def test_previews_in_flight_count_as_recorded_events(recs: list[dict[str, Any]]) -> None:
    check_previews(MemoryStateStore(), recs)


@pytest.mark.integration
@PREVIEWS
@given(recs=distinct_records)
def test_previews_in_flight_count_as_recorded_events_redis(redis_client: Any,
                                                           recs: list[dict[str, Any]]) -> None:
    store = RedisStateStore(prefix=f"gendetect-agg-{uuid.uuid4().hex[:12]}", client=redis_client)
    try:
        check_previews(store, recs)
    finally:
        store.clear()


@pytest.mark.integration
@PREVIEWS
@given(history=distinct_records,
       picks=st.lists(st.one_of(records(), st.integers(0, 100)), min_size=1, max_size=10))
def test_redis_previews_over_a_history_answer_as_the_memory_store(
    redis_client: Any, history: list[dict[str, Any]], picks: list[Any]
) -> None:
    """Previews kept in flight over a recorded history, the same ids as held
    events (retries, other content) and as each other included: the Redis
    store adds them to its bounds exactly as the memory store adds them to
    its series (gendetect.features.state.answer.with_extra). An int picks a
    held record: a retry, in flight and held at once."""
    recs = [history[p % len(history)] if isinstance(p, int) else p for p in picks]
    store = RedisStateStore(prefix=f"gendetect-agg-{uuid.uuid4().hex[:12]}", client=redis_client)
    try:
        stores = (OnlineWindowFeatures(DECLARATION, MemoryStateStore()),
                  OnlineWindowFeatures(DECLARATION, store))
        for online in stores:
            online.compute_and_record_many([_as_record(r) for r in history])
        for step, rec in enumerate(recs):
            memory, redis = (online.preview([_as_record(rec)]).features[0] for online in stores)
            np.testing.assert_allclose(list(redis.values()), list(memory.values()), rtol=1e-12,
                                       atol=1e-12, err_msg=f"preview {step}: {rec}")
    finally:
        store.clear()
