"""The feature pipeline: raw records -> model input matrix.

Shared by training, batch scoring and the API. Records travel as *columns*
(field name -> 1-D numpy array): a DataFrame becomes columns once, a single
API record becomes columns of length one, and the same code computes the
features for both. Keeping pandas off the single-record path is what makes
millisecond scoring possible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.behaviour import AggregateHistory, Behaviour
from gendetect.features.derived import TWO_COLUMN_FUNCTIONS
from gendetect.features.missing import absent_column
from gendetect.features.static import StaticFeatures
from gendetect.schema import Schema
from gendetect.timestamps import column_to_ns, to_ns

if TYPE_CHECKING:
    from gendetect.features.categorical import CategoricalEncoder
    from gendetect.features.windows import WindowConfig

# The chunked history of behaviour features (its old name).
WindowHistory = AggregateHistory

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


class FeaturePipeline:
    """Turns validated records into the numeric matrix the detectors see.

    Columns of the output, in order: the static features (feature fields,
    each nullable one followed by its gap indicator, categorical encodings
    and derived features: gendetect.features.static), then behaviour
    features (schema `aggregates:`, or the legacy `windows:`), whose values
    come from the aggregate engine for files and from the online state store
    for API requests.
    """

    def __init__(self, schema: Schema, state: Mapping[str, Any] | None = None) -> None:
        self.schema = schema
        self.behaviour: Behaviour | None = Behaviour.from_schema(schema)
        self._timestamp_fields = {f.name for f in schema.fields if f.kind == "timestamp"}
        self._derived_sources = {d.source for d in schema.derived}
        window_names = set(self.window_feature_names)
        for d in schema.derived:
            if d.op in TWO_COLUMN_FUNCTIONS and d.by not in window_names and d.by not in schema:
                raise ValueError(f"derived {d.name!r}: unknown column {d.by!r} in 'by'")
        if self.window_config is not None:
            config = self.window_config
            for name in (config.time_col, config.customer_col, config.terminal_col,
                         config.amount_col):
                if name in schema and schema[name].nullable:
                    # The behaviour windows sum and count every transaction:
                    # a gap would make every later feature of the card a gap.
                    raise ValueError(f"field {name!r} feeds the behaviour windows and "
                                     "cannot be nullable")
        self.static = StaticFeatures(schema, state)

    # ------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        """True when every categorical feature has its levels."""
        return self.static.is_fitted

    def fit(self, df: pd.DataFrame) -> FeaturePipeline:
        """Learn the levels of categorical features without declared
        categories from the training rows (validated)."""
        self.static.fit(df)
        return self

    def state(self) -> dict[str, Any]:
        """What a saved model keeps of the fit: the learned levels (JSON)."""
        return self.static.state()

    def encoder(self, name: str) -> CategoricalEncoder:
        return self.static.encoder(name)

    def unseen_levels(self) -> dict[str, int]:
        """Per categorical field, how many values of a level never seen in
        training were scored (as "other") since this pipeline was built."""
        return self.static.unseen_levels()

    # ------------------------------------------------------------------ names
    @property
    def window_config(self) -> WindowConfig | None:
        """The legacy WindowConfig equivalent to the behaviour features, for
        the surfaces that still speak it (None when the declaration has no
        such equivalent, or there are no behaviour features)."""
        return self.behaviour.window_config if self.behaviour is not None else None

    @property
    def window_feature_names(self) -> list[str]:
        return list(self.behaviour.feature_names) if self.behaviour else []

    @property
    def reasons(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Explanation reasons: the schema's `reasons:`, then one per
        aggregate group for the behaviour features they leave unclaimed."""
        groups = self.behaviour.declaration.reason_groups() if self.behaviour else ()
        return tuple(self.schema.reasons) + tuple(groups)

    @property
    def feature_names(self) -> list[str]:
        return [*self.static.names, *self.window_feature_names]

    @property
    def needed_fields(self) -> list[str]:
        """Input fields the features are computed from."""
        needed = {f.name for f in self.schema.feature_fields} | self._derived_sources
        return [n for n in self.schema.field_names if n in needed]

    # --------------------------------------------------------------- columns
    def columns_from_frame(self, df: pd.DataFrame) -> Columns:
        """Columns for a validated DataFrame, with offline window features.

        Window features are computed over the frame itself (its rows are the
        history), unless the frame already carries all of them, e.g. a file
        written by `gendetect features` over a longer history.
        """
        return self.batch_columns(df)[0]

    def batch_columns(
        self, df: pd.DataFrame, history: WindowHistory | None = None
    ) -> tuple[Columns, bool]:
        """Columns for a validated DataFrame and whether its behaviour
        features were computed from rows of this batch (and `history`, the
        tail carried over from earlier chunks of the same stream) rather
        than given as columns.

        Given window features (all of them, finite) are used as they are:
        that is how precomputed features from `gendetect features` or
        scoring.spark reach every surface with one meaning. Some but not
        all of them is an error: mixing given and recomputed values would
        give features of two different histories.
        """
        cols: Columns = {}
        for name in self.needed_fields:
            if name in self._timestamp_fields:
                cols[name] = column_to_ns(df[name])
            elif name not in df.columns and name in self.static.nullable:
                # An optional nullable field the file leaves out: a gap per row.
                cols[name] = absent_column(len(df))
            else:
                cols[name] = df[name].to_numpy()
        if self.behaviour is None:
            return cols, False
        names = self.window_feature_names
        present = [n for n in names if n in df.columns]
        if present and len(present) < len(names):
            missing = [n for n in names if n not in df.columns]
            raise InputError(
                f"behaviour features given in part: {len(present)} of {len(names)} columns; "
                f"pass all of them or none (missing: {missing[:4]})",
                field=missing[0],
            )
        if present:
            gappy = self._gappy_behaviour_features()
            for name in names:
                values = df[name].to_numpy(dtype=np.float64, na_value=np.nan)
                # A group keyed by a nullable entity has gaps where the key is
                # missing (the engine gives NaN there); infinities never.
                bad = np.isinf(values) if name in gappy else ~np.isfinite(values)
                if bad.any():
                    raise InputError(
                        f"{int(bad.sum())} missing, NaN or infinite value(s) in a given behaviour "
                        f"feature (first at row {int(np.argmax(bad))})",
                        field=name,
                    )
                cols[name] = values
            return cols, False
        cols.update(self.window_columns(df, history, cols.get(self.behaviour.time_col)))
        return cols, True

    def _gappy_behaviour_features(self) -> set[str]:
        """Behaviour features whose group's key has a nullable column."""
        assert self.behaviour is not None
        schema = self.schema
        return {name for group in self.behaviour.declaration.groups
                if any(k in schema and schema[k].nullable for k in group.key)
                for name in group.feature_names}

    def window_columns(
        self,
        df: pd.DataFrame,
        history: AggregateHistory | None = None,
        time_ns: np.ndarray | None = None,
    ) -> Columns:
        """The behaviour features of `df`'s rows from the aggregate engine,
        called on arrays (no copy of the frame). With `history`, the rows of
        earlier chunks within the declaration's horizon count too."""
        behaviour = self.behaviour
        assert behaviour is not None
        behaviour.check_columns(df)
        if time_ns is None:
            time_ns = column_to_ns(df[behaviour.time_col])
        history = history if history is not None else AggregateHistory(behaviour)
        return history.features(df, time_ns)

    def with_window_features(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` with the behaviour features added (the frame is the history)."""
        behaviour = self.behaviour
        assert behaviour is not None
        return behaviour.add_to_frame(df)

    def columns_from_records(
        self,
        records: Sequence[Mapping[str, Any]],
        window_features: Sequence[Mapping[str, float]] | None = None,
    ) -> Columns:
        """Columns for validated records (the API path: no pandas)."""
        cols: Columns = {}
        for name in self.needed_fields:
            # An optional field a record leaves out is None: a gap (the
            # schema allows that only for nullable features).
            values = [r.get(name) for r in records]
            if name in self._timestamp_fields:
                cols[name] = np.fromiter(
                    (v if isinstance(v, int) else _record_time_ns(v) for v in values),
                    dtype=np.int64,
                    count=len(values),
                )
            else:
                cols[name] = np.asarray(values)
        if self.behaviour is not None:
            if window_features is None:
                raise ValueError("this pipeline needs window features for each record")
            for name in self.window_feature_names:
                cols[name] = np.fromiter(
                    (w[name] for w in window_features), dtype=np.float64, count=len(records)
                )
        return cols

    # -------------------------------------------------------------- features
    def transform(
        self, cols: Mapping[str, np.ndarray], *, count_unseen: bool = True
    ) -> np.ndarray:
        """The feature matrix (n, n_features), float64; NaN marks a gap
        (gendetect.features.missing), only in nullable fields and the
        features derived from them. Values of categorical levels never seen
        in training are counted (`unseen_levels`) unless `count_unseen` is
        False (a second look at records already scored, e.g. drift)."""
        parts = self.static.parts(cols, count_unseen)
        parts.extend(cols[name] for name in self.window_feature_names)
        if not parts:
            raise InputError("the schema defines no features")
        return _stacked_columns(parts)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        return self.transform(self.columns_from_frame(df))


# Rows per band of `_stacked_columns`: a band of the matrix stays in the
# CPU's cache while its columns are written.
_STACK_ROWS = 4096


def _stacked_columns(parts: Sequence[np.ndarray]) -> np.ndarray:
    """np.column_stack(parts) (1-D columns and 2-D blocks, in order), the
    same array, written in bands of rows: column by column over the whole
    matrix, each column's stride-d writes touch every cache line of it
    again (three times slower on 300k rows)."""
    blocks = [p.reshape(-1, 1) if p.ndim == 1 else p for p in (np.asarray(p) for p in parts)]
    n = len(blocks[0])
    if any(len(b) != n for b in blocks):
        return np.column_stack(parts)  # numpy's own error
    width = sum(b.shape[1] for b in blocks)
    out = np.empty((n, width), dtype=np.result_type(*blocks))
    for start in range(0, n, _STACK_ROWS):
        band = out[start : start + _STACK_ROWS]
        at = 0
        for b in blocks:
            band[:, at : at + b.shape[1]] = b[start : start + _STACK_ROWS]
            at += b.shape[1]
    return out


def split_at_last_time(time_ns: np.ndarray) -> int:
    """Where to cut a time-ordered chunk so that the rows at its last
    timestamp go to the next chunk: the number of rows before them (0 when
    all rows share one timestamp)."""
    if len(time_ns) == 0:
        return 0
    last = time_ns[-1]
    return int(np.searchsorted(time_ns, last, side="left"))


def _record_time_ns(value: Any) -> int:
    # Validated records carry int ns already; anything else is converted the
    # one way (gendetect.timestamps), with the API's error type.
    try:
        return to_ns(value)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
