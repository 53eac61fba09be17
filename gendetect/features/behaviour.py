"""Behaviour features of a schema: its declared aggregates (`aggregates:`,
gendetect.features.aggregates) and the columns they are read from, computed
by the one engine (gendetect.features.aggregate_engine) over a DataFrame
(`Behaviour.add_to_frame`) or over a stream of chunks (`AggregateHistory`).

The legacy `windows:` block (WindowConfig) is translated to the equivalent
declaration (`Behaviour.from_window_config`): same names, same values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.aggregate_engine import aggregate_features
from gendetect.features.aggregates import AggregateDeclaration, AggregateFeature, AggregateGroup
from gendetect.features.windows import WindowConfig
from gendetect.timestamps import NS_PER_DAY, column_to_ns, days_to_ns

if TYPE_CHECKING:
    from gendetect.schema import Schema

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Behaviour:
    """A declaration and the event columns it needs: the time, the tie-break
    (an integer id column, else the row position) and the label."""

    declaration: AggregateDeclaration
    time_col: str = "timestamp"
    id_col: str | None = "transaction_id"
    label_col: str | None = "is_fraud"

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """The features in the model's column order: group by group, and
        within a group window by window (each window's features in declared
        order; since_previous last), as the handbook orders its twelve. The
        column order shapes a trained network, so it is fixed here once."""
        names: list[str] = []
        for g in self.declaration.groups:
            rank = {w: i for i, w in enumerate(g.windows_ns)}
            ordered = sorted(g.features, key=lambda f: rank.get(f.window_ns, len(rank)))
            names += [f.name for f in ordered]
        return tuple(names)

    @property
    def horizon_ns(self) -> int:
        """How much history any feature needs (delay + longest window)."""
        return self.declaration.horizon_ns

    @property
    def label_delay_ns(self) -> int:
        """The delay of the groups that read labels (0 when none does)."""
        return max((g.delay_ns for g in self.declaration.groups if g.needs_label), default=0)

    @cached_property
    def input_columns(self) -> tuple[str, ...]:
        """Columns the features read besides time, id and label."""
        cols: list[str] = []
        for g in self.declaration.groups:
            cols += [*g.key, *g.value_columns, *g.distinct_columns]
        return tuple(dict.fromkeys(cols))

    # ------------------------------------------------------------ construction
    @classmethod
    def from_schema(cls, schema: Schema) -> Behaviour | None:
        kinds = {f.name: f.kind for f in schema.fields}
        time_col = next((n for n, k in kinds.items() if k == "timestamp"), None)
        id_col = next((n for n, k in kinds.items() if k == "id"), None)
        label_col = schema.label_field
        declaration = getattr(schema, "aggregates", None)
        if declaration is not None:
            assert time_col is not None, "the schema checks that aggregates have a time"
            return cls(declaration, time_col, id_col, label_col)
        if schema.windows:
            return cls.from_window_config(WindowConfig.from_dict(schema.windows))
        return None

    @classmethod
    def from_window_config(cls, config: WindowConfig) -> Behaviour:
        """The legacy windows as a declaration, with the legacy names and
        column order (number then mean amount per window, per entity)."""
        def days(w: int | float) -> str:
            return str(int(w)) if float(w).is_integer() else str(w).replace(".", "p")

        c_windows = tuple(days_to_ns(w) for w in config.customer_windows_days)
        t_windows = tuple(days_to_ns(w) for w in config.terminal_windows_days)
        delay = days_to_ns(config.delay_days)
        customer = tuple(
            f for w, ns in zip(config.customer_windows_days, c_windows, strict=True)
            for f in (AggregateFeature(f"customer_nb_tx_{days(w)}d", "count", None, ns),
                      AggregateFeature(f"customer_avg_amount_{days(w)}d", "mean",
                                       config.amount_col, ns)))
        terminal = tuple(
            f for w, ns in zip(config.terminal_windows_days, t_windows, strict=True)
            for f in (AggregateFeature(f"terminal_nb_tx_{days(w)}d", "count", None, ns),
                      AggregateFeature(f"terminal_risk_{days(w)}d", "label_rate", None, ns)))
        groups = (
            AggregateGroup((config.customer_col,), c_windows, customer, 0, "customer",
                           "customer", max(c_windows)),
            AggregateGroup((config.terminal_col,), t_windows, terminal, delay, "terminal",
                           "terminal", delay + max(t_windows)),
        )
        return cls(AggregateDeclaration(groups), config.time_col, config.id_col, config.label_col)

    @cached_property
    def window_config(self) -> WindowConfig | None:
        """The legacy WindowConfig this declaration is equivalent to (the
        handbook's shape: count and mean amount per customer, count and label
        rate per terminal, whole or fractional days), else None. For the
        surfaces that still speak WindowConfig."""
        groups = self.declaration.groups
        if len(groups) != 2 or len(groups[0].key) != 1 or len(groups[1].key) != 1:
            return None
        means = {f.of for f in groups[0].features if f.kind == "mean"}
        if len(means) != 1 or groups[0].delay_ns or not groups[0].windows_ns:
            return None
        try:
            config = WindowConfig(
                time_col=self.time_col, customer_col=groups[0].key[0],
                terminal_col=groups[1].key[0], amount_col=means.pop() or "",
                label_col=self.label_col or "is_fraud", id_col=self.id_col or "transaction_id",
                customer_windows_days=tuple(_days(w) for w in groups[0].windows_ns),
                terminal_windows_days=tuple(_days(w) for w in groups[1].windows_ns),
                delay_days=_days(groups[1].delay_ns))
        except (InputError, ValueError, TypeError):
            return None
        legacy = Behaviour.from_window_config(config).declaration.groups
        same = all(set(a.features) == set(b.features) and a.key == b.key and a.delay_ns ==
                   b.delay_ns for a, b in zip(legacy, groups, strict=True))
        return config if same else None

    # ----------------------------------------------------------------- inputs
    def check_columns(self, df: pd.DataFrame) -> None:
        for name in (self.time_col, *self.input_columns):
            if name not in df.columns:
                raise InputError("required for behaviour features", field=name)

    def order_of(self, df: pd.DataFrame, start: int = 0) -> np.ndarray:
        """The tie-break: the integer id column, else the row position."""
        if self.id_col and self.id_col in df.columns and pd.api.types.is_integer_dtype(
                df[self.id_col]):
            return df[self.id_col].to_numpy(dtype=np.int64)
        return np.arange(start, start + len(df), dtype=np.int64)

    def label_of(self, df: pd.DataFrame) -> np.ndarray | None:
        """Labels as float64 (1 = fraud; 0, -1, NaN are not), None when the
        frame has no label column."""
        if not self.declaration.needs_label:
            return None
        if self.label_col is None or self.label_col not in df.columns:
            return None
        return pd.to_numeric(df[self.label_col], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)

    def compute(
        self, columns: Mapping[str, np.ndarray], time_ns: np.ndarray, order: np.ndarray,
        label: np.ndarray | None, queries: np.ndarray | None = None,
    ) -> Columns:
        if label is None and self.declaration.needs_label:
            label = np.zeros(len(time_ns))
        return aggregate_features(self.declaration.groups, columns, time_ns, order, label,
                                  None, queries)

    def add_to_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of `df` with the features added (float64); row order and
        index are kept; every row's history is the frame itself."""
        self.check_columns(df)
        try:
            time_ns = column_to_ns(df[self.time_col])
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"not a timestamp ({exc})", field=self.time_col) from exc
        label = self.label_of(df)
        if label is None and self.declaration.needs_label:
            log.warning("no %r column: label rates are 0", self.label_col)
        columns = {c: df[c].to_numpy() for c in self.input_columns}
        features = self.compute(columns, time_ns, self.order_of(df), label)
        # One concatenation (not one insertion per feature): a rich
        # declaration adds dozens of columns.
        added = pd.DataFrame({name: features[name] for name in self.feature_names},
                             index=df.index)
        kept = df.drop(columns=[c for c in self.feature_names if c in df.columns])
        return pd.concat([kept, added], axis=1)


def _days(ns: int) -> int | float:
    days = ns / NS_PER_DAY
    return int(days) if ns % NS_PER_DAY == 0 else days


class AggregateHistory:
    """Behaviour features over a stream of chunks in time order, exact.

    A row's features depend on earlier rows of its keys, which may sit in
    earlier chunks. Each chunk is computed over the carried tail of history
    (every earlier row within the declaration's horizon) followed by the
    chunk; only the chunk's rows are answered, so the result equals the
    engine on the whole stream at once.

    Chunks must come in time order, and rows with the same timestamp must
    not be split across chunks (the tie rule orders them by transaction id,
    which a later chunk could violate): `split_at_last_time` gives the cut.
    A row position stands in for the id when the id is not an integer
    column, counted over the whole stream as the offline engine does.
    """

    def __init__(self, behaviour: Behaviour | WindowConfig) -> None:
        if isinstance(behaviour, WindowConfig):
            behaviour = Behaviour.from_window_config(behaviour)
        self.behaviour = behaviour
        self.rows_seen = 0
        self.last_time: int | None = None
        self._tail: dict[str, np.ndarray] | None = None
        self._warned_no_label = False

    @property
    def tail_rows(self) -> int:
        return 0 if self._tail is None else len(self._tail["__time"])

    def features(self, df: pd.DataFrame, time_ns: np.ndarray) -> Columns:
        b = self.behaviour
        n = len(df)
        if n and self.last_time is not None and int(time_ns.min()) <= self.last_time:
            first = int(np.argmax(time_ns <= self.last_time))
            raise InputError(
                f"rows are not in time order across chunks (row {self.rows_seen + first} is not "
                "after the previous chunk): sort the file by time, or score it in one piece",
                field=b.time_col,
            )
        label = b.label_of(df)
        if label is None and b.declaration.needs_label:
            if not self._warned_no_label:
                # Unlabelled history: label rates are 0 everywhere. Say so once.
                log.warning("no %r column: label rates are 0", b.label_col)
                self._warned_no_label = True
            label = np.zeros(n)
        chunk = {c: df[c].to_numpy() for c in b.input_columns}
        chunk["__time"] = np.asarray(time_ns, dtype=np.int64)
        chunk["__order"] = b.order_of(df, self.rows_seen)
        chunk["__label"] = label if label is not None else np.zeros(n)
        tail = self._tail
        if tail is None or len(tail["__time"]) == 0:
            events, queries = chunk, None
        else:
            events = {k: _concat(tail[k], v) for k, v in chunk.items()}
            queries = np.arange(len(tail["__time"]), len(events["__time"]), dtype=np.int64)
        if n:
            out = b.compute(events, events["__time"], events["__order"], events["__label"],
                            queries)
            last = int(events["__time"].max())
            keep = events["__time"] > last - b.horizon_ns
            self._tail = {k: v[keep] for k, v in events.items()}
            self.last_time = last
        else:
            out = {name: np.zeros(0) for name in b.feature_names}
        self.rows_seen += n
        return {name: out[name] for name in b.feature_names}


def _concat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Keys may be ints in one chunk and text (or floats with gaps) in the
    # next: an object array keeps each value as it is.
    numeric = a.dtype.kind in "iufb" and b.dtype.kind in "iufb"
    if a.dtype != b.dtype and not numeric:
        return np.concatenate([a.astype(object), b.astype(object)])
    return np.concatenate([a, b])
