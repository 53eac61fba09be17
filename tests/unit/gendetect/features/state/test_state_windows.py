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

from gendetect.errors import InputError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import Horizons, MemoryStateStore, TxEvent, WindowPlan, bounds_of
from gendetect.features.state.series import CustomerSeries, TerminalSeries
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


def test_compaction_keeps_sums_and_bounds_memory() -> None:
    customer = CustomerSeries()
    window = 100
    for k in range(5000):
        customer.insert(k, k, float(k % 7))
        customer.prune(k - window)
        # Dead entries stay below half (plus a small minimum) of the list.
        assert customer.start <= max(len(customer.times) // 2, CustomerSeries.COMPACT_MIN)
    counts, sums = customer.window_sums(4999, 4999, 0.0, bounds_of([(window, None)]))
    assert counts == [window] and sums == [float(sum(k % 7 for k in range(4900, 5000)))]
    # Exact sums: a huge amount long gone leaves no rounding behind, and one
    # still held does not swamp the small ones.
    customer = CustomerSeries()
    for k, amount in enumerate([1e18, 0.1, 0.2, 1e-3, 0.3]):
        customer.insert(k, k, amount)
    counts, sums = customer.window_sums(4, 4, 0.0, bounds_of([(4, None), (10, None)]))
    assert counts == [4, 5] and sums[1] == 1e18  # 1e18 + 0.601, correctly rounded
    assert sums[0] == float(sum(map(Fraction, [0.1, 0.2, 1e-3, 0.3])))
    assert len(customer.times) < 2 * window + CustomerSeries.COMPACT_MIN
    assert len(customer.pre) == len(customer.times) + 1


def test_terminal_compaction_drops_labels_of_pruned_events() -> None:
    terminal = TerminalSeries()
    for k in range(200):
        terminal.insert(k, k)
        if k % 3 == 0:
            terminal.set_fraud((k << 64) + k + 2**63, k, True, was_fraud=False, was_at=0)
        terminal.prune(k - 50)
    assert len(terminal.fraud_keys) <= len(terminal.times)
    counts, frauds = terminal.window_counts(199, 10**6, bounds_of([(60, None)]))
    # Events 150..199 are held (time > 149); frauds among them: multiples of 3.
    assert counts == [51] and frauds == [len([k for k in range(150, 200) if k % 3 == 0])]


def test_times_and_ids_at_the_int64_limits() -> None:
    store = MemoryStateStore()
    plan = WindowPlan(((10, None),), ((20, 5),), Horizons(10, 25))
    for tid, t in [(2**63 - 1, -(2**63)), (-(2**63), -(2**63)), (0, 2**63 - 1)]:
        sums = store.record_and_query(TxEvent(tid, t, "c", "m", 1.0, "f"), plan)
        assert sums.recorded and sums.customer_counts == (1,)
    # Beyond int64: refused before anything changes.
    for bad in (TxEvent(2**63, 0, "c", "m", 1.0), TxEvent(1, -(2**63) - 1, "c", "m", 1.0)):
        with pytest.raises(InputError):
            store.record_and_query(bad, plan)
    assert len(store) == 1  # only the last one is in its terminal's horizon


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
