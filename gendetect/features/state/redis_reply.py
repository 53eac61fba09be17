"""The Redis store's client side of the record script
(gendetect.features.state.redis_scripts): what a request asks of each of its
key histories, and the answer from what the script returns.

A history is asked for the bounds its groups' windows need: per
window where it starts and ends, as ZLEXCOUNT maxima; the script returns the
position of each bound in the history, the exact prefix sums and the applied
frauds there, the key's previous event and newest event, and the label
corrections for the request's time. `BoundsHistory` turns that into the
arguments of gendetect.features.state.answer.group_features, the memory
store's arithmetic: both stores agree exactly, and a request costs O(log
history) per bound whatever the key's history. Groups with min, max or
distinct also get their windows' events (O(window)). Previews in flight that
share a key are added to its history's bounds on the client
(gendetect.features.state.redis_in_flight): O(log history) per preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gendetect.features.state.answer import Bound, group_features
from gendetect.features.state.model import INT64_MIN, TxEvent, event_key, time_bound
from gendetect.features.state.plan import AggregatePlan, GroupPlan
from gendetect.features.state.redis_in_flight import add_in_flight
from gendetect.features.state.redis_scripts import (
    BELOW_ALL,
    at_or_before,
    before,
    decode_int,
    upto,
)
from gendetect.features.state.series import to_fixed

# Added to every value (in units of 2**-64) in the Redis prefix sums: keeps
# them non-negative (|value| <= AMOUNT_LIMIT < 2**60), for the script only
# adds decimal strings; the client subtracts present count * 2**124 again.
VALUE_BIAS = 2**124
_NAN = float("nan")


def payload(values: dict[str, float], distinct: dict[str, str | None]) -> str:
    """An event's values (NaN as null) and distinct digests, as stored."""
    return orjson.dumps(
        [{c: (None if v != v else v) for c, v in values.items()}, distinct]).decode()


def sums_delta(values: dict[str, float]) -> str:
    """What an event adds to its history's prefix sums, per column:
    [present, x + 2**124, x**2] (x in units of 2**-64; zeros if missing)."""
    out = {}
    for c, v in values.items():
        if v != v:
            out[c] = ("0", "0", "0")
        else:
            x = to_fixed(v)
            out[c] = ("1", str(x + VALUE_BIAS), str(x * x))
    return orjson.dumps(out).decode()


class BoundsQuery:
    """What one request asks of one history: the bounds of its
    groups' windows (each once, with its event key: an event is below a
    bound iff its key is below the bound's), which of them min, max and
    distinct read the events between, and the bounds the previews in flight
    that share the key need (gendetect.features.state.redis_in_flight)."""

    __slots__ = ("bounds", "extra", "flags", "hi", "index", "keys", "lo", "walk_hi_key",
                 "walk_lo")

    def __init__(self, plan: AggregatePlan, entity: int, event: TxEvent,
                 extra: Sequence[TxEvent] = ()) -> None:
        t, tid = event.time_ns, event.transaction_id
        self.index: dict[str, int] = {}
        self.keys: list[int] = []
        flags = ""
        walk_lo: int | None = None  # the earliest window start min/max/distinct read
        walk_hi: tuple[int, str] | None = None
        for group in plan.groups:
            if group.entity != entity:
                continue
            ops = group.ops
            if ops.moments or ops.zscore:
                flags += "p"
            if ops.label_rate:
                flags += "f"
            if ops.since_previous:
                flags += "s"
            d = group.delay_ns
            if d:
                self._time(t - d)
            else:
                self._event(t, tid)
            for w in group.windows_ns:
                self._time(t - d - w)
            for f in ops.walks:
                start = t - d - group.windows_ns[f.window]
                walk_lo = start if walk_lo is None else min(walk_lo, start)
                end = (time_bound(t - d), at_or_before(t - d)) if d else \
                    (event_key(t, tid) + 1, upto(t, tid))
                walk_hi = end if walk_hi is None or end[0] > walk_hi[0] else walk_hi
        # Previews in flight: whether each is held, and where it would prune.
        self.extra = tuple(extra)
        for e in self.extra:
            self._event(e.time_ns, e.transaction_id)
            self._time(e.time_ns - plan.horizons[entity])
        self.bounds = list(self.index)
        self.flags = "".join(sorted(set(flags)))
        self.walk_lo = self.lo = at_or_before(walk_lo) if walk_lo is not None else ""
        self.hi, self.walk_hi_key = (walk_hi[1], walk_hi[0]) if walk_hi is not None else ("", 0)

    def _time(self, time_ns: int) -> None:
        self._add(at_or_before(time_ns),
                  BELOW_ALL if time_ns < INT64_MIN else time_bound(time_ns))

    def _event(self, time_ns: int, tx_id: int) -> None:
        key = event_key(time_ns, tx_id)
        self._add(upto(time_ns, tx_id), key + 1)
        self._add(before(time_ns, tx_id), key)

    def _add(self, bound: str, key: int) -> None:
        if bound not in self.index:
            self.index[bound] = len(self.index)
            self.keys.append(key)


class _Sums:
    """A column's prefix sums at the positions a reply holds."""

    __slots__ = ("n", "s1", "s2")

    def __init__(self) -> None:
        self.n: dict[int, int] = {}
        self.s1: dict[int, int] = {}
        self.s2: dict[int, int] = {}


class BoundsHistory:
    """A history as the script's reply describes it, for one request."""

    __slots__ = ("cols", "decoded", "fe", "late", "newest", "pos", "prev", "query", "row_keys",
                 "sign", "walk_start")

    def __init__(self, part: list[Any], query: BoundsQuery, plan: AggregatePlan,
                 entity: int, event: TxEvent) -> None:
        at, sums, frauds, prev, last, sign, late, members, values = part
        self.query = query
        self.pos = [int(p) for p in at]
        self.fe = [int(f) for f in frauds]
        self.prev = decode_int(prev[:20]) if prev else None
        self.newest = decode_int(last[:20]) if last else None
        self.sign = int(sign)
        # "<labelled_at>:<time>:<id>": in a window by its event's key.
        self.late = [event_key(decode_int(m[21:41]), decode_int(m[42:])) for m in late]
        self.cols: dict[str, _Sums] = {}
        if sums:
            self.cols = {c: _Sums() for c in plan.entities[entity].value_columns}
            for p, raw in zip(self.pos, sums, strict=True):
                held = orjson.loads(raw) if raw else {}
                for c, col in self.cols.items():
                    n, s1, s2 = (int(x) for x in held.get(c, (0, 0, 0)))
                    col.n[p], col.s1[p], col.s2[p] = n, s1 - n * VALUE_BIAS, s2
        # The events min, max and distinct read: keys, and [values, digests].
        self.row_keys = [event_key(decode_int(m[:20]), decode_int(m[21:])) for m in members]
        self.decoded = [orjson.loads(v) if v else [{}, {}] for v in values] if values else \
            [[{}, {}]] * len(members)
        if query.extra:
            add_in_flight(self, event, plan, entity)
        self.walk_start = self.pos[query.index[query.walk_lo]] if query.walk_lo else 0

    def answer(self, out: list[float], event: TxEvent, group: GroupPlan,
               values: dict[str, float], distinct: dict[str, str | None]) -> None:
        t, tid, delay = event.time_ns, event.transaction_id, group.delay_ns
        index, pos = self.query.index, self.pos
        if delay:
            hi = pos[index[at_or_before(t - delay)]]
            bounds: list[Bound] = [
                (pos[index[at_or_before(t - delay - w)]], hi, hi, False)
                for w in group.windows_ns]
        else:
            hi_q = pos[index[upto(t, tid)]]
            hi_b = pos[index[before(t, tid)]]
            stored = hi_q > hi_b
            bounds = [(pos[index[at_or_before(t - w)]], hi_q, hi_b, not stored)
                      for w in group.windows_ns]

        def frauds(w: int) -> int:
            lo, hi = self._fraud_bounds(event, group, w)
            n = self.fe[hi[0]] - self.fe[lo[0]]
            if self.late:
                n += self.sign * sum(1 for k in self.late if lo[1] <= k < hi[1])
            return n

        group_features(out, event, group, values, distinct, bounds, self.cols, self.prev,
                       frauds, self._walk)

    def _fraud_bounds(self, event: TxEvent, group: GroupPlan,
                      w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(bound index, event key) of window w's start and end."""
        t, d, index = event.time_ns, group.delay_ns, self.query.index
        lo_t = t - d - group.windows_ns[w]
        lo = (index[at_or_before(lo_t)], time_bound(lo_t))
        if d:
            return lo, (index[at_or_before(t - d)], time_bound(t - d))
        return lo, (index[upto(t, event.transaction_id)],
                    event_key(t, event.transaction_id) + 1)

    def _walk(self, is_distinct: bool, of: str, lo: int, hi: int) -> list[Any]:
        rows = self.decoded[lo - self.walk_start : hi - self.walk_start]
        if is_distinct:
            return [d[1].get(of) for d in rows]
        out = []
        for d in rows:
            x = d[0].get(of)
            if x is not None:
                out.append(float(x))
        return out


def answer_histories(plan: AggregatePlan, event: TxEvent,
            histories: Sequence[BoundsHistory | None]) -> tuple[float, ...]:
    """Every declared feature of `event`, each group from its history's bounds."""
    out = [_NAN] * len(plan.feature_names)
    values = dict(zip(plan.value_columns, event.values, strict=True))
    distinct = dict(zip(plan.distinct_columns, event.distinct, strict=True))
    for group in plan.groups:
        h = histories[group.entity]
        if h is not None:  # None: a missing key, NaN and in no window
            h.answer(out, event, group, values, distinct)
    return tuple(out)
