"""Behaviour window features: the configuration, the one computation kernel,
and the offline engine over a whole DataFrame.

The same kernel (`customer_window_features` / `terminal_window_features`)
serves training files and the online API (gendetect.features.online calls it
on one entity's stored history), so the two paths cannot drift apart.

Semantics (the fraud-detection handbook's, i.e. pandas `rolling('<w>d')` on a
datetime index per entity):
- customer, window w: transactions with time in (t - w, t], the current one
  included; among transactions at the *same* timestamp only those up to the
  current one in (time, transaction id) order count, because pandas' rolling
  ends each window at the current row of the sorted frame.
- terminal, window w, delay d: transactions with time in (t - d - w, t - d]
  (labels arrive d days late); risk = frauds / count, 0 when empty. Ties at t
  cannot matter here since the window ends strictly before t (for d > 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from gendetect.errors import InputError

NS_PER_DAY = 86_400 * 1_000_000_000

# A window as (start_ns, end_ns): events with time > t - start_ns and either
# time <= t - end_ns, or, when end_ns is None, (time, order) <= the query
# event's own (time, order) (the window that includes the current event).
Window = tuple[int, int | None]


def days_to_ns(days: float) -> int:
    """Nanoseconds in `days` days, rounded to whole nanoseconds."""
    return round(days * NS_PER_DAY)


def _as_days_tuple(value: Any, name: str) -> tuple[int | float, ...]:
    if isinstance(value, (int, float)):
        value = (value,)
    try:
        days = tuple(value)
    except TypeError as exc:
        raise InputError(f"expected a list of days, got {value!r}", field=name) from exc
    if not days or any(
        isinstance(d, bool) or not isinstance(d, (int, float)) or not d > 0 for d in days
    ):
        raise InputError(f"expected a non-empty list of positive days, got {value!r}", field=name)
    return days


@dataclass(frozen=True)
class WindowConfig:
    """Column names and window sizes of the behaviour features."""

    time_col: str = "timestamp"
    customer_col: str = "customer_id"
    terminal_col: str = "terminal_id"
    amount_col: str = "amount"
    label_col: str = "is_fraud"
    id_col: str = "transaction_id"
    customer_windows_days: tuple[int | float, ...] = (1, 7, 30)
    terminal_windows_days: tuple[int | float, ...] = (1, 7, 30)
    delay_days: int | float = 7

    def __post_init__(self) -> None:
        # YAML gives lists; a frozen dataclass must hold hashable tuples.
        for name in ("customer_windows_days", "terminal_windows_days"):
            object.__setattr__(self, name, _as_days_tuple(getattr(self, name), name))
        delay = self.delay_days
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise InputError(f"expected a non-negative number of days, got {delay!r}",
                             field="delay_days")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WindowConfig:
        """Build from a mapping (e.g. a schema's or config's `windows:` block);
        unknown keys are an error so that a typo does not silently fall back
        to a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"unknown window setting(s) {unknown}; known: {sorted(known)}",
                             field=unknown[0])
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["customer_windows_days"] = list(self.customer_windows_days)
        out["terminal_windows_days"] = list(self.terminal_windows_days)
        return out

    @property
    def feature_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for w in self.customer_windows_days:
            names += [f"customer_nb_tx_{_fmt_days(w)}d", f"customer_avg_amount_{_fmt_days(w)}d"]
        for w in self.terminal_windows_days:
            names += [f"terminal_nb_tx_{_fmt_days(w)}d", f"terminal_risk_{_fmt_days(w)}d"]
        return tuple(names)

    @property
    def customer_horizon_ns(self) -> int:
        """How far back a customer's history matters to any future window."""
        return days_to_ns(max(self.customer_windows_days))

    @property
    def terminal_horizon_ns(self) -> int:
        return days_to_ns(self.delay_days + max(self.terminal_windows_days))

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.time_col, self.customer_col, self.terminal_col, self.amount_col,
                self.label_col)


def _fmt_days(days: int | float) -> str:
    return str(int(days)) if float(days).is_integer() else str(days).replace(".", "p")


# --------------------------------------------------------------------- kernel
def _segmented_prefix(values: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """Prefix sums of `values` (rows sorted by entity) restarted per entity.

    Layout: a correction slot precedes each entity's segment, holding minus
    the previous segment's total, so the running sum returns to ~0 there.
    Then prefix(p, s) = out[p + s] for a position p of segment s. Restarting
    matters for precision: a single cumsum over millions of amounts reaches
    ~1e8 and loses ~1e-8 per step, which would make offline sums differ from
    the online ones (computed on one entity's short history) by far more
    than rounding.
    """
    n, k = values.shape
    n_seg = len(seg_starts)
    ext = np.zeros((n + n_seg, k), dtype=np.float64)
    seg_of = np.repeat(np.arange(n_seg), np.diff(np.append(seg_starts, n)))
    ext[np.arange(n) + seg_of + 1] = values
    if n_seg > 1:
        totals = np.add.reduceat(values, seg_starts, axis=0)
        ext[seg_starts[1:] + np.arange(1, n_seg)] = -totals[:-1]
    return np.cumsum(ext, axis=0)


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
    and tie-break (transaction id); values: (n, k) float64; windows: see
    `Window`; queries: indices of the events to compute for (all if None).
    Returns counts (q, n_windows) int64 and sums (q, n_windows, k) float64.
    Input need not be sorted.

    How: events sorted by (entity, time, order) get a strictly increasing
    int64 key entity * (n + 1) + rank, where rank is the event's position in
    the global (time, order) order. "Events of entity g with time <= T" is
    then a prefix of that entity's segment found with two binary searches,
    and a window's count/sum is a difference of positions/prefix sums.
    """
    group = np.asarray(group, dtype=np.int64)
    time_ns = np.asarray(time_ns, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(len(time_ns), -1)
    n = len(time_ns)
    q_idx = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    n_q, n_w, k = len(q_idx), len(windows), values.shape[1]
    if n_q == 0:
        return np.zeros((0, n_w), np.int64), np.zeros((0, n_w, k))
    stride = n + 1
    if group.min() < 0 or int(group.max()) >= np.iinfo(np.int64).max // stride - 1:
        raise ValueError("entity codes must be non-negative and below 2**63 / (n + 1)")

    by_time = np.lexsort((order, time_ns))
    t_sorted = time_ns[by_time]
    rank = np.empty(n, dtype=np.int64)
    rank[by_time] = np.arange(n)
    key = group * stride + rank
    perm = np.argsort(key)
    key_sorted = key[perm]
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    g_sorted = group[perm]
    new_seg = np.empty(n, dtype=bool)
    new_seg[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=new_seg[1:])
    seg_starts = np.flatnonzero(new_seg)
    seg_of_sorted = np.cumsum(new_seg) - 1
    prefix = _segmented_prefix(values[perm], seg_starts)

    q_pos = pos[q_idx]
    q_seg = seg_of_sorted[q_pos]
    q_time = time_ns[q_idx]
    q_base = group[q_idx] * stride
    cache: dict[int | None, np.ndarray] = {None: q_pos + 1}

    def bound(offset: int | None) -> np.ndarray:
        # Position just past the entity's events with time <= t - offset.
        if offset not in cache:
            assert offset is not None
            n_at_or_before = np.searchsorted(t_sorted, q_time - offset, side="right")
            cache[offset] = np.searchsorted(key_sorted, q_base + n_at_or_before, side="left")
        return cache[offset]

    counts = np.empty((n_q, n_w), dtype=np.int64)
    sums = np.empty((n_q, n_w, k), dtype=np.float64)
    for j, (start_ns, end_ns) in enumerate(windows):
        lo, hi = bound(start_ns), bound(end_ns)
        counts[:, j] = hi - lo
        sums[:, j] = prefix[hi + q_seg] - prefix[lo + q_seg]
    return counts, sums


def customer_window_features(
    group: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    amount: np.ndarray,
    config: WindowConfig,
    queries: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Number and mean amount of the customer's transactions per window."""
    windows = [(days_to_ns(w), None) for w in config.customer_windows_days]
    counts, sums = window_sums(group, time_ns, order, amount, windows, queries)
    out: dict[str, np.ndarray] = {}
    for j, w in enumerate(config.customer_windows_days):
        nb = counts[:, j].astype(np.float64)
        # The window includes the query event itself, so nb >= 1.
        out[f"customer_nb_tx_{_fmt_days(w)}d"] = nb
        out[f"customer_avg_amount_{_fmt_days(w)}d"] = sums[:, j, 0] / nb
    return out


def terminal_window_features(
    group: np.ndarray,
    time_ns: np.ndarray,
    order: np.ndarray,
    label: np.ndarray,
    config: WindowConfig,
    queries: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Number of the terminal's transactions and their fraud rate in each
    window that ends `delay` before the query event.

    `label` holds what is known: offline the true label, online the label if
    it had arrived by the query time (else 0).
    """
    delay = days_to_ns(config.delay_days)
    # Without delay the window ends at the current event, tie rules included
    # (pandas: count over w minus count over an empty 0-day window).
    end = delay if delay > 0 else None
    windows = [(delay + days_to_ns(w), end) for w in config.terminal_windows_days]
    counts, sums = window_sums(group, time_ns, order, label, windows, queries)
    out: dict[str, np.ndarray] = {}
    for j, w in enumerate(config.terminal_windows_days):
        nb = counts[:, j].astype(np.float64)
        frauds = sums[:, j, 0]
        risk = np.divide(frauds, nb, out=np.zeros_like(frauds), where=nb > 0)
        out[f"terminal_nb_tx_{_fmt_days(w)}d"] = nb
        out[f"terminal_risk_{_fmt_days(w)}d"] = risk
    return out


# -------------------------------------------------------------------- offline
def _time_ns(series: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, utc=True, format="ISO8601")
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    # .astype keeps whatever resolution pandas chose (it may be us or s).
    return series.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _entity_codes(series: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(series)
    return codes.astype(np.int64)


def _tie_order(df: pd.DataFrame, config: WindowConfig) -> np.ndarray:
    """Tie-break for equal timestamps: the transaction id (the handbook data
    confirms it: of two same-second transactions of a customer the one with
    the smaller id sees only itself); row position when there is no usable id."""
    if config.id_col in df.columns and pd.api.types.is_integer_dtype(df[config.id_col]):
        return df[config.id_col].to_numpy(dtype=np.int64)
    return np.arange(len(df), dtype=np.int64)


def _check_columns(df: pd.DataFrame, config: WindowConfig) -> None:
    for name in config.required_columns:
        if name not in df.columns:
            raise InputError("required for behaviour features", field=name)
        if df[name].isna().any():
            raise InputError("missing values are not allowed here", field=name)


def add_window_features(df: pd.DataFrame, config: WindowConfig | None = None) -> pd.DataFrame:
    """A copy of `df` with the behaviour window features added (float64).

    Row order and index are preserved; `df` need not be sorted. Every row's
    features use only rows of the same frame (its history), with labels as
    they would be known `delay_days` later.
    """
    config = config or WindowConfig()
    _check_columns(df, config)
    time_ns = _time_ns(df[config.time_col])
    order = _tie_order(df, config)
    amount = df[config.amount_col].to_numpy(dtype=np.float64)
    label = df[config.label_col].to_numpy(dtype=np.float64)
    features = customer_window_features(
        _entity_codes(df[config.customer_col]), time_ns, order, amount, config
    )
    features |= terminal_window_features(
        _entity_codes(df[config.terminal_col]), time_ns, order, label, config
    )
    out = df.copy()
    for name in config.feature_names:
        out[name] = features[name]
    return out
