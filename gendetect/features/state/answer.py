"""The declared features of one event from its keys' histories: the
semantics of gendetect.features.aggregates, with the same arithmetic for
both stores (`group_features`, from where each window starts and ends in a
key's history and the exact prefix sums there: the memory store finds them
in its series, the Redis store gets them from its script,
gendetect.features.state.redis_reply).

Per window the bounds are binary searches in the key's event times; count,
sum, mean, std, zscore, label_rate, first_seen and since_previous are then
O(1) from the exact prefix sums and the sorted fraud labels; min, max and
distinct walk the window (O(window)). The request's own event counts in the
windows that end at it (no delay) whether the series holds it or not (a
read, a preview, an event too old to keep): added here, not inserted.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from math import ldexp
from typing import Any, Protocol

from gendetect.aggregates import ZSCORE_CLIP
from gendetect.features.state.model import TxEvent, event_key, time_bound
from gendetect.features.state.plan import AggregatePlan, GroupPlan
from gendetect.features.state.series import KeySeries, to_fixed

_NAN = float("nan")
_NS = 1e9


def answer_event(
    plan: AggregatePlan, event: TxEvent, series: Sequence[KeySeries | None]
) -> tuple[float, ...]:
    """Every declared feature of `event`, `series` being its keys' histories
    (one per plan entity; None for a key with no history)."""
    out = [_NAN] * len(plan.feature_names)
    values = dict(zip(plan.value_columns, event.values, strict=True))
    distinct = dict(zip(plan.distinct_columns, event.distinct, strict=True))
    for group in plan.groups:
        if event.keys[group.entity] is None:
            continue  # a missing key: NaN, in no window
        s = series[group.entity]
        answer_group(out, s if s is not None and len(s) else None, event, group, values, distinct)
    return tuple(out)


def with_extra(histories: Sequence[KeySeries | None], event: TxEvent, plan: AggregatePlan,
               extra: Sequence[TxEvent],
               newest: Sequence[int | None] | None = None) -> list[KeySeries | None]:
    """`histories` with the unrecorded events `extra` (previews in flight, in
    the order they would be recorded) added, in copies, where they share
    `event`'s key and are not held: each transaction once, never the
    request's own, by the recording rules (kept only if the key's history
    could still hold it, pruning what it would prune). `newest`: per history
    its key's newest event time when `histories` are slices that may stop
    before it (the Redis store's)."""
    out = list(histories)
    for i, key in enumerate(event.keys):
        mine = [e for e in extra if key is not None and e.keys[i] == key
                and e.transaction_id != event.transaction_id]
        if not mine:
            continue
        s = out[i]
        copy = s.live() if s is not None else KeySeries()
        horizon = plan.horizons[i]
        seen: set[int] = set()
        for e in mine:
            if e.transaction_id in seen or copy.slot(e.time_ns, e.transaction_id)[1]:
                continue
            seen.add(e.transaction_id)
            newest_t = copy.newest_time
            if newest is not None and newest[i] is not None:
                newest_t = newest[i] if newest_t is None else max(newest_t, newest[i])
            if newest_t is not None and e.time_ns <= newest_t - horizon:
                continue  # too old for this history: it would not be recorded in it
            copy.insert(e.time_ns, e.transaction_id,
                        {c: e.values[j] for c, j in plan.entity_values[i]},
                        {c: e.distinct[j] for c, j in plan.entity_distinct[i]})
            copy.prune((e.time_ns if newest_t is None else max(e.time_ns, newest_t)) - horizon)
        out[i] = copy
    return out


def answer_group(out: list[float], s: KeySeries | None, event: TxEvent, group: GroupPlan,
           values: dict[str, float], distinct: dict[str, str | None]) -> None:
    """A group's features from a whole series (the memory store's, or a slice)."""
    t, tid, delay = event.time_ns, event.transaction_id, group.delay_ns
    if s is None:
        times: list[int] = []
        start = hi_q = 0
        stored = False
    else:
        times, start = s.times, s.start
        hi_q, stored = s.slot(t, tid)
    # Events before e in (time, id) order end at hi_b.
    hi_b = hi_q - 1 if stored else hi_q
    bounds = []
    for w in group.windows_ns:
        lo = bisect_right(times, t - delay - w, start)
        if delay:
            hi = bisect_right(times, t - delay, start)
            bounds.append((lo, hi, hi, False))
        else:  # the window ends at e itself; e counts even if not held
            bounds.append((lo, hi_q, hi_b, not stored))
    prev = times[hi_b - 1] if hi_b > start else None
    if s is None:
        group_features(out, event, group, values, distinct, bounds, {}, prev, _no_frauds,
                       _no_walk)
        return
    group_features(out, event, group, values, distinct, bounds, s.cols, prev,
                   _series_frauds(s, event, group), partial(_series_walk, s))


Bound = tuple[int, int, int, bool]  # (lo, hi, end of the events before e, e not held)


class Prefixes(Protocol):
    """A numeric column's exact prefix sums by position (Column, or the
    values at the few positions a Redis reply holds)."""

    @property
    def n(self) -> Sequence[int] | Mapping[int, int]: ...
    @property
    def s1(self) -> Sequence[int] | Mapping[int, int]: ...
    @property
    def s2(self) -> Sequence[int] | Mapping[int, int]: ...


def group_features(
    out: list[float], event: TxEvent, group: GroupPlan, values: dict[str, float],
    distinct: dict[str, str | None], bounds: list[Bound], cols: Mapping[str, Prefixes],
    prev_time: int | None, frauds: Callable[[int], int],
    walk: Callable[[bool, str, int, int], list[Any]],
) -> None:
    """A group's features from where its windows start and end in the key's
    history (`bounds`, positions per window), the prefix sums at those
    positions (`cols`), the time of the key's latest event before e
    (`prev_time`), the frauds in window w known by e's time (`frauds(w)`) and
    the window's events themselves for min, max and distinct (`walk(is
    distinct, column, lo, hi)`): the one arithmetic of both stores."""
    t = event.time_ns
    ops = group.ops
    for slot, w in ops.count:
        lo, hi, _, own = bounds[w]
        out[slot] = float(hi - lo + own)
    for slot, w in ops.first_seen:
        lo, _, before, _ = bounds[w]
        out[slot] = 1.0 if before == lo else 0.0
    for slot in ops.since_previous:
        horizon = group.horizon_ns
        out[slot] = ((t - prev_time) / _NS if prev_time is not None and prev_time > t - horizon
                     else horizon / _NS)
    for w, of, squares, items in ops.moments:
        lo, hi, _, own = bounds[w]
        n, s1, s2 = _sums(cols.get(of), lo, hi, values[of] if own else _NAN, squares)
        for slot, kind in items:
            if n == 0:
                out[slot] = 0.0
            elif kind == "mean":
                out[slot] = ldexp(s1 / n, -64)  # int / int: correctly rounded
            elif kind == "sum":
                out[slot] = ldexp(float(s1), -64)
            else:
                out[slot] = _std(n, s1, s2)
    for slot, w, of in ops.zscore:
        lo, _, before, _ = bounds[w]
        out[slot] = _zscore(cols.get(of), lo, before, values[of])
    for slot, w in ops.label_rate:
        lo, hi, _, own = bounds[w]
        n = hi - lo + own
        out[slot] = frauds(w) / n if n else 0.0
    for f in ops.walks:
        assert f.of is not None
        lo, hi, _, own = bounds[f.window]
        if f.kind == "distinct":
            seen = set(walk(True, f.of, lo, hi))
            if own:
                seen.add(distinct[f.of])
            seen.discard(None)
            out[f.slot] = float(len(seen))
            continue
        window = walk(False, f.of, lo, hi)
        x = values[f.of]
        if own and x == x:
            window.append(x)
        out[f.slot] = (min(window) if f.kind == "min" else max(window)) if window else 0.0


def _no_frauds(w: int) -> int:
    return 0


def _no_walk(is_distinct: bool, of: str, lo: int, hi: int) -> list[Any]:
    return []


def _series_walk(s: KeySeries, is_distinct: bool, of: str, lo: int, hi: int) -> list[Any]:
    """min, max and distinct: over the window's events themselves."""
    if is_distinct:
        dcol = s.dcols.get(of)
        return dcol[lo:hi] if dcol is not None else []
    col = s.cols.get(of)
    return [v for v in col.values[lo:hi] if v == v] if col is not None else []


def _series_frauds(s: KeySeries, event: TxEvent, group: GroupPlan) -> Callable[[int], int]:
    t, delay = event.time_ns, group.delay_ns
    counter: Callable[[int], int] | None = None

    def frauds(w: int) -> int:
        nonlocal counter
        if counter is None:
            counter = _fraud_counter(s, t)
        hi_key = event_key(t, event.transaction_id) + 1 if not delay else time_bound(t - delay)
        lo_key = time_bound(t - delay - group.windows_ns[w])
        return counter(hi_key) - counter(lo_key)

    return frauds


def _sums(col: Prefixes | None, lo: int, hi: int, x: float,
          squares: bool = True) -> tuple[int, int, int]:
    """(n, sum, sum of squares) of the present values in [lo, hi) and x
    (the sum of squares only if `squares`, else 0: a mean needs none)."""
    if col is None:  # a column none of the held events has: all missing
        n = s1 = s2 = 0
    else:
        n = col.n[hi] - col.n[lo]
        s1 = col.s1[hi] - col.s1[lo]
        s2 = col.s2[hi] - col.s2[lo] if squares else 0
    if x == x:
        fx = to_fixed(x)
        n, s1 = n + 1, s1 + fx
        if squares:
            s2 += fx * fx
    return n, s1, s2


def _std(n: int, s1: int, s2: int) -> float:
    # Exact n**2 * variance (units of 2**-128), one rounding.
    return math.sqrt(ldexp((n * s2 - s1 * s1) / (n * n), -128))


def _zscore(col: Prefixes | None, lo: int, before: int, x: float) -> float:
    if x != x:
        return 0.0
    n, s1, s2 = _sums(col, lo, before, _NAN)
    if n < 2:
        return 0.0
    m = ldexp(s1 / n, -64)
    s = max(_std(n, s1, s2), 0.01 * abs(m), 1e-6)
    return min(max((x - m) / s, -ZSCORE_CLIP), ZSCORE_CLIP)


def _fraud_counter(s: KeySeries, t: int) -> Callable[[int], int]:
    """F(bound): frauds known by t among held events with key < bound."""
    sign, extra, first = s.frauds_below(t)
    keys = s.fraud_keys

    def frauds(bound: int) -> int:
        b = max(bound, first)  # labels of pruned events may linger below
        n = bisect_left(keys, b)
        if extra:
            n += sign * sum(1 for k in extra if k < b)
        return n

    return frauds
