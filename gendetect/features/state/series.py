"""One key's recent events (KeySeries), shared by both stores: the memory
store keeps one per (entity, key digest); the Redis store builds one from
the slice of history a request needs (gendetect.features.state.redis_store),
so that both answer with the same arithmetic (gendetect.features.state.answer).

Events are kept sorted by (time, transaction id), the order the offline
engine breaks ties in. Per numeric column the series keeps running prefix
sums of the values, of their squares and of how many are present, so that a
window's count, sum, mean, std and z-score are two binary searches and
differences. The sums are exact: integers in units of 2**-64 (squares in
units of 2**-128; every value of magnitude 2**-12 or more is such a whole
number), rounded to a float once per answer, so no cancellation, order of
additions or overflow makes them drift, however long a key's history runs.
Fraud labels sit in sorted lists; the rule that a label counts only if it
had arrived by the request's time (`labelled_at <= t`) is kept exact: labels
with `labelled_at` up to the key's newest event time are "applied", later
ones wait (ordered by `labelled_at`) and are applied as the key's time
passes them; a request at or after the newest time counts the applied ones
plus the waiting ones that arrived by then, an earlier request subtracts the
applied ones that arrived after it. Events that arrive out of order are
inserted in place, which rebuilds the prefix sums from that point (cheap
for the usual slightly-late event). Pruned events leave from the front by
moving an offset; the lists are compacted (the dead part dropped, the prefix
sums kept as they are) once the pruned part is half of them: memory per key stays within about twice
what its horizon holds, at an amortised O(1) cost.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from itertools import accumulate
from math import ldexp
from typing import TypeVar

from gendetect.features.state.model import event_key

_NAN = float("nan")


def to_fixed(value: float) -> int:
    """`value` in units of 2**-64, exact for |value| >= 2**-12 (else to the
    nearest unit); 0 for NaN (a missing value adds nothing)."""
    return 0 if value != value else round(math.ldexp(value, 64))


class Column:
    """A numeric column of a series: values (NaN missing) and, per position
    i, the exact sums over values[:i] of x, x**2 and of present values."""

    __slots__ = ("n", "s1", "s2", "values")

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.rebuild(0)

    def rebuild(self, i: int) -> None:
        """Recompute the prefix sums from position i on."""
        if i == 0:
            self.s1, self.s2, self.n = [0], [0], [0]
        else:
            del self.s1[i + 1 :], self.s2[i + 1 :], self.n[i + 1 :]
        fixed = [to_fixed(v) for v in self.values[i:]]
        self.s1.extend(accumulate(fixed, initial=self.s1[i]))
        self.s2.extend(accumulate((x * x for x in fixed), initial=self.s2[i]))
        self.n.extend(accumulate((v == v for v in self.values[i:]), initial=self.n[i]))
        # accumulate repeats the initial value: drop it
        for prefix in (self.s1, self.s2, self.n):
            del prefix[i + 1]

    def append(self, value: float) -> None:
        self.values.append(value)
        if value == value:
            x = round(ldexp(value, 64))  # to_fixed, inlined: the hot path
            self.s1.append(self.s1[-1] + x)
            self.s2.append(self.s2[-1] + x * x)
            self.n.append(self.n[-1] + 1)
        else:
            self.s1.append(self.s1[-1])
            self.s2.append(self.s2[-1])
            self.n.append(self.n[-1])


_Pair = tuple[int, int]  # (labelled_at, event key) of a fraud label


class KeySeries:
    """One key's events sorted by (time, id): parallel lists, live from
    `start` on (pruned events sit before it until the next compaction)."""

    # written_at: wall-clock seconds of the key's last write (the memory
    # store's idle sweep; never an event time). horizon_ns: the horizon it
    # was last pruned with.
    __slots__ = ("cols", "dcols", "fraud_at", "fraud_keys", "horizon_ns", "ids", "pending",
                 "start", "times", "written_at")

    COMPACT_MIN = 32

    def __init__(self) -> None:
        self.times: list[int] = []
        self.ids: list[int] = []
        self.start = 0
        self.written_at = 0.0
        self.horizon_ns = 0
        self.cols: dict[str, Column] = {}
        self.dcols: dict[str, list[str | None]] = {}
        # Fraud labels with labelled_at <= newest time ("applied"): their
        # event keys sorted, and (labelled_at, key) sorted for out-of-order
        # requests; those that arrived "after" the newest event wait.
        self.fraud_keys: list[int] = []
        self.fraud_at: list[_Pair] = []
        self.pending: list[_Pair] = []

    def __len__(self) -> int:
        return len(self.times) - self.start

    @property
    def newest_time(self) -> int | None:
        return self.times[-1] if len(self.times) > self.start else None

    def column(self, name: str) -> Column:
        col = self.cols.get(name)
        if col is None:  # a column a newer plan reads: missing in older events
            col = self.cols[name] = Column([_NAN] * len(self.times))
        return col

    def dcolumn(self, name: str) -> list[str | None]:
        col = self.dcols.get(name)
        if col is None:
            col = self.dcols[name] = [None] * len(self.times)
        return col

    def slot(self, time_ns: int, tx_id: int) -> tuple[int, bool]:
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

    def insert(self, time_ns: int, tx_id: int, values: Mapping[str, float],
               distinct: Mapping[str, str | None]) -> None:
        """Insert a new event in order (its id is not held)."""
        if values.keys() != self.cols.keys():
            for name in values:
                self.column(name)
        if distinct and distinct.keys() != self.dcols.keys():
            for name in distinct:
                self.dcolumn(name)
        times, ids = self.times, self.ids
        if not times or time_ns > times[-1] or (time_ns == times[-1] and tx_id > ids[-1]):
            times.append(time_ns)
            ids.append(tx_id)
            for name, col in self.cols.items():
                col.append(values.get(name, _NAN))
            for name, dcol in self.dcols.items():
                dcol.append(distinct.get(name))
        else:
            i, _ = self.slot(time_ns, tx_id)
            times.insert(i, time_ns)
            ids.insert(i, tx_id)
            for name, col in self.cols.items():
                col.values.insert(i, values.get(name, _NAN))
                col.rebuild(i)
            for name, dcol in self.dcols.items():
                dcol.insert(i, distinct.get(name))
        newest = times[-1]
        if self.pending and self.pending[0][0] <= newest:
            j = bisect_right(self.pending, (newest, math.inf))
            for pair in self.pending[:j]:
                self._apply(pair)
            del self.pending[:j]

    def _apply(self, pair: _Pair) -> None:
        insort(self.fraud_keys, pair[1])
        insort(self.fraud_at, pair)

    def prune(self, cutoff_ns: int) -> list[int]:
        """Drop events at or before `cutoff_ns`; returns their ids."""
        old = self.start
        if old >= len(self.times) or self.times[old] > cutoff_ns:
            return []  # nothing this old: the common case
        self.start = bisect_right(self.times, cutoff_ns, old)
        gone = self.ids[old : self.start]
        if self.start >= self.COMPACT_MIN and 2 * self.start >= len(self.times):
            self._compact()
        return gone

    def _compact(self) -> None:
        s = self.start
        del self.times[:s], self.ids[:s]
        for col in self.cols.values():
            # The prefix sums stay as they are (a window is a difference of
            # two): no arithmetic, only the dead part dropped.
            del col.values[:s], col.s1[:s], col.s2[:s], col.n[:s]
        for dcol in self.dcols.values():
            del dcol[:s]
        self.start = 0
        if self.times:
            first = event_key(self.times[0], self.ids[0])
            del self.fraud_keys[: bisect_left(self.fraud_keys, first)]
            self.fraud_at = [p for p in self.fraud_at if p[1] >= first]
            self.pending = [p for p in self.pending if p[1] >= first]
        else:
            self.fraud_keys, self.fraud_at, self.pending = [], [], []

    def set_fraud(self, key: int, labelled_at_ns: int, fraud: bool, *, was_fraud: bool,
                  was_at: int) -> None:
        newest = self.times[-1]
        if was_fraud:
            old = (was_at, key)
            if was_at <= newest:
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

    def frauds_below(self, time_ns: int) -> tuple[int, list[int], int]:
        """What fraud counts at a request time need: (sign, corrections,
        first held key). A window's frauds are those of the applied keys in
        it, plus `sign` times the corrections in it (waiting labels that
        arrived by then, or applied ones that arrived after it)."""
        extra: list[int] = []
        sign = 1
        if time_ns < self.times[-1]:
            sign = -1
            for at, key in reversed(self.fraud_at):
                if at <= time_ns:
                    break
                extra.append(key)
        else:
            for at, key in self.pending:
                if at > time_ns:
                    break
                extra.append(key)
        return sign, extra, event_key(self.times[self.start], self.ids[self.start])

    def live(self) -> KeySeries:
        """A compacted copy of the live part (to add unrecorded events to)."""
        s = self.start
        out = KeySeries()
        out.times, out.ids = self.times[s:], self.ids[s:]
        out.cols = {n: Column(c.values[s:]) for n, c in self.cols.items()}
        out.dcols = {n: d[s:] for n, d in self.dcols.items()}
        out.fraud_keys, out.fraud_at = list(self.fraud_keys), list(self.fraud_at)
        out.pending = list(self.pending)
        out.horizon_ns, out.written_at = self.horizon_ns, self.written_at
        return out


_T = TypeVar("_T")


def _remove(items: list[_T], value: _T) -> None:
    i = bisect_left(items, value)  # type: ignore[type-var]
    if i < len(items) and items[i] == value:
        del items[i]
