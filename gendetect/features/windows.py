"""The legacy behaviour windows: their configuration (WindowConfig, a
schema's `windows:` block), the windows it defines (Window, kernel_windows)
and their semantics, used by the online state (gendetect.features.state).
Offline, in batch and on Spark a WindowConfig is computed as the equivalent
declared aggregates (gendetect.features.behaviour.Behaviour.from_window_config,
gendetect.aggregates), with the same names and values.

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

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property, lru_cache
from typing import Any

from gendetect.errors import InputError
from gendetect.timestamps import days_to_ns

# A window as (start_ns, end_ns): events with time > t - start_ns and either
# time <= t - end_ns, or, when end_ns is None, (time, order) <= the query
# event's own (time, order) (the window that includes the current event).
Window = tuple[int, int | None]


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
    if len(set(days)) != len(days):
        raise InputError(f"duplicate windows in {value!r}", field=name)
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
            raise InputError(
                f"expected a non-negative number of days, got {delay!r}", field="delay_days"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WindowConfig:
        """Build from a mapping (e.g. a schema's or config's `windows:` block);
        unknown keys are an error so that a typo does not silently fall back
        to a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(
                f"unknown window setting(s) {unknown}; known: {sorted(known)}", field=unknown[0]
            )
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["customer_windows_days"] = list(self.customer_windows_days)
        out["terminal_windows_days"] = list(self.terminal_windows_days)
        return out

    @cached_property
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
        return (
            self.time_col,
            self.customer_col,
            self.terminal_col,
            self.amount_col,
            self.label_col,
        )


def _fmt_days(days: int | float) -> str:
    return str(int(days)) if float(days).is_integer() else str(days).replace(".", "p")


@lru_cache(maxsize=64)
def kernel_windows(config: WindowConfig) -> tuple[tuple[Window, ...], tuple[Window, ...]]:
    """The kernel windows of a config: customer (t - w, current event] and
    terminal (t - delay - w, t - delay]."""
    delay = days_to_ns(config.delay_days)
    # Without delay the terminal window ends at the current event, tie rule
    # included (pandas: count over w minus count over an empty 0-day window).
    end = delay if delay > 0 else None
    customer = tuple((days_to_ns(w), None) for w in config.customer_windows_days)
    terminal = tuple((delay + days_to_ns(w), end) for w in config.terminal_windows_days)
    return customer, terminal
