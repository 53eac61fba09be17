"""Train/test splits that respect time, and random validation splits.

Fraud labels arrive late and behaviour drifts, so evaluation trains on earlier
days and tests on a later period, with a gap ("delay") between them that
stands for labels not yet known when the model is trained.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gendetect.errors import InputError


def _window_start(times: pd.Series, start: str | dt.date | pd.Timestamp | None) -> pd.Timestamp:
    """`start` as a Timestamp comparable with `times` (same timezone), or the
    midnight of the first day in the data when not given."""
    if start is None:
        return pd.Timestamp(times.min()).normalize()
    ts = pd.Timestamp(start)
    tz = getattr(times.dt, "tz", None)
    if tz is not None and ts.tzinfo is None:
        return ts.tz_localize(tz)
    if tz is None and ts.tzinfo is not None:
        return ts.tz_convert("UTC").tz_localize(None)
    return ts


def _check_days(train_days: int, delay_days: int, test_days: int) -> None:
    if train_days <= 0 or test_days <= 0:
        raise ValueError(f"train_days and test_days must be > 0, got {train_days}, {test_days}")
    if delay_days < 0:
        raise ValueError(f"delay_days must be >= 0, got {delay_days}")


def _time_column(df: pd.DataFrame, time_col: str) -> pd.Series:
    if time_col not in df.columns:
        raise InputError("time column not found", field=time_col)
    times = df[time_col]
    if not pd.api.types.is_datetime64_any_dtype(times):
        raise InputError(f"expected a datetime column, got {times.dtype}", field=time_col)
    if times.isna().all():
        raise InputError("time column has no values", field=time_col)
    return times


def time_split(
    df: pd.DataFrame,
    *,
    time_col: str = "timestamp",
    train_days: int,
    delay_days: int,
    test_days: int,
    start: str | dt.date | pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by time into (train, test), both half-open intervals:

    train = [start, start + train_days)
    test  = [start + train_days + delay_days, ... + test_days)

    Rows in the delay gap and outside both windows are dropped. `start`
    defaults to midnight of the first day in the data. The original index is
    kept so rows can be traced back.
    """
    _check_days(train_days, delay_days, test_days)
    times = _time_column(df, time_col)
    train_start = _window_start(times, start)
    test_start = train_start + pd.Timedelta(days=train_days + delay_days)
    train_mask = (times >= train_start) & (times < train_start + pd.Timedelta(days=train_days))
    test_mask = (times >= test_start) & (times < test_start + pd.Timedelta(days=test_days))
    return df.loc[train_mask], df.loc[test_mask]


@dataclass(frozen=True)
class HoldoutWindows:
    """Day boundaries of a split that holds out the last days of the data
    (midnights; train is [train_start, train_end), test starts at test_start
    and runs to the end of the data)."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    holdout_days: int

    @property
    def train_days(self) -> int:
        return (self.train_end - self.train_start).days

    @property
    def delay_days(self) -> int:
        return (self.test_start - self.train_end).days


def holdout_windows(
    times: pd.Series, *, holdout_days: int, delay_days: int = 0, skip_days: int = 0
) -> HoldoutWindows:
    """The windows of `holdout_split` for these timestamps (see there)."""
    _check_days(1, delay_days, holdout_days)
    if skip_days < 0:
        raise ValueError(f"skip_days must be >= 0, got {skip_days}")
    first_day = pd.Timestamp(times.min()).normalize()
    test_start = pd.Timestamp(times.max()).normalize() - pd.Timedelta(days=holdout_days - 1)
    train_end = test_start - pd.Timedelta(days=delay_days)
    return HoldoutWindows(
        first_day + pd.Timedelta(days=skip_days), train_end, test_start, holdout_days
    )


def holdout_split(
    df: pd.DataFrame,
    *,
    time_col: str = "timestamp",
    holdout_days: int,
    delay_days: int = 0,
    skip_days: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last `holdout_days` calendar days of the data as test,
    drop the `delay_days` before them (labels not known yet at training
    time), and train on the rest after skipping the first `skip_days` days
    (e.g. while behaviour windows fill up). A `time_split` counted from the
    end of the data; raises InputError when no training day is left."""
    times = _time_column(df, time_col)
    windows = holdout_windows(
        times, holdout_days=holdout_days, delay_days=delay_days, skip_days=skip_days
    )
    if windows.train_days <= 0:
        raise InputError(
            f"no training days left before a {holdout_days}-day held-out period "
            f"and a {delay_days}-day delay",
            field=time_col,
        )
    return time_split(
        df,
        time_col=time_col,
        train_days=windows.train_days,
        delay_days=delay_days,
        test_days=holdout_days,
        start=windows.train_start,
    )


def train_validation_split(
    n_rows: int, *, validation_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of row positions 0..n_rows-1.

    Returns (train_idx, val_idx), each sorted ascending (so indexing keeps the
    original, e.g. time, order). With a positive fraction and at least two
    rows, both parts get at least one row.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    n_val = round(n_rows * validation_fraction)
    if validation_fraction > 0 and n_rows >= 2:
        n_val = min(max(n_val, 1), n_rows - 1)
    perm = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)
