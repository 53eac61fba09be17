"""The memory store's incremental window sums, case by case: labels that
arrive after a request's time (out-of-order requests and reads), label
changes, out-of-order events (the prefix sums rebuilt), compaction, and
values at the int64 limits. Each case is also checked against the offline
engine on the same events."""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from gendetect.aggregates import AggregateDeclaration, AggregateFeature, AggregateGroup
from gendetect.errors import InputError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import AggregatePlan, MemoryStateStore, TxEvent
from gendetect.features.state.answer import answer_event
from gendetect.features.state.series import KeySeries
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig
from gendetect.timestamps import to_ns
from tests.records import tx

T = datetime(2024, 3, 1)
DAY = timedelta(days=1)


def _offline_row(records: list[dict], labels: dict[int, int], config: WindowConfig) -> dict:
    """Offline features of the last record, over all of them, with the
    given (already known) labels."""
    df = pd.DataFrame(records)
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["is_fraud"] = [labels.get(t, 0) for t in df["transaction_id"]]
    out = add_window_features(df, config)
    return {name: float(out[name].iloc[-1]) for name in config.feature_names}


def test_an_out_of_order_request_ignores_labels_that_arrived_after_its_time() -> None:
    online = OnlineWindowFeatures()
    online.compute_and_record(tx(1, T + DAY, customer=1, terminal=9))
    online.compute_and_record(tx(2, T + 9 * DAY, customer=2, terminal=9))  # terminal's newest
    assert online.add_label(1, True, T + 8.5 * DAY)  # arrives before the newest time
    # At T + 8 d (older than the terminal's newest: out of order) the label
    # had not arrived yet; at T + 8.6 d it had.
    before = online.compute_and_record(tx(3, T + 8 * DAY, customer=3, terminal=9))
    after = online.compute_and_record(tx(4, T + 8.6 * DAY, customer=3, terminal=9))
    assert before["terminal_nb_tx_1d"] == 1 and before["terminal_risk_1d"] == 0.0
    assert after["terminal_nb_tx_1d"] == 1 and after["terminal_risk_1d"] == 1.0


def test_a_read_counts_labels_that_arrived_after_the_terminals_newest_time() -> None:
    online = OnlineWindowFeatures()
    online.compute_and_record(tx(1, T + DAY, terminal=9))
    assert online.add_label(1, True, T + 8.5 * DAY)  # later than anything recorded
    early = online.compute(tx(2, T + 8.4 * DAY, customer=5, terminal=9))
    late = online.compute(tx(2, T + 8.6 * DAY, customer=5, terminal=9))
    assert early["terminal_risk_1d"] == 0.0 and late["terminal_risk_1d"] == 1.0
    # Recording a later event applies the waiting label; still counted.
    recorded = online.compute_and_record(tx(3, T + 8.6 * DAY, customer=5, terminal=9))
    assert recorded["terminal_risk_1d"] == 1.0
    assert online.compute(tx(4, T + 8.4 * DAY, customer=5, terminal=9))["terminal_risk_1d"] == 0


def test_a_label_changed_or_withdrawn_counts_as_its_latest_value() -> None:
    online = OnlineWindowFeatures()
    online.compute_and_record(tx(1, T, terminal=9))
    online.compute_and_record(tx(2, T + DAY / 4, terminal=9))
    assert online.add_label(1, True, T + DAY)
    assert online.add_label(2, True, T + 20 * DAY)  # waits: after the newest time
    request = tx(3, T + 7.5 * DAY, customer=4, terminal=9)
    assert online.compute(request)["terminal_risk_1d"] == 0.5
    assert online.add_label(1, False, T + 2 * DAY)
    assert online.compute(request)["terminal_risk_1d"] == 0.0
    assert online.add_label(2, True, T + 3 * DAY)  # moved from waiting to applied
    assert online.compute(request)["terminal_risk_1d"] == 0.5
    assert online.add_label(1, True, T + 30 * DAY)  # now waiting, not yet arrived at 7.5 d
    assert online.compute(request)["terminal_risk_1d"] == 0.5


def test_out_of_order_events_rebuild_the_prefix_sums_exactly() -> None:
    config = WindowConfig(customer_windows_days=(1, 2), terminal_windows_days=(1,), delay_days=1)
    online = OnlineWindowFeatures(config)
    rng = np.random.default_rng(7)
    records = []
    # Seconds, shuffled (most arrive out of order), all within the horizons
    # (2 days), so that the offline engine over all of them is the reference.
    offsets = rng.permutation(300) * 500
    for k, seconds in enumerate(offsets):
        rec = tx(k, T + timedelta(seconds=int(seconds)), amount=float(rng.gamma(2.0, 30.0)))
        got = online.compute_and_record(rec)
        records.append(rec)
        # The offline engine over the events so far, the new one last.
        want = _offline_row(records, {}, config)
        for name in config.feature_names:
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-9), (k, name)


def _plan(*groups: tuple[str, tuple[int, ...], int, tuple[str, ...]]) -> AggregatePlan:
    """A plan of groups (key column, windows, delay, kinds); `of` is amount."""
    out = []
    for key, windows, delay, kinds in groups:
        features = tuple(
            AggregateFeature(f"{key}_{kind}_{w}", kind, "amount" if kind == "sum" else None, w)
            for w in windows for kind in kinds)
        out.append(AggregateGroup((key,), windows, features, delay, key, key,
                                  delay + max(windows)))
    return AggregatePlan.of(AggregateDeclaration(tuple(out)))


def _read(series: KeySeries, plan: AggregatePlan, t: int, tid: int) -> tuple[float, ...]:
    return answer_event(plan, TxEvent(tid, t, ("k",), (float("nan"),) * len(plan.value_columns)),
                        [series])


def test_compaction_keeps_sums_and_bounds_memory() -> None:
    series = KeySeries()
    window = 100
    plan = _plan(("c", (window,), 0, ("count", "sum")))
    for k in range(5000):
        series.insert(k, k, {"amount": float(k % 7)}, {})
        series.prune(k - window)
        # Dead entries stay below half (plus a small minimum) of the list.
        assert series.start <= max(len(series.times) // 2, KeySeries.COMPACT_MIN)
    # A read at the last event's (time, id): it is held, so counted once.
    count, total = _read(series, plan, 4999, 4999)
    assert count == window and total == float(sum(k % 7 for k in range(4900, 5000)))
    assert len(series.times) < 2 * window + KeySeries.COMPACT_MIN
    assert len(series.cols["amount"].s1) == len(series.times) + 1
    # Exact sums: a huge amount long gone leaves no rounding behind, and one
    # still held does not swamp the small ones.
    series = KeySeries()
    for k, amount in enumerate([1e18, 0.1, 0.2, 1e-3, 0.3]):
        series.insert(k, k, {"amount": amount}, {})
    count4, sum4, count10, sum10 = _read(series, _plan(("c", (4, 10), 0, ("count", "sum"))), 4, 4)
    assert (count4, count10) == (4, 5) and sum10 == 1e18  # 1e18 + 0.601, correctly rounded
    assert sum4 == float(sum(map(Fraction, [0.1, 0.2, 1e-3, 0.3])))


def test_compaction_drops_labels_of_pruned_events() -> None:
    series = KeySeries()
    for k in range(200):
        series.insert(k, k, {}, {})
        if k % 3 == 0:
            series.set_fraud((k << 64) + k + 2**63, k, True, was_fraud=False, was_at=0)
        series.prune(k - 50)
    assert len(series.fraud_keys) <= len(series.times)
    count, rate = _read(series, _plan(("m", (60,), 0, ("count", "label_rate"))), 199, 10**6)
    # Events 150..199 are held (time > 149); frauds among them: multiples of 3.
    assert count == 51
    assert rate == len([k for k in range(150, 200) if k % 3 == 0]) / 51


def test_times_and_ids_at_the_int64_limits() -> None:
    store = MemoryStateStore()
    plan = _plan(("c", (10,), 0, ("count",)), ("m", (20,), 5, ("count",)))
    for tid, t in [(2**63 - 1, -(2**63)), (-(2**63), -(2**63)), (0, 2**63 - 1)]:
        answer = store.record_and_query(TxEvent(tid, t, ("c:1", "m:1"), (), (), "f"), plan)
        assert answer.recorded and answer.features[0] == 1
    # Beyond int64: refused before anything changes.
    for bad in (TxEvent(2**63, 0, ("c:1", "m:1")), TxEvent(1, -(2**63) - 1, ("c:1", "m:1"))):
        with pytest.raises(InputError):
            store.record_and_query(bad, plan)
    # Only the last one is in a horizon (both keys moved on by 2**64 ns).
    assert len(store) == 1


def test_online_refuses_out_of_range_ids_and_times_naming_the_field() -> None:
    online = OnlineWindowFeatures()
    for field, value in [
        ("transaction_id", 2**63),
        ("transaction_id", "9" * 19 + "9"),
        ("transaction_id", "1" * 5000),
        ("timestamp", datetime(9999, 1, 1)),
        ("timestamp", 1e300),
        ("timestamp", np.datetime64("9999-01-01")),
    ]:
        with pytest.raises(InputError) as info:
            online.compute_and_record(tx(1, T) | {field: value})
        assert info.value.field == field
    with pytest.raises(InputError) as info:
        online.add_label(1, True, datetime(9999, 1, 1))
    assert info.value.field == "labelled_at"
    assert len(online.store) == 0  # type: ignore[arg-type]


def test_times_before_1970_work_like_any_other() -> None:
    config = WindowConfig()
    online = OnlineWindowFeatures(config)
    base = datetime(1969, 12, 25)
    records = [tx(k, base + timedelta(days=k), amount=float(k + 1)) for k in range(12)]
    for rec in records:
        got = online.compute_and_record(rec)
    assert to_ns(records[0]["timestamp"]) < 0
    want = _offline_row(records, {}, config)
    assert got == pytest.approx(want)
