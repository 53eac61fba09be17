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
from gendetect.features.derived import DERIVED_FUNCTIONS, TWO_COLUMN_FUNCTIONS
from gendetect.schema import Schema
from gendetect.timestamps import column_to_ns, to_ns

if TYPE_CHECKING:
    from gendetect.features.windows import WindowConfig

# The chunked history of behaviour features (its old name).
WindowHistory = AggregateHistory

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


class FeaturePipeline:
    """Turns validated records into the numeric matrix the detectors see.

    Columns of the output, in order: numeric/boolean feature fields, one-hot
    categories, derived features (schema `derived:`), then behaviour
    features (schema `aggregates:`, or the legacy `windows:`), whose values
    come from the aggregate engine for files and from the online state store
    for API requests.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.behaviour: Behaviour | None = Behaviour.from_schema(schema)
        self._timestamp_fields = {f.name for f in schema.fields if f.kind == "timestamp"}
        self._derived_sources = {d.source for d in schema.derived}
        window_names = set(self.window_feature_names)
        for d in schema.derived:
            if d.op in TWO_COLUMN_FUNCTIONS and d.by not in window_names and d.by not in schema:
                raise ValueError(f"derived {d.name!r}: unknown column {d.by!r} in 'by'")

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
        names: list[str] = []
        for f in self.schema.feature_fields:
            if f.kind == "categorical" and f.categories:
                names.extend(f"{f.name}={c}" for c in f.categories)
            else:
                names.append(f.name)
        names.extend(d.name for d in self.schema.derived)
        names.extend(self.window_feature_names)
        return names

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
            for name in names:
                values = df[name].to_numpy(dtype=np.float64, na_value=np.nan)
                bad = ~np.isfinite(values)
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
            values = [r[name] for r in records]
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
    def transform(self, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """The feature matrix (n, n_features), float64."""
        parts: list[np.ndarray] = []
        for f in self.schema.feature_fields:
            values = cols[f.name]
            if f.kind == "categorical" and f.categories:
                as_text = values.astype(str)
                parts.extend((as_text == c).astype(np.float64) for c in f.categories)
            else:
                parts.append(values.astype(np.float64))
        for d in self.schema.derived:
            if d.op in TWO_COLUMN_FUNCTIONS:
                parts.append(TWO_COLUMN_FUNCTIONS[d.op](cols[d.source], cols[d.by or ""]))
            else:
                parts.append(DERIVED_FUNCTIONS[d.op](cols[d.source]))
        parts.extend(cols[name] for name in self.window_feature_names)
        if not parts:
            raise InputError("the schema defines no features")
        return np.column_stack(parts)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        return self.transform(self.columns_from_frame(df))


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
