"""Previewed transactions in flight: events that `OnlineWindowFeatures.preview`
has answered but the store has not recorded yet (gendetect.features.online),
held by customer and terminal so that concurrent previews count each other,
and the store's window sums with such unrecorded events added.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

from gendetect.features.state import TxEvent, WindowPlan, WindowSums
from gendetect.features.windows import Window


class InFlight:
    """Events previewed but neither recorded nor discarded yet, by customer
    and by terminal, for the previews of concurrent requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._batches: dict[int, list[TxEvent]] = {}
        self._customers: defaultdict[str, dict[int, list[TxEvent]]] = defaultdict(dict)
        self._terminals: defaultdict[str, dict[int, list[TxEvent]]] = defaultdict(dict)

    def add(self, events: list[TxEvent]) -> int:
        with self._lock:
            self._next += 1
            token = self._next
            self._batches[token] = events
            for e in events:
                self._customers[e.customer].setdefault(token, []).append(e)
                self._terminals[e.terminal].setdefault(token, []).append(e)
            return token

    def remove(self, token: int) -> None:
        with self._lock:
            for e in self._batches.pop(token, ()):
                for index, key in ((self._customers, e.customer), (self._terminals, e.terminal)):
                    entries = index.get(key)
                    if entries is not None:
                        entries.pop(token, None)
                        if not entries:
                            del index[key]

    def near(self, event: TxEvent, token: int) -> list[TxEvent]:
        """In-flight events of other previews that share `event`'s customer or
        terminal (usually none: the common case costs two lookups)."""
        if not self._batches or (len(self._batches) == 1 and token in self._batches):
            return []
        with self._lock:
            out: list[TxEvent] = []
            for index, key in ((self._customers, event.customer),
                               (self._terminals, event.terminal)):
                for other, events in index.get(key, {}).items():
                    if other != token:
                        out.extend(events)
            return out


def _inside(other: TxEvent, event: TxEvent, window: Window) -> bool:
    """Whether `other` falls in `window` of `event` (the store's definition,
    gendetect.features.windows.Window)."""
    start, end = window
    t = event.time_ns
    if other.time_ns <= t - start:
        return False
    if end is not None:
        return other.time_ns <= t - end
    return (other.time_ns, other.transaction_id) <= (t, event.transaction_id)


def with_unrecorded(
    sums: WindowSums, event: TxEvent, others: Iterable[TxEvent], plan: WindowPlan
) -> WindowSums:
    """`sums` (what the store answered for `event`) with unrecorded events
    added where they fall in the windows: each transaction once, never the
    request's own. They carry no labels, so fraud counts stay."""
    c_counts = c_sums = t_counts = None
    seen = {event.transaction_id}
    for other in others:
        if other.transaction_id in seen:
            continue
        seen.add(other.transaction_id)
        if other.customer == event.customer:
            if c_counts is None:
                c_counts, c_sums = list(sums.customer_counts), list(sums.customer_sums)
            assert c_sums is not None
            for k, window in enumerate(plan.customer):
                if _inside(other, event, window):
                    c_counts[k] += 1
                    c_sums[k] += other.amount
        if other.terminal == event.terminal:
            if t_counts is None:
                t_counts = list(sums.terminal_counts)
            for k, window in enumerate(plan.terminal):
                if _inside(other, event, window):
                    t_counts[k] += 1
    if c_counts is None and t_counts is None:
        return sums
    return sums._replace(
        customer_counts=tuple(c_counts) if c_counts is not None else sums.customer_counts,
        customer_sums=tuple(c_sums) if c_sums is not None else sums.customer_sums,
        terminal_counts=tuple(t_counts) if t_counts is not None else sums.terminal_counts,
    )
