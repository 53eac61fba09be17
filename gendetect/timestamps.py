"""Timestamps as int64 nanoseconds since the epoch, UTC: the one conversion.

The window engine, the online state, the feature pipeline, batch scoring and
file reading all compare times as integer nanoseconds; each used to convert
on its own, with small differences (rounding of float seconds, numpy's
silent wrap-around past 2262, time zones). These are the only converters.
Naive times are UTC throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86_400
NS_PER_DAY = SECONDS_PER_DAY * NS_PER_SECOND

_EPOCH = datetime(1970, 1, 1)
# Nanoseconds per numpy datetime64 unit (sub-ns units as exact fractions).
_UNIT_NS: dict[str, int | Fraction] = {
    "W": 7 * NS_PER_DAY,
    "D": NS_PER_DAY,
    "h": 3_600 * NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "s": NS_PER_SECOND,
    "ms": 1_000_000,
    "us": 1_000,
    "ns": 1,
    "ps": Fraction(1, 1_000),
    "fs": Fraction(1, 1_000_000),
    "as": Fraction(1, 1_000_000_000),
}


def days_to_ns(days: float) -> int:
    """Nanoseconds in `days` days, rounded to whole nanoseconds."""
    return round(days * NS_PER_DAY)


def to_ns(value: Any) -> int:
    """One timestamp as int nanoseconds since the epoch, UTC.

    Accepts datetime / pandas Timestamp (naive = UTC), numpy datetime64, ISO
    8601 strings, and numbers as epoch seconds. Exact for every input (Python
    ints, no float rounding); raises ValueError for anything else.
    """
    if value is pd.NaT:
        raise ValueError("missing timestamp")
    if isinstance(value, pd.Timestamp):
        return int(value.value)  # always UTC-based ns, whatever the unit
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("missing timestamp")
        # Exact, in Python ints: numpy's own cast to [ns] wraps around
        # silently for dates beyond 2262.
        unit, step = np.datetime_data(value.dtype)
        if unit not in _UNIT_NS:  # years, months: whole days first
            value, unit, step = value.astype("datetime64[D]"), "D", 1
        count = int(value.astype(np.int64)) * step
        per = _UNIT_NS[unit]
        return count * per if isinstance(per, int) else count // per.denominator
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, Integral):
        return int(value) * NS_PER_SECOND
    if isinstance(value, Real):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite time: {seconds}")
        # Whole and fractional seconds apart: seconds * 1e9 as one float
        # would round to ~256 ns at today's epoch values.
        whole = math.floor(seconds)
        return whole * NS_PER_SECOND + round((seconds - whole) * NS_PER_SECOND)
    if isinstance(value, str):
        return to_ns(pd.Timestamp(value))
    raise ValueError(f"not a timestamp: {type(value).__name__}")


def to_utc_datetime64(values: pd.Series | np.ndarray | Sequence[Any]) -> pd.Series:
    """A column of timestamps (datetime64 of any unit or zone, ISO strings,
    datetimes) as naive UTC datetime64[ns]; unparsable values raise
    ValueError / TypeError from pandas."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    # A column of numbers is refused rather than guessed: seconds,
    # milliseconds and nanoseconds since 1970 all look alike (and pandas is
    # moving from refusing them to reading them as epochs).
    if pd.api.types.is_numeric_dtype(series):  # booleans included
        raise TypeError(f"timestamps must be date-times or ISO 8601 text, not numbers "
                        f"({series.dtype})")
    if not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, utc=True, format="ISO8601")
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    # pandas may hold s/ms/us resolution; everything downstream works in ns.
    return series.astype("datetime64[ns]")


def column_to_ns(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """A column of timestamps as int64 nanoseconds since the epoch, UTC."""
    return to_utc_datetime64(values).to_numpy().view(np.int64)
