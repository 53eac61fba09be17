"""The memory store's state and the rules that change it: one KeySeries per
(entity, key digest), the transaction index, recording, labels, pruning and
the idle sweep. No locking, no durability (gendetect.features.state.memory).

An event is recorded in each of its keys' histories that can still hold it
(its time after that key's newest time minus the entity's horizon); an
event none of them can hold is answered but not recorded. The transaction
index (late labels, retries) holds an id exactly as long as some history
holds its event: each entry lists the series keys holding it, and pruning
or the sweep takes keys off; the entry goes with the last one.

What the journal and the snapshot hold is this module's `Part` form: per
history that may hold the event, (series key, horizon, values, distinct
digests), so that a replay makes the same decisions without the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gendetect.features.state.answer import with_extra
from gendetect.features.state.model import UNKNOWN_LABEL, TxEvent, event_key
from gendetect.features.state.plan import AggregatePlan
from gendetect.features.state.series import KeySeries

# (series key, horizon ns, {column: value}, {distinct column: digest})
Part = tuple[str, int, dict[str, float], dict[str, str | None]]
# id -> [time, fingerprint, label, labelled_at, [series keys holding it]]
TxIndex = dict[int, list[Any]]


def parts_of(event: TxEvent, plan: AggregatePlan) -> list[Part]:
    """The histories `event` goes into (its present keys), with what each keeps."""
    out = []
    for i, key in enumerate(event.keys):
        if key is None:
            continue
        values = {c: event.values[j] for c, j in plan.entity_values[i]}
        distinct = {c: event.distinct[j] for c, j in plan.entity_distinct[i]}
        out.append((key, plan.horizons[i], values, distinct))
    return out


class MemoryState:
    # Entities not written to for longer than their horizon plus
    # IDLE_MARGIN_SECONDS of wall-clock time are dropped, every SWEEP_EVERY
    # recorded events.
    SWEEP_EVERY = 20_000
    IDLE_MARGIN_SECONDS = 86_400.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.series: dict[str, KeySeries] = {}
        self.tx: TxIndex = {}
        self.writes = 0

    def retains(self, time_ns: int, parts: Sequence[Part]) -> bool:
        """Whether any of the histories can still hold an event at time_ns."""
        for key, horizon, _, _ in parts:
            s = self.series.get(key)
            newest = s.newest_time if s is not None else None
            if newest is None or time_ns > newest - horizon:
                return True
        return False

    def record(self, tid: int, t: int, fingerprint: str, parts: Sequence[Part]) -> bool:
        """Apply a new event (its id not indexed). Never raises for a checked
        event: the journal already holds it. Returns whether any history
        holds it."""
        now = self.clock()
        held: list[str] = []
        for key, horizon, values, distinct in parts:
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = KeySeries()
            # Written to even when the event is too old for it (as Redis
            # renews the key's expiry): the key is in use.
            s.written_at = now
            s.horizon_ns = horizon
            times = s.times
            newest = times[-1] if len(times) > s.start else None
            if newest is None or t > newest - horizon:
                s.insert(t, tid, values, distinct)
                held.append(key)
                cutoff = (t if newest is None else max(t, newest)) - horizon
                for gone in s.prune(cutoff):
                    self._release(gone, key)
        if not held:
            return False
        self.tx[tid] = [t, fingerprint, UNKNOWN_LABEL, 0, held]
        self.writes += 1
        if self.writes % self.SWEEP_EVERY == 0:
            self.sweep()
        return True

    def _release(self, tid: int, key: str) -> None:
        entry = self.tx.get(tid)
        if entry is None:
            return
        holders: list[str] = entry[4]
        if key in holders:
            holders.remove(key)
        if not holders:
            del self.tx[tid]

    def label(self, tid: int, is_fraud: bool, labelled_at_ns: int) -> None:
        entry = self.tx[tid]
        key = event_key(entry[0], tid)
        for holder in entry[4]:
            self.series[holder].set_fraud(key, labelled_at_ns, is_fraud,
                                          was_fraud=entry[2] == 1, was_at=entry[3])
        entry[2], entry[3] = int(is_fraud), labelled_at_ns

    def sweep(self) -> None:
        """Drop the histories idle for longer than their horizon plus the
        margin, in wall-clock time since they were last written to, and the
        empty ones. Never by event time: other keys' events, however many and
        however recent, do not make a history stale (a replay of last year's
        data keeps its windows)."""
        now = self.clock()
        stale = [
            k for k, s in self.series.items()
            if s.written_at < now - (s.horizon_ns / 1e9 + self.IDLE_MARGIN_SECONDS)
            or s.newest_time is None
        ]
        for key in stale:
            s = self.series.pop(key)
            for tid in s.ids[s.start :]:
                self._release(tid, key)

    def histories(self, event: TxEvent, plan: AggregatePlan,
                  extra: Sequence[TxEvent] = ()) -> list[KeySeries | None]:
        """The event's keys' histories, with `extra` (unrecorded events)
        added to copies of those they share a key with."""
        out = [self.series.get(k) if k is not None else None for k in event.keys]
        return with_extra(out, event, plan, extra) if extra else out

    def counts(self) -> Iterator[int]:
        yield len(self.series)
        yield len(self.tx)
