"""The legacy window kernels (`window_sums`, `customer_window_features` /
`terminal_window_features`, kept for the online state that still speaks
WindowConfig) and `add_window_features`, which checks a frame against a
WindowConfig and computes it with the aggregate engine
(gendetect.features.aggregate_engine) over the equivalent declaration
(gendetect.features.behaviour.Behaviour.from_window_config).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.windows import Window, WindowConfig, kernel_windows
from gendetect.schema import FieldSpec, validate_column


def _segmented_prefix(values: np.ndarray, seg_of: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """Prefix sums of `values` (sorted by entity) restarted per entity.

    Layout: a correction slot precedes each entity's segment, holding minus
    the previous segment's total, so the running sum returns to ~0 there;
    then "sum of the segment's values before position p" is out[p + s] for p
    in segment s. Restarting matters for precision: one cumsum over millions
    of amounts reaches ~1e8 and loses ~1e-8 per step, so offline sums would
    differ from online ones (over one entity's short history) by far more
    than rounding.
    """
    n, n_seg = len(values), len(seg_starts)
    ext = np.zeros(n + n_seg, dtype=np.float64)
    ext[np.arange(1, n + 1) + seg_of] = values
    if n_seg > 1:
        totals = np.add.reduceat(values, seg_starts)
        ext[seg_starts[1:] + np.arange(1, n_seg)] = -totals[:-1]
    return ext.cumsum()


# numpy's stable sort is a radix sort for 16-bit integers: far faster than a
# comparison sort on millions of entity codes (when there are < 65536).
_RADIX_MIN_ROWS = 4096
_INT64_MAX = 2**63 - 1


def window_sums(
    group: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    values: np.ndarray,
    windows: Sequence[Window],
    queries: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of `values` over time windows per entity.

    group: non-negative int64 entity codes; time_ns, order: int64 event time
    and tie-break (transaction id); values: float64; windows: see `Window`;
    queries: indices of the events to compute for (all if None). Input need
    not be sorted. Returns counts (n_windows, n_queries) int64 and sums
    (n_windows, n_queries) float64.

    How: with events sorted by (entity, time, order), the int64 key
    entity * (n + 1) + rank, where rank is the event's position in the global
    (time, order) order, is strictly increasing. "Events of entity g with
    time <= T" is then a prefix of g's segment, found by two binary searches
    (T -> number of events at or before T -> key), and a window's count or
    sum is a difference of positions or of prefix sums.

    Both paths use it: offline with all events of all entities at once,
    online with one entity's short history and one query, where numpy's
    per-call overhead dominates, so the number of array operations is kept
    small and independent of the number of windows where possible.
    """
    group = np.asarray(group, dtype=np.int64)
    time_ns = np.asarray(time_ns, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    n = time_ns.shape[0]
    if not group.shape[0] == order.shape[0] == values.shape[0] == n:
        raise ValueError("group, time_ns, order and values must have the same length")
    all_events = queries is None
    n_q = n if all_events else len(queries)  # type: ignore[arg-type]
    if n_q == 0:
        return np.zeros((len(windows), 0), np.int64), np.zeros((len(windows), 0))
    stride = n + 1

    by_time = np.lexsort((order, time_ns))
    t_sorted = time_ns[by_time]
    rank = np.empty(n, dtype=np.int64)
    rank[by_time] = np.arange(n)
    # A stable sort by entity of the time-sorted events = sort by (entity, rank).
    g_by_time = group[by_time]
    if n >= _RADIX_MIN_ROWS and g_by_time.max() < 2**16:
        g_by_time = g_by_time.astype(np.uint16)
    by_entity = g_by_time.argsort(kind="stable")
    perm = by_time[by_entity]
    g_sorted = group[perm]
    if g_sorted[0] < 0 or g_sorted[-1] >= _INT64_MAX // stride - 1:
        raise ValueError("entity codes must be non-negative and below 2**63 / (n + 1)")
    key_sorted = g_sorted * stride + rank[perm]
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    new_seg = np.empty(n, dtype=bool)
    new_seg[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=new_seg[1:])
    seg_of_sorted = new_seg.cumsum() - 1
    prefix = _segmented_prefix(values[perm], seg_of_sorted, new_seg.nonzero()[0])

    # Offline (all events) the queries are answered in entity-sorted order so
    # that both binary searches get sorted keys, several times faster on
    # millions of rows than random order; results go back to input order last.
    if all_events:
        q_idx, q_pos, q_seg = perm, np.arange(n), seg_of_sorted
    else:
        q_idx = np.asarray(queries, dtype=np.int64)
        q_pos = pos[q_idx]
        q_seg = seg_of_sorted[q_pos]
    q_rank = rank[q_idx]
    q_base = key_sorted[q_pos] - q_rank

    # bounds[u] = position just past the entity's events with time <=
    # t - offsets[u]; the last row = just past the query event itself.
    offsets, offsets_col, lo_rows, hi_rows = _bound_plan(tuple(windows))
    bounds = np.empty((len(offsets) + 1, n_q), dtype=np.int64)
    if all_events:
        # Searched in time order (sorted keys), then put in entity order.
        at_or_before = np.stack(
            [t_sorted.searchsorted(t_sorted - off, side="right")[q_rank] for off in offsets]
        )
    else:
        # Few queries: all offsets in one call (per-call overhead dominates).
        at_or_before = t_sorted.searchsorted(time_ns[q_idx] - offsets_col, side="right")
    bounds[:-1] = key_sorted.searchsorted(q_base + at_or_before, side="left")
    bounds[-1] = q_pos + 1
    lo, hi = bounds[lo_rows], bounds[hi_rows]
    counts = hi - lo
    sums = prefix[hi + q_seg] - prefix[lo + q_seg]
    if all_events:
        counts, sums = counts.take(pos, axis=1), sums.take(pos, axis=1)
    return counts, sums


@lru_cache(maxsize=64)
def _bound_plan(
    windows: tuple[Window, ...],
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Distinct time offsets of the windows' bounds (as a list and as a
    column), and for each window the rows of its start and end bound (the
    last row: the query event itself)."""
    offsets = sorted({w for window in windows for w in window if w is not None})
    row = {w: i for i, w in enumerate(offsets)} | {None: len(offsets)}
    lo_rows = np.array([row[start] for start, _ in windows], dtype=np.intp)
    hi_rows = np.array([row[end] for _, end in windows], dtype=np.intp)
    offsets_col = np.array(offsets, dtype=np.int64).reshape(-1, 1)
    return offsets, offsets_col, lo_rows, hi_rows


def customer_window_features(
    group: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    amount: np.ndarray,
    config: WindowConfig,
    queries: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Number and mean amount of the customer's transactions per window."""
    counts, sums = window_sums(group, time_ns, order, amount, kernel_windows(config)[0], queries)
    nb = counts.astype(np.float64)
    avg = sums / nb  # the window includes the query event itself: nb >= 1
    names = config.feature_names
    return {names[2 * j]: nb[j] for j in range(len(nb))} | {
        names[2 * j + 1]: avg[j] for j in range(len(nb))
    }


def terminal_window_features(
    group: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    label: np.ndarray,
    config: WindowConfig,
    queries: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Number of the terminal's transactions and their fraud rate in each
    window that ends `delay` before the query event; risk 0 when empty.

    `label` holds what is known: offline the true label, online the label if
    it had arrived by the query time (else 0).
    """
    counts, frauds = window_sums(group, time_ns, order, label, kernel_windows(config)[1], queries)
    nb = counts.astype(np.float64)
    risk = np.divide(frauds, nb, out=np.zeros_like(frauds), where=nb > 0)
    names = config.feature_names[2 * len(config.customer_windows_days) :]
    return {names[2 * j]: nb[j] for j in range(len(nb))} | {
        names[2 * j + 1]: risk[j] for j in range(len(nb))
    }


# -------------------------------------------------------------------- offline
def _check_columns(df: pd.DataFrame, config: WindowConfig) -> None:
    for name in config.required_columns:
        if name not in df.columns:
            raise InputError("required for behaviour features", field=name)
        if df[name].isna().any():
            raise InputError("missing values are not allowed here", field=name)
    # The same type checks as a schema's columns of these kinds (times are
    # checked where they are read: the engine itself has no earliest time).
    for spec in (FieldSpec(config.customer_col, "entity"),
                 FieldSpec(config.terminal_col, "entity"),
                 FieldSpec(config.amount_col, "numeric"),
                 FieldSpec(config.label_col, "label")):
        validate_column(spec, df[spec.name])


def add_window_features(df: pd.DataFrame, config: WindowConfig | None = None) -> pd.DataFrame:
    """A copy of `df` with the behaviour window features added (float64).

    Row order and index are preserved; `df` need not be sorted. Every row's
    features use only rows of the same frame (its history), with labels as
    they would be known `delay_days` later.
    """
    from gendetect.features.behaviour import Behaviour

    config = config or WindowConfig()
    _check_columns(df, config)
    # The one engine, over the declaration equivalent to these windows.
    return Behaviour.from_window_config(config).add_to_frame(df)
