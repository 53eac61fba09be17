"""A clock one record cannot move (memory store): a record dated a year ahead
prunes only its own customer's and terminal's history, expires only its own
terminal's label index, and does not move the idle-entity sweep's watermark
(the median of recent event times). Historical replays (2018) keep working.

The first test fails on the store as it was before (one global event-time
clock): the label posts after the future record got False and the other
entities' histories were cut."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from gendetect.features.online import OnlineWindowFeatures, replay
from gendetect.features.state import MemoryStateStore
from gendetect.features.windows import WindowConfig, add_window_features
from gendetect.timestamps import to_ns
from tests.records import tx

START = datetime(2018, 4, 1)  # the handbook's dates


def _traffic(online: OnlineWindowFeatures, n: int = 600) -> list[dict]:
    """Ten customers at five terminals, one transaction every hour."""
    records = [
        tx(k, START + timedelta(hours=k), customer=k % 10, terminal=k % 5, amount=float(k % 13))
        for k in range(n)
    ]
    for rec in records:
        online.compute_and_record(rec)
    return records


def test_a_future_record_moves_no_other_entitys_clock() -> None:
    store = MemoryStateStore()
    store.SWEEP_EVERY = 50  # the sweep runs right after the future record, too
    online = OnlineWindowFeatures(WindowConfig(), store)
    records = _traffic(online, 600)
    last = records[-1]["timestamp"]
    before = {c: online.compute(tx(10**6 + c, last, customer=c, terminal=99)) for c in range(10)}
    # One record a year ahead, for a customer and terminal of their own.
    online.compute_and_record(tx(10**5, last + timedelta(days=365), customer=77, terminal=88))
    for k in range(49):  # then ordinary traffic again, through a sweep
        online.compute_and_record(tx(2 * 10**5 + k, last, customer=50 + k, terminal=60 + k))
    # Every transaction still in its terminal's 37 days takes its label.
    recent = [r for r in records if r["timestamp"] > last - timedelta(days=37)]
    assert all(online.add_label(r["transaction_id"], True, last) for r in recent)
    # No other customer's history shrank.
    after = {c: online.compute(tx(10**6 + c, last, customer=c, terminal=99)) for c in range(10)}
    for c in range(10):
        assert after[c]["customer_nb_tx_30d"] == before[c]["customer_nb_tx_30d"] > 50


def test_a_future_record_of_a_known_entity_prunes_only_that_entity() -> None:
    online = OnlineWindowFeatures()
    records = _traffic(online, 300)
    last = records[-1]["timestamp"]
    ahead = last + timedelta(days=365)
    features = online.compute_and_record(tx(10**5, ahead, customer=0, terminal=0))
    assert features["customer_nb_tx_30d"] == 1 and features["terminal_nb_tx_30d"] == 0
    # Its own terminal's transactions left the label index with its history;
    # the other terminals' did not.
    for rec in records:
        assert online.add_label(rec["transaction_id"], False, last) == (rec["terminal_id"] != 0)
    other = online.compute(tx(10**6, last, customer=1, terminal=1))
    assert other["customer_nb_tx_30d"] == 30 + 1  # every 10th hour of 300, and itself


def test_the_sweep_uses_a_robust_watermark() -> None:
    store = MemoryStateStore()
    store.SWEEP_EVERY = 10**9  # swept by hand below
    online = OnlineWindowFeatures(WindowConfig(), store)
    horizons = online._horizons
    old = tx(10**7, START - timedelta(days=60), customer=1000, terminal=1000)
    online.compute_and_record(old)
    records = _traffic(online, 200)
    for k in range(3):  # a few records far ahead do not move the median
        online.compute_and_record(
            tx(10**5 + k, START + timedelta(days=400), customer=900 + k, terminal=900 + k)
        )
    mark = store.watermark()
    times = sorted(to_ns(r["timestamp"]) for r in records)
    assert mark is not None and abs(mark - times[len(times) // 2]) <= 3 * 3600 * 10**9
    store._sweep(horizons)
    # The entity quiet for 60 days is gone (and its transaction with it);
    # everyone else, the future ones included, is still there.
    assert online.entity_digest(1000) not in store._customers
    assert not online.add_label(10**7, True, START)
    assert len(store._customers) == 10 + 3 and len(store._terminals) == 5 + 3


def test_replaying_2018_history_matches_the_offline_engine(small_transactions) -> None:
    df = small_transactions.copy()
    df["timestamp"] = df["timestamp"] - (pd.Timestamp("2024-01-01") - pd.Timestamp(START))
    online = OnlineWindowFeatures(WindowConfig(), MemoryStateStore())
    live = replay(df, online)
    offline = add_window_features(df, online.config)
    for name in online.config.feature_names:
        assert (live[name] - offline[name]).abs().max() <= 1e-9, name
