"""The aggregate engine: every declared behaviour aggregate
(gendetect.features.aggregates, whose docstring is the normative semantics)
for a set of events, vectorized.

One function, `group_features`, computes one group's features for any set
of events: all rows of a file at once (offline, `gendetect features`,
training, batch scoring, Spark per key), or one key's short history and one
query event (the online stores). Above it, `aggregate_features` computes a
whole declaration over columns (keys coded once, the time order shared) and
`add_aggregate_features` over a DataFrame.

How: a group's events with a key are sorted by (key, time, order); each
window of a query is then a range [lo, hi) of one key's segment, found by
binary searches (gendetect.features.aggregate_kernels.Layout). count, sum,
mean, std, zscore, label_rate and first_seen come from segmented prefix
sums (with an exact recompute where their rounding bound is too loose),
min and max from a sparse table, distinct from previous-occurrence links,
since_previous from the neighbouring position. O(n log n) in all.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gendetect.features.aggregate_kernels import (
    Layout,
    Moments,
    Timeline,
    distinct_counts,
    known_fraud_counts,
    previous_same,
    range_extreme,
)
from gendetect.features.aggregates import (
    ZSCORE_CLIP,
    AggregateFeature,
    AggregateGroup,
)
from gendetect.timestamps import NS_PER_SECOND

Columns = dict[str, np.ndarray]


def group_features(
    group: AggregateGroup,
    key_codes: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    values: Mapping[str, np.ndarray] | None = None,
    distinct: Mapping[str, np.ndarray] | None = None,
    label: np.ndarray | None = None,
    label_known_ns: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    *,
    _timeline: Timeline | None = None,
) -> Columns:
    """One group's features (name -> float64 array) for the query events.

    key_codes: int64 code of each event's key (for a pair key, one code per
        distinct pair), -1 when the key (any part of it) is missing.
    time_ns, order: int64 event time and tie-break (the transaction id):
        events are ordered by (time, order); `order` must be unique.
    values: column name -> float64 per event (NaN = missing), for every
        column in `group.value_columns`.
    distinct: column name -> int64 codes per event (-1 = missing; equal
        values, equal codes), for every column in `group.distinct_columns`.
    label: float64 per event, a fraud when == 1 (0, -1 or NaN: not known as
        fraud); needed when `group.needs_label`.
    label_known_ns: int64 per event, when its label arrived (online); a
        fraud counts for a query at t only if its label was known by t.
        None (offline): every label is known.
    queries: int64 indices of the events to answer (all when None); every
        event is history for the others, whatever `queries` says.

    Input need not be sorted. Events with a missing key are in no window;
    their own features are NaN. The result arrays follow `queries` (or the
    events' order).
    """
    key_codes = np.asarray(key_codes, dtype=np.int64)
    time_ns = np.asarray(time_ns, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    n = len(key_codes)
    if not len(time_ns) == len(order) == n:
        raise ValueError("key_codes, time_ns and order must have the same length")
    timeline = _timeline if _timeline is not None else Timeline(time_ns, order)
    layout = Layout.build(key_codes, time_ns, timeline)
    if queries is None and n and len(layout.perm) == n:
        # Every event has a key: results in event order by one gather each.
        q_pos = np.arange(n)
        computed = _compute(group, layout, q_pos, layout.seg, layout.time, values or {},
                            distinct or {}, label, label_known_ns, True)
        return {name: column[layout.pos] for name, column in computed.items()}
    q_idx = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    out = {name: np.full(len(q_idx), np.nan) for name in group.feature_names}
    if queries is None:
        # Every keyed event, in sorted-position order.
        q_pos, slot = np.arange(len(layout.perm)), layout.perm
    else:
        q_pos_all = layout.pos[q_idx]
        keyed = q_pos_all >= 0
        # Queries in sorted-position order: binary searches get sorted keys,
        # and lo/hi grow with the query (distinct and label counting rely on it).
        q_pos = np.sort(q_pos_all[keyed])
        slot = np.flatnonzero(keyed)[np.argsort(q_pos_all[keyed], kind="stable")]
    if not len(q_pos):
        return out
    q_seg = layout.seg[q_pos]
    q_time = layout.time[q_pos]
    computed = _compute(group, layout, q_pos, q_seg, q_time, values or {}, distinct or {},
                        label, label_known_ns, queries is None)
    for name, column in computed.items():
        out[name][slot] = column
    return out


def _compute(
    group: AggregateGroup,
    layout: Layout,
    q_pos: np.ndarray,
    q_seg: np.ndarray,
    q_time: np.ndarray,
    values: Mapping[str, np.ndarray],
    distinct: Mapping[str, np.ndarray],
    label: np.ndarray | None,
    label_known_ns: np.ndarray | None,
    all_events: bool,
) -> Columns:
    res: Columns = {}
    delay = group.delay_ns
    moments = {c: Moments(layout, np.asarray(values[c], dtype=np.float64))
               for c in group.value_columns}
    prev_links = {c: previous_same(layout, np.asarray(distinct[c], dtype=np.int64))
                  for c in group.distinct_columns}
    fraud_prefix = fraud_sorted = known_sorted = None
    if group.needs_label:
        if label is None:
            raise ValueError(f"group {group.name!r} needs labels")
        fraud_sorted = np.asarray(label, dtype=np.float64)[layout.perm] == 1
        if label_known_ns is None:
            fraud_prefix = np.concatenate(([0], fraud_sorted.cumsum()))
        else:
            known_sorted = np.asarray(label_known_ns, dtype=np.int64)[layout.perm]
    by_window: dict[int | None, list[AggregateFeature]] = {}
    for f in group.features:
        by_window.setdefault(f.window_ns, []).append(f)
    for window, feats in by_window.items():
        if window is None:
            for f in feats:  # since_previous
                res[f.name] = _since_previous(layout, q_pos, q_seg, q_time, group.horizon_ns)
            continue
        lo = layout.first_after(q_pos, q_time, delay + window, all_events)
        # Without delay the window ends at the event itself (ties by order);
        # with one it ends at t - delay and never holds the event.
        hi = q_pos + 1 if delay == 0 else layout.first_after(q_pos, q_time, delay, all_events)
        before = q_pos if delay == 0 else hi
        count = (hi - lo).astype(np.float64)
        # One pass of moments per value column, with the variance if any
        # feature needs it.
        wants_var = {f.of for f in feats if f.kind == "std"}
        stats = {c: moments[c].stats(q_seg, lo, hi, c in wants_var)
                 for c in {f.of for f in feats if f.kind in ("sum", "mean", "std")}}
        for f in feats:
            if f.kind == "count":
                res[f.name] = count
            elif f.kind == "first_seen":
                res[f.name] = (before == lo).astype(np.float64)
            elif f.kind in ("sum", "mean", "std"):
                _, total, mean, var, _ = stats[f.of]
                res[f.name] = total if f.kind == "sum" else mean if f.kind == "mean" \
                    else np.sqrt(var)
            elif f.kind in ("min", "max"):
                extreme = range_extreme(moments[f.of].x, lo, hi, f.kind)
                res[f.name] = np.nan_to_num(extreme, nan=0.0)
            elif f.kind == "distinct":
                valid = np.asarray(distinct[f.of], dtype=np.int64)[layout.perm] >= 0
                res[f.name] = distinct_counts(valid, prev_links[f.of], lo, hi).astype(np.float64)
            elif f.kind == "label_rate":
                if fraud_prefix is not None:
                    frauds = (fraud_prefix[hi] - fraud_prefix[lo]).astype(np.float64)
                else:
                    frauds = known_fraud_counts(layout, fraud_sorted, known_sorted, q_pos,
                                                q_time, lo, hi).astype(np.float64)
                res[f.name] = np.divide(frauds, count, out=np.zeros_like(count), where=count > 0)
            elif f.kind == "zscore":
                res[f.name] = _zscore(moments[f.of], q_pos, q_seg, lo, before)
            else:  # pragma: no cover - the declaration admits no other kind
                raise ValueError(f"unknown aggregate kind {f.kind!r}")
    return res


def _since_previous(
    layout: Layout, q_pos: np.ndarray, q_seg: np.ndarray, q_time: np.ndarray, horizon_ns: int
) -> np.ndarray:
    """Seconds since the key's previous event, capped at the horizon (an
    event at or beyond the horizon counts as none: both give the horizon)."""
    has_prev = q_pos > layout.seg_starts[q_seg]
    gap = np.full(len(q_pos), horizon_ns, dtype=np.int64)
    gap[has_prev] = np.minimum(q_time[has_prev] - layout.time[q_pos[has_prev] - 1], horizon_ns)
    return gap / NS_PER_SECOND


def _zscore(
    moments: Moments, q_pos: np.ndarray, q_seg: np.ndarray, lo: np.ndarray, before: np.ndarray
) -> np.ndarray:
    """(x - m) / s over the window's events before the query event."""
    n, _, mean, var, _ = moments.stats(q_seg, lo, before, True, zscore=True)
    assert var is not None
    x = moments.x[q_pos]
    spread = np.maximum(np.sqrt(var), np.maximum(0.01 * np.abs(mean), 1e-6))
    z = np.clip((x - mean) / spread, -ZSCORE_CLIP, ZSCORE_CLIP)
    z[(n < 2) | np.isnan(x)] = 0.0
    return z


# ---------------------------------------------------------------- declaration
def code_values(column: np.ndarray) -> np.ndarray:
    """int64 codes of a column's values (equal values, equal codes), -1 for
    missing ones (None, NaN, NaT)."""
    import pandas as pd

    codes, _ = pd.factorize(np.asarray(column))
    return codes.astype(np.int64)


def key_codes(columns: Mapping[str, np.ndarray], key: tuple[str, ...]) -> np.ndarray:
    """Codes of a (possibly pair) key; -1 where any part is missing."""
    codes = code_values(columns[key[0]])
    for name in key[1:]:
        other = code_values(columns[name])
        missing = (codes < 0) | (other < 0)
        combined = codes * (int(other.max(initial=0)) + 1) + other
        codes = code_values(np.where(missing, -1, combined))
        codes[missing] = -1
    return codes


def aggregate_features(
    groups: tuple[AggregateGroup, ...],
    columns: Mapping[str, np.ndarray],
    time_ns: np.ndarray,
    order: np.ndarray,
    label: np.ndarray | None = None,
    label_known_ns: np.ndarray | None = None,
    queries: np.ndarray | None = None,
) -> Columns:
    """Every group's features (name -> float64 per query) over raw columns:
    keys and `distinct` columns any values (None/NaN missing), numeric
    columns numbers (NaN missing). See `group_features` for the rest."""
    out: Columns = {}
    coded: dict[str, np.ndarray] = {}
    time_ns = np.asarray(time_ns, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    timeline = Timeline(time_ns, order)  # shared by every group
    for group in groups:
        values = {c: np.asarray(columns[c], dtype=np.float64) for c in group.value_columns}
        distinct = {c: coded.setdefault(c, code_values(columns[c])) for c in group.distinct_columns}
        out |= group_features(group, key_codes(columns, group.key), time_ns, order, values,
                              distinct, label if group.needs_label else None,
                              label_known_ns, queries, _timeline=timeline)
    return out
