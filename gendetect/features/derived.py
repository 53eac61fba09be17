"""Stateless derived features: functions of one record, vectorised over columns.

Timestamps arrive as int64 nanoseconds since the Unix epoch (UTC), the one
representation both the DataFrame path and the single-record API path use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gendetect.timestamps import NS_PER_SECOND, SECONDS_PER_DAY


def _seconds_of_day(ts_ns: np.ndarray) -> np.ndarray:
    return (ts_ns // NS_PER_SECOND) % SECONDS_PER_DAY


def hour_sin(ts_ns: np.ndarray) -> np.ndarray:
    # Cyclic encoding: 23:59 and 00:00 are neighbours, which a raw hour hides.
    return np.sin(2.0 * np.pi * _seconds_of_day(ts_ns) / SECONDS_PER_DAY)


def hour_cos(ts_ns: np.ndarray) -> np.ndarray:
    return np.cos(2.0 * np.pi * _seconds_of_day(ts_ns) / SECONDS_PER_DAY)


def weekend(ts_ns: np.ndarray) -> np.ndarray:
    # 1970-01-01 was a Thursday: (days + 3) % 7 numbers Monday as 0.
    weekday = (ts_ns // (NS_PER_SECOND * SECONDS_PER_DAY) + 3) % 7
    return (weekday >= 5).astype(np.float64)


def night(ts_ns: np.ndarray) -> np.ndarray:
    # The handbook's definition: hour of day <= 6.
    return (_seconds_of_day(ts_ns) < 7 * 3600).astype(np.float64)


def log1p(values: np.ndarray) -> np.ndarray:
    # Amounts are heavy-tailed and non-negative (the schema enforces min 0).
    return np.log1p(np.maximum(values.astype(np.float64), 0.0))


def log_ratio(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """log(1 + value) - log(1 + reference): e.g. an amount against the
    customer's own average. Scenario-3 fraud (amount x5) is invisible in the
    amount alone for big spenders and obvious against their history."""
    return log1p(values) - log1p(reference)


def ratio(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(1 + value) / (1 + reference), unlogged. For fraud the upper tail is the
    one that matters: 5x a customer's average sits far out on this scale,
    whereas a logarithm compresses it and stretches the harmless lower tail
    (a coffee bought by a big spender) into the most extreme values."""
    return (1.0 + np.maximum(values.astype(np.float64), 0.0)) / (
        1.0 + np.maximum(reference.astype(np.float64), 0.0)
    )


# Ops of two columns: (value column, reference column `by`).
TWO_COLUMN_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "log_ratio": log_ratio,
    "ratio": ratio,
}

DERIVED_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log1p": log1p,
    "hour_sin": hour_sin,
    "hour_cos": hour_cos,
    "weekend": weekend,
    "night": night,
}
