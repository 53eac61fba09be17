"""One entity's recent events, and the window answers computed from them
(shared by both stores: the Redis store reuses the fixed-point sums).

Window sums (the store answers them; gendetect.features.online only turns
them into features). Per entity the store keeps its events sorted by
(time, transaction id), the order the offline engine breaks ties in. A
customer also keeps running prefix sums of its amounts, appended as its
history grows, so a window's count and amount sum are two binary searches
and a difference. The sums are exact: integers in units of 2**-64 (every
amount of magnitude 2**-12 or more is such a whole number), rounded to a
float once per answer, so no cancellation, order of additions or overflow
can make them drift from the offline engine's (whose own rounding is the
only difference left), however long an entity's history runs. A terminal
keeps its fraud labels' event times (and keys) in sorted lists, so a
window's fraud count is two more binary searches. The one subtle rule of
terminal risk, a label counts only if it had arrived by the request's time
(`labelled_at <= t`), is kept exact like this: labels with
`labelled_at` up to the terminal's newest event time are "applied" (in the
sorted list), later ones wait in a small list ordered by `labelled_at` and
are applied as the terminal's time passes them. A request at or after the
terminal's newest time (the common case) counts the applied labels plus the
waiting ones that arrived by then; an earlier request (an out-of-order
event) subtracts the applied labels that arrived after it, walking them
from the latest back: exact, and slower only for such requests. Events that
arrive out of order are inserted in place, which also rebuilds the
customer's prefix sums from that point: cheap for the usual slightly-late
event, O(history) only for one far older than the customer's newest.
Pruned events leave from the front by moving an offset; the lists are
compacted (and the prefix sums rebased to zero) once the pruned part is
half of them, so memory per entity stays within about twice what its
windows hold, and the cost is amortised O(1).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from itertools import accumulate
from math import ldexp
from typing import TypeVar

from gendetect.features.state.model import (
    KEY_SHIFT,
    OWN_ROW,
    Bounds,
    TxEvent,
    WindowPlan,
    WindowSums,
    event_key,
    time_bound,
)


class Series:
    """One entity's events sorted by (time, id): parallel lists, live from
    `start` on (pruned events sit before it until the next compaction)."""

    # written_at: wall-clock seconds of the entity's last write (the memory
    # store's idle sweep; never an event time).
    __slots__ = ("ids", "start", "times", "written_at")

    COMPACT_MIN = 32

    def __init__(self) -> None:
        self.times: list[int] = []
        self.ids: list[int] = []
        self.start = 0
        self.written_at = 0.0

    def __len__(self) -> int:
        return len(self.times) - self.start

    @property
    def newest_time(self) -> int | None:
        return self.times[-1] if len(self.times) > self.start else None

    def _slot(self, time_ns: int, tx_id: int) -> tuple[int, bool]:
        """Index just past the events <= (time, id), and whether the event
        itself is stored (at index - 1)."""
        times, ids = self.times, self.ids
        if times and times[-1] == time_ns and ids[-1] == tx_id:  # just appended
            return len(times), True
        lo = bisect_left(times, time_ns, self.start)
        hi = bisect_right(times, time_ns, lo)
        if lo == hi:
            return lo, False
        j = bisect_right(ids, tx_id, lo, hi)
        return j, j > lo and ids[j - 1] == tx_id

    def _insert_at(self, time_ns: int, tx_id: int) -> int:
        """Insert the (new) event in order; returns its index."""
        times, ids = self.times, self.ids
        if not times or time_ns > times[-1] or (time_ns == times[-1] and tx_id > ids[-1]):
            times.append(time_ns)
            ids.append(tx_id)
            return len(times) - 1
        i, _ = self._slot(time_ns, tx_id)
        times.insert(i, time_ns)
        ids.insert(i, tx_id)
        return i

    def _prune_to(self, cutoff_ns: int) -> int:
        """Drop events at or before `cutoff_ns`; returns the old start."""
        old = self.start
        self.start = bisect_right(self.times, cutoff_ns, old)
        return old

    def _should_compact(self) -> bool:
        return self.start >= self.COMPACT_MIN and 2 * self.start >= len(self.times)


def to_fixed(amount: float) -> int:
    """`amount` in units of 2**-64, exact for |amount| >= 2**-12 (else to
    the nearest unit)."""
    return round(math.ldexp(amount, 64))


def prefix_sums(amounts: list[float]) -> list[int]:
    return list(accumulate(map(to_fixed, amounts), initial=0))


class CustomerSeries(Series):
    __slots__ = ("amounts", "pre")

    def __init__(self) -> None:
        self.times = []
        self.ids = []
        self.start = 0
        self.written_at = 0.0
        self.amounts: list[float] = []
        # pre[i] = exact sum of amounts[:i] (since the last compaction), in
        # units of 2**-64.
        self.pre: list[int] = [0]

    def insert(self, time_ns: int, tx_id: int, amount: float) -> None:
        i = self._insert_at(time_ns, tx_id)
        if i == len(self.amounts):
            self.amounts.append(amount)
            self.pre.append(self.pre[-1] + to_fixed(amount))
            return
        self.amounts.insert(i, amount)
        tail = accumulate(map(to_fixed, self.amounts[i:]), initial=self.pre[i])
        next(tail)
        del self.pre[i + 1 :]
        self.pre.extend(tail)

    def prune(self, cutoff_ns: int) -> None:
        self._prune_to(cutoff_ns)
        if self._should_compact():
            s = self.start
            del self.times[:s], self.ids[:s], self.amounts[:s]
            self.pre = prefix_sums(self.amounts)
            self.start = 0

    def window_sums(
        self, time_ns: int, tx_id: int, amount: float, bounds: Bounds
    ) -> tuple[list[int], list[float]]:
        times, pre, start = self.times, self.pre, self.start
        hi_q, stored = self._slot(time_ns, tx_id)
        offsets, rows, _ = bounds
        pos = [bisect_right(times, time_ns - o, start) for o in offsets]
        pos.append(hi_q)  # the last row: just past the request itself
        # A read or an unrecorded event counts itself in the windows it ends.
        # Sums back to floats: float(int) rounds correctly, ldexp is exact.
        own_n, own_sum = (0, 0) if stored else (1, to_fixed(amount))
        counts: list[int] = []
        sums: list[float] = []
        for lo_row, hi_row in rows:
            lo, hi = pos[lo_row], pos[hi_row]
            if hi_row == OWN_ROW:
                counts.append(hi - lo + own_n)
                sums.append(ldexp(float(pre[hi] - pre[lo] + own_sum), -64))
            else:
                counts.append(hi - lo)
                sums.append(ldexp(float(pre[hi] - pre[lo]), -64))
        return counts, sums


_Pair = tuple[int, int]  # (labelled_at, key) of a fraud label


class TerminalSeries(Series):
    __slots__ = ("fraud_at", "fraud_keys", "fraud_times", "pending")

    def __init__(self) -> None:
        self.times = []
        self.ids = []
        self.start = 0
        self.written_at = 0.0
        # Fraud labels with labelled_at <= newest_time ("applied"): their
        # events' times sorted (what windows bounded by time count, with
        # small-int comparisons), their keys sorted (for a window that ends
        # at the request itself, the (time, id) tie rule), and (labelled_at,
        # key) sorted for out-of-order requests.
        self.fraud_times: list[int] = []
        self.fraud_keys: list[int] = []
        self.fraud_at: list[_Pair] = []
        # Fraud labels that arrived "after" the terminal's newest event.
        self.pending: list[_Pair] = []

    def insert(self, time_ns: int, tx_id: int) -> None:
        self._insert_at(time_ns, tx_id)
        newest = self.times[-1]
        if self.pending and self.pending[0][0] <= newest:
            j = bisect_right(self.pending, (newest, math.inf))
            for pair in self.pending[:j]:
                self._apply(pair)
            del self.pending[:j]

    def _apply(self, pair: _Pair) -> None:
        insort(self.fraud_times, pair[1] >> KEY_SHIFT)
        insort(self.fraud_keys, pair[1])
        insort(self.fraud_at, pair)

    def prune(self, cutoff_ns: int) -> list[int]:
        """Drop events at or before `cutoff_ns`; returns their ids."""
        old = self._prune_to(cutoff_ns)
        gone = self.ids[old : self.start]
        if self._should_compact():
            s = self.start
            del self.times[:s], self.ids[:s]
            self.start = 0
            first = event_key(self.times[0], self.ids[0])
            del self.fraud_times[: bisect_left(self.fraud_times, self.times[0])]
            del self.fraud_keys[: bisect_left(self.fraud_keys, first)]
            self.fraud_at = [p for p in self.fraud_at if p[1] >= first]
            self.pending = [p for p in self.pending if p[1] >= first]
        return gone

    def set_fraud(
        self, key: int, labelled_at_ns: int, fraud: bool, *, was_fraud: bool, was_at: int
    ) -> None:
        newest = self.times[-1]
        if was_fraud:
            old = (was_at, key)
            if was_at <= newest:
                _remove(self.fraud_times, key >> KEY_SHIFT)
                _remove(self.fraud_keys, key)
                _remove(self.fraud_at, old)
            else:
                _remove(self.pending, old)
        if fraud:
            pair = (labelled_at_ns, key)
            if labelled_at_ns <= newest:
                self._apply(pair)
            else:
                insort(self.pending, pair)

    def window_counts(
        self, time_ns: int, tx_id: int, bounds: Bounds
    ) -> tuple[list[int], list[int]]:
        times, start = self.times, self.start
        hi_q, stored = self._slot(time_ns, tx_id)
        pos = [bisect_right(times, time_ns - o, start) for o in bounds[0]]
        pos.append(hi_q)  # the last row: just past the request itself
        return _terminal_answer(
            self, time_ns, tx_id, bounds, pos, stored, (times[start], self.ids[start])
        )


def _terminal_answer(
    labels: TerminalSeries,
    time_ns: int,
    tx_id: int,
    bounds: Bounds,
    pos: list[int],
    stored: bool,
    first: tuple[int, int],
) -> tuple[list[int], list[int]]:
    """Counts and frauds per window, from the positions of the bounds in the
    terminal's events (`pos`: per offset, then the request's own) and its
    fraud-label lists. `first`: the (time, id) of its first held event;
    `labels.times[-1]`: its newest time."""
    offsets, rows, ends_at_request = bounds
    own_n = 0 if stored else 1
    counts = [pos[h] - pos[lo] + (own_n if h == OWN_ROW else 0) for lo, h in rows]
    # Label corrections for this request's time (usually none): waiting
    # labels that arrived by then, or applied ones that arrived after it.
    extra: list[int] = []
    sign = 1
    if time_ns < labels.times[-1]:
        sign = -1
        for at, key in reversed(labels.fraud_at):
            if at <= time_ns:
                break
            extra.append(key)
    else:
        for at, key in labels.pending:
            if at > time_ns:
                break
            extra.append(key)
    fraud_times = labels.fraud_times
    if not fraud_times and not extra:
        return counts, [0] * len(rows)
    # Applied frauds at or before each bound. Labels of pruned events may
    # linger before the first held event until the next compaction (all of
    # them earlier than it): never count them.
    floor = first[0] - 1
    at_or_before = [bisect_right(fraud_times, max(time_ns - o, floor)) for o in offsets]
    first_key = event_key(*first)
    if ends_at_request:
        own_key = max(event_key(time_ns, tx_id) + 1, first_key)
        at_or_before.append(bisect_left(labels.fraud_keys, own_key))
    frauds = [at_or_before[h] - at_or_before[lo] for lo, h in rows]
    if extra:
        keys = [max(time_bound(time_ns - o), first_key) for o in offsets]
        keys.append(max(event_key(time_ns, tx_id) + 1, first_key))
        for j, (lo, h) in enumerate(rows):
            lo_key, hi_key = keys[lo], keys[h]
            frauds[j] += sign * sum(1 for key in extra if lo_key <= key < hi_key)
    return counts, frauds


_T = TypeVar("_T")


def _remove(items: list[_T], value: _T) -> None:
    i = bisect_left(items, value)  # type: ignore[type-var]
    if i < len(items) and items[i] == value:
        del items[i]


def query_windows(
    customer: CustomerSeries | None,
    terminal: TerminalSeries | None,
    event: TxEvent,
    plan: WindowPlan,
    recorded: bool,
) -> WindowSums:
    t, tid = event.time_ns, event.transaction_id
    if customer is None:
        c_counts = [1 if end is None else 0 for _, end in plan.customer]
        c_sums = [event.amount if end is None else 0.0 for _, end in plan.customer]
    else:
        c_counts, c_sums = customer.window_sums(t, tid, event.amount, plan.customer_bounds)
    if terminal is None:
        t_counts = [1 if end is None else 0 for _, end in plan.terminal]
        t_frauds = [0] * len(plan.terminal)
    else:
        t_counts, t_frauds = terminal.window_counts(t, tid, plan.terminal_bounds)
    return WindowSums(tuple(c_counts), tuple(c_sums), tuple(t_counts), tuple(t_frauds), recorded)
