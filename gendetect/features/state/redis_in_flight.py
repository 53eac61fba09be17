"""Previews in flight (gendetect.features.in_flight) in the Redis store's
answers, from a history's bounds alone: what
gendetect.features.state.answer.with_extra does to a KeySeries, without the
history's events.

The unrecorded events that share the key count as if recorded by the
recording rules, in order: each transaction once, none the history holds,
kept only if the history could still hold it (its time after the newest
time so far minus the horizon). Recording them would prune the history at
its new newest time minus the horizon (`cut`), so the history they make is
(held events and kept previews) after `cut`. Every bound of the request then
stands for a position in that history: the held events below it (below
`cut` when it lies before: the bound at `cut` is asked for whenever a
preview moves the newest time) plus the kept previews below it, and the
prefix sums there grow by those previews' values. The applied-fraud counts
are clipped at `cut` the same way; previews carry no labels. O(previews x
bounds) on the client, nothing more from Redis than the bounds their
events and cuts add.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from gendetect.features.state.model import TxEvent, event_key, time_bound
from gendetect.features.state.redis_scripts import at_or_before, before, upto
from gendetect.features.state.series import to_fixed

if TYPE_CHECKING:
    from gendetect.features.state.plan import AggregatePlan
    from gendetect.features.state.redis_reply import BoundsHistory


def add_in_flight(h: BoundsHistory, event: TxEvent, plan: AggregatePlan, entity: int) -> None:
    """Add the query's previews in flight to `h` (in place)."""
    q = h.query
    index, keys, raw = q.index, q.keys, h.pos
    horizon = plan.horizons[entity]
    newest = h.newest
    seen: set[int] = set()
    kept: list[TxEvent] = []
    for e in q.extra:
        t, tid = e.time_ns, e.transaction_id
        if tid in seen or raw[index[upto(t, tid)]] > raw[index[before(t, tid)]]:
            continue  # counted already, or held
        seen.add(tid)
        if newest is not None and t <= newest - horizon:
            continue  # too old for this history: it would not be recorded in it
        kept.append(e)
        newest = t if newest is None else max(newest, t)
    if not kept or newest is None:
        return
    cut = newest - horizon
    cut_key = time_bound(cut)
    # Without a bound at `cut` nothing held lies at or before it (the store
    # prunes at its newest time minus the horizon).
    cut_j = index.get(at_or_before(cut))
    live = sorted((e for e in kept if e.time_ns > cut),
                  key=lambda e: event_key(e.time_ns, e.transaction_id))
    live_keys = [event_key(e.time_ns, e.transaction_id) for e in live]
    held = [cut_j if cut_j is not None and k < cut_key else j for j, k in enumerate(keys)]
    below = [bisect_left(live_keys, max(k, cut_key)) for k in keys]
    if h.cols:
        _add_sums(h, plan, entity, live, held, below)
    h.pos = [raw[held[j]] + below[j] for j in range(len(keys))]
    if h.fe:
        h.fe = [h.fe[held[j]] for j in range(len(keys))]
    h.late = [k for k in h.late if k >= cut_key]
    if h.prev is not None and h.prev <= cut:
        h.prev = None
    mine = event_key(event.time_ns, event.transaction_id)
    for k, e in zip(live_keys, live, strict=True):
        if k < mine and (h.prev is None or e.time_ns > h.prev):
            h.prev = e.time_ns
    if q.walk_lo:
        lo_key = keys[index[q.walk_lo]]
        rows = [(k, d) for k, d in zip(h.row_keys, h.decoded, strict=True) if k >= cut_key]
        rows += [(k, _row(e, plan, entity)) for k, e in zip(live_keys, live, strict=True)
                 if lo_key <= k < q.walk_hi_key]
        rows.sort(key=lambda r: r[0])
        h.row_keys = [k for k, _ in rows]
        h.decoded = [d for _, d in rows]


def _add_sums(h: BoundsHistory, plan: AggregatePlan, entity: int, live: list[TxEvent],
              held: list[int], below: list[int]) -> None:
    raw = h.pos
    for c, j in plan.entity_values[entity]:
        xs = [e.values[j] for e in live]
        fixed = [to_fixed(x) for x in xs]
        cn = list(accumulate((x == x for x in xs), initial=0))
        c1 = list(accumulate(fixed, initial=0))
        c2 = list(accumulate((f * f for f in fixed), initial=0))
        col = h.cols[c]
        n, s1, s2 = dict(col.n), dict(col.s1), dict(col.s2)
        col.n.clear()
        col.s1.clear()
        col.s2.clear()
        for hj, k in zip(held, below, strict=True):
            p, u = raw[hj], raw[hj] + k
            col.n[u], col.s1[u], col.s2[u] = n[p] + cn[k], s1[p] + c1[k], s2[p] + c2[k]


def _row(e: TxEvent, plan: AggregatePlan, entity: int) -> list[Any]:
    """A preview as the stored payloads decode: [values (None missing), digests]."""
    values = {c: (None if (x := e.values[j]) != x else x) for c, j in plan.entity_values[entity]}
    return [values, {c: e.distinct[j] for c, j in plan.entity_distinct[entity]}]
