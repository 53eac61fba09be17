"""Window features for single transactions at request time.

Reads the customer's and terminal's recent history from a state store and
runs the *same* kernel as the offline engine (gendetect.features.windows) on
that history plus the current transaction, so a model sees the same feature
values in serving as in training. Labels arrive later through `add_label` and
count toward terminal risk only from the time they arrived (`labelled_at`),
and only in the windows that end `delay_days` before the request, exactly
like the offline features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.state import (
    UNKNOWN_LABEL,
    Histories,
    Horizons,
    MemoryStateStore,
    StateStore,
    TxEvent,
)
from gendetect.features.windows import (
    WindowConfig,
    customer_window_features,
    days_to_ns,
    terminal_window_features,
)

_EPOCH = datetime(1970, 1, 1)
_NS = 1_000_000_000


def to_ns(value: Any) -> int:
    """A timestamp as int nanoseconds since the epoch, UTC.

    Accepts datetime / pandas Timestamp (naive = UTC), numpy datetime64, ISO
    8601 strings, and numbers as epoch seconds.
    """
    if value is pd.NaT:
        raise ValueError("missing timestamp")
    if isinstance(value, pd.Timestamp):
        return int(value.value)  # always UTC-based ns, whatever the unit
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1_000
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("missing timestamp")
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, Integral):
        return int(value) * _NS
    if isinstance(value, Real):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite time: {seconds}")
        # Whole and fractional seconds apart: seconds * 1e9 as one float
        # would round to ~256 ns at today's epoch values.
        whole = math.floor(seconds)
        return whole * _NS + round((seconds - whole) * _NS)
    if isinstance(value, str):
        return to_ns(pd.Timestamp(value))
    raise ValueError(f"not a timestamp: {type(value).__name__}")


def _transaction_id(value: Any, field: str) -> int:
    # Integer ids double as the tie-break between same-time transactions.
    if type(value) is int:  # the common case, before the slower ABC checks
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise InputError("must be an integer transaction id", field=field)


def _entity_key(value: Any, field: str) -> str:
    # 42, np.int64(42), 42.0 and "42" are the same customer.
    if type(value) is int or type(value) is str:
        return str(value)
    if value is None or isinstance(value, bool):
        raise InputError("must be an id", field=field)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _position(ids: np.ndarray, transaction_id: int) -> int | None:
    if not ids.size:
        return None
    i = int((ids == transaction_id).argmax())
    return i if ids[i] == transaction_id else None


class OnlineWindowFeatures:
    """Window features for one transaction at a time, backed by a state store."""

    def __init__(self, config: WindowConfig | None = None, store: StateStore | None = None) -> None:
        self.config = config or WindowConfig()
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self._horizons = Horizons(self.config.customer_horizon_ns, self.config.terminal_horizon_ns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.config.feature_names

    def compute_and_record(self, record: Mapping[str, Any]) -> dict[str, float]:
        """Features of `record` (the transaction itself included), which is then
        part of the history. Recording an already known transaction id again
        (a retried request) returns its features without counting it twice."""
        event = self._event(record)
        return self._features(event, self.store.record_and_read(event, self._horizons))

    def compute(self, record: Mapping[str, Any]) -> dict[str, float]:
        """Features of `record` as if it were recorded now, without recording it."""
        event = self._event(record)
        return self._features(event, self.store.read(event.customer, event.terminal))

    def add_label(self, transaction_id: Any, is_fraud: bool, labelled_at: Any) -> bool:
        """Record the label of a past transaction, known from `labelled_at` on.
        False if the transaction is unknown or too old to matter."""
        tid = _transaction_id(transaction_id, self.config.id_col)
        try:
            at_ns = to_ns(labelled_at)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputError(str(exc), field="labelled_at") from exc
        return self.store.add_label(tid, bool(is_fraud), at_ns)

    # ------------------------------------------------------------- internals
    def _event(self, record: Mapping[str, Any]) -> TxEvent:
        c = self.config
        for name in (c.id_col, c.time_col, c.customer_col, c.terminal_col, c.amount_col):
            if name not in record or record[name] is None:
                raise InputError("required for behaviour features", field=name)
        try:
            time_ns = to_ns(record[c.time_col])
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputError(str(exc), field=c.time_col) from exc
        try:
            amount = float(record[c.amount_col])
        except (ValueError, TypeError) as exc:
            raise InputError("must be a number", field=c.amount_col) from exc
        if not math.isfinite(amount):
            raise InputError("must be finite", field=c.amount_col)
        return TxEvent(
            transaction_id=_transaction_id(record[c.id_col], c.id_col),
            time_ns=time_ns,
            customer=_entity_key(record[c.customer_col], c.customer_col),
            terminal=_entity_key(record[c.terminal_col], c.terminal_col),
            amount=amount,
        )

    def _features(self, event: TxEvent, histories: Histories) -> dict[str, float]:
        tid = event.transaction_id
        h = histories.customer
        times, ids, amounts = h.time_ns, h.tx_id, h.amount
        q = _position(ids, tid)
        if q is None:  # compute(): the event is not stored; add it to a copy
            times, ids = np.append(times, event.time_ns), np.append(ids, tid)
            amounts, q = np.append(amounts, event.amount), len(times) - 1
        features = customer_window_features(
            np.zeros(len(times), np.int64), times, ids, amounts, self.config, np.array([q])
        )

        t = histories.terminal
        times, ids, label, labelled_at = t.time_ns, t.tx_id, t.label, t.labelled_at_ns
        q = _position(ids, tid)
        if q is None:
            times, ids = np.append(times, event.time_ns), np.append(ids, tid)
            label, labelled_at = np.append(label, UNKNOWN_LABEL), np.append(labelled_at, 0)
            q = len(times) - 1
        # A label counts once it has arrived (by the time of this request);
        # the kernel then keeps only transactions of the delayed windows.
        known = (label != UNKNOWN_LABEL) & (labelled_at <= times[q])
        fraud = np.where(known, label, 0).astype(np.float64)
        features |= terminal_window_features(
            np.zeros(len(times), np.int64), times, ids, fraud, self.config, np.array([q])
        )
        return {name: float(features[name][0]) for name in self.config.feature_names}


def replay(df: pd.DataFrame, online: OnlineWindowFeatures) -> pd.DataFrame:
    """Feed `df`'s transactions to `online` one at a time, as a live system
    would see them: in (time, transaction id) order, each label (if `df` has
    the label column) arriving `delay_days` after its transaction. Returns
    the features for every row of `df` (same index and row order).

    Used to warm a state store from history, and to check that the online
    features equal the offline ones (they do for any delay > 0; with no delay
    a transaction's own label would have to be known at its own request).
    """
    c = online.config
    if len(df) == 0:
        return pd.DataFrame({name: np.empty(0) for name in c.feature_names}, index=df.index)
    times = np.array([to_ns(v) for v in df[c.time_col]], dtype=np.int64)
    ids = np.array([_transaction_id(v, c.id_col) for v in df[c.id_col]], dtype=np.int64)
    sequence = np.lexsort((ids, times))
    fields = [c.id_col, c.time_col, c.customer_col, c.terminal_col, c.amount_col]
    records = df[fields].to_dict("records")
    labels = df[c.label_col].to_numpy() if c.label_col in df.columns else None
    label_at = times[sequence] + days_to_ns(c.delay_days)
    next_label = 0
    out = np.empty((len(df), len(c.feature_names)), dtype=np.float64)
    for k, i in enumerate(sequence):
        # Labels due by now arrive first (at its due time a label counts),
        # for transactions already seen.
        while labels is not None and next_label < k and label_at[next_label] <= times[i]:
            j = sequence[next_label]
            at = np.datetime64(int(label_at[next_label]), "ns")
            online.add_label(int(ids[j]), bool(labels[j]), at)
            next_label += 1
        out[i] = list(online.compute_and_record(records[i]).values())
    return pd.DataFrame(out, columns=list(c.feature_names), index=df.index)
