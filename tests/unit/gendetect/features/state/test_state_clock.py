"""A clock one record cannot move (memory store): a record dated a year ahead
prunes only its own customer's and terminal's history, expires only its own
terminal's label index, and idle entities leave by the wall-clock time since
their last write, never because other entities' events are newer: volume at
today's dates does not sweep a customer replaying 2024 data. Historical
replays (2018) keep working.

The first test fails on the store as it was before (one global event-time
clock): the label posts after the future record got False and the other
entities' histories were cut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from gendetect.features.online import OnlineWindowFeatures, replay
from gendetect.features.state import MemoryStateStore
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig
from tests.records import tx

START = datetime(2018, 4, 1)  # the handbook's dates


def _held(store: MemoryStateStore, column: str) -> set[str]:
    """The digests of the keys of `column` the store holds a history for."""
    prefix = f"{column}:"
    return {k[len(prefix):] for k in store._state.series if k.startswith(prefix)}


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
    # Its own customer's and terminal's transactions left their histories;
    # those that no other history holds left the label index too (customer 5
    # also uses terminal 0 and still holds its own).
    for rec in records:
        gone = rec["terminal_id"] == 0 and rec["customer_id"] == 0
        assert online.add_label(rec["transaction_id"], False, last) == (not gone)
    other = online.compute(tx(10**6, last, customer=1, terminal=1))
    assert other["customer_nb_tx_30d"] == 30 + 1  # every 10th hour of 300, and itself


class _WallClock:
    """The store's wall clock, moved by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_sweep_drops_entities_idle_on_the_wall_clock() -> None:
    clock = _WallClock()
    store = MemoryStateStore(clock=clock)
    store.SWEEP_EVERY = 10**9  # swept by hand below
    online = OnlineWindowFeatures(WindowConfig(), store)
    config = online.config
    # Event times decide nothing: an entity 60 days behind the others, and
    # a few far ahead, are all kept while they were written recently.
    online.compute_and_record(tx(10**7, START - timedelta(days=60), customer=1000, terminal=1000))
    _traffic(online, 200)
    for k in range(3):
        online.compute_and_record(
            tx(10**5 + k, START + timedelta(days=400), customer=900 + k, terminal=900 + k)
        )
    store._state.sweep()
    customers, terminals = _held(store, "customer_id"), _held(store, "terminal_id")
    assert len(customers) == 1 + 10 + 3 and len(terminals) == 1 + 5 + 3
    # The customer's horizon (its longest window) plus the one-day margin
    # of wall-clock time later, only the entities written since are kept.
    clock.now += config.customer_horizon_ns / 1e9 + store.IDLE_MARGIN_SECONDS + 1
    online.compute_and_record(tx(10**8, START, customer=1, terminal=1))
    store._state.sweep()
    assert _held(store, "customer_id") == {online.entity_digest(1)}
    # Terminals keep longer (their horizon adds the label delay); past it the
    # idle ones go, and their transactions leave the id index with them.
    clock.now += (config.terminal_horizon_ns - config.customer_horizon_ns) / 1e9
    store._state.sweep()
    assert _held(store, "terminal_id") == {online.entity_digest(1)}
    assert not online.add_label(10**7, True, START)
    assert online.add_label(10**8, True, START)


REPLAY = datetime(2024, 5, 1)


def _replayed_customer(online: OnlineWindowFeatures) -> dict[str, float]:
    """103 records of one customer at one terminal, dated 2024 (a replay);
    returns the features of a read just after them."""
    for k in range(103):
        online.compute_and_record(
            tx(k + 1, REPLAY + timedelta(hours=k), customer=424242, terminal=4242, amount=k)
        )
    return online.compute(tx(10**9, REPLAY + timedelta(hours=103), customer=424242,
                             terminal=4242))


def _volume_today(online: OnlineWindowFeatures, n: int) -> None:
    """`n` records at the server's clock, for 5,000 other customers."""
    now = datetime.now(UTC).replace(tzinfo=None)
    for k in range(n):
        online.compute_and_record(
            tx(10**6 + k, now, customer=10**6 + k % 5000, terminal=10**6 + k % 500)
        )


def test_volume_at_today_does_not_sweep_a_replayed_customer() -> None:
    """The issue's case at its real scale (the sweep every 20,000 events):
    21,000 records at today's date after a customer's 103 records of 2024.
    The store as it was dropped every entity older than the median of recent
    event times minus the horizon: the 2024 customer kept 0 of its 103."""
    store = MemoryStateStore()
    assert store.SWEEP_EVERY == 20_000
    online = OnlineWindowFeatures(WindowConfig(), store)
    before = _replayed_customer(online)
    assert before["customer_nb_tx_7d"] == 103 + 1  # all of them in its week, and itself
    _volume_today(online, 21_000)
    assert store._state.writes >= 20_000  # the sweep ran
    after = online.compute(tx(10**9, REPLAY + timedelta(hours=103), customer=424242,
                              terminal=4242))
    assert after == before
    # Its transactions are still known (late labels, retries).
    assert all(online.add_label(k + 1, False, REPLAY + timedelta(days=5)) for k in range(103))


def test_an_entity_idle_on_the_wall_clock_is_still_swept_after_volume() -> None:
    """Memory stays bounded: the same volume, with the wall clock past the
    2024 customer's horizon plus the margin since its last write, drops it."""
    clock = _WallClock()
    store = MemoryStateStore(clock=clock)
    store.SWEEP_EVERY = 2_000
    online = OnlineWindowFeatures(WindowConfig(), store)
    _replayed_customer(online)
    clock.now += online.config.terminal_horizon_ns / 1e9 + store.IDLE_MARGIN_SECONDS + 1
    _volume_today(online, 2_000)
    assert online.entity_digest(424242) not in _held(store, "customer_id")
    assert online.entity_digest(4242) not in _held(store, "terminal_id")
    assert not online.add_label(1, True, REPLAY)
    assert len(_held(store, "customer_id")) == 2_000  # the ones written since are kept


def test_replaying_2018_history_matches_the_offline_engine(small_transactions) -> None:
    df = small_transactions.copy()
    df["timestamp"] = df["timestamp"] - (pd.Timestamp("2024-01-01") - pd.Timestamp(START))
    online = OnlineWindowFeatures(WindowConfig(), MemoryStateStore())
    live = replay(df, online)
    offline = add_window_features(df, online.config)
    for name in online.config.feature_names:
        assert (live[name] - offline[name]).abs().max() <= 1e-9, name
