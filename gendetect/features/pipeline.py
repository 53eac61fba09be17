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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.derived import DERIVED_FUNCTIONS, TWO_COLUMN_FUNCTIONS
from gendetect.schema import Schema

if TYPE_CHECKING:
    from gendetect.features.windows import WindowConfig

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
_EPOCH = datetime(1970, 1, 1)


def datetime_to_ns(value: datetime) -> int:
    """Exact integer nanoseconds since the epoch; naive datetimes are UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def timestamps_to_ns(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Timestamps of any common form (datetime64, ISO strings, datetimes) -> int64 ns UTC."""
    series = pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, utc=True, format="ISO8601")
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy(dtype="datetime64[ns]").astype(np.int64)


class FeaturePipeline:
    """Turns validated records into the numeric matrix the detectors see.

    Columns of the output, in order: numeric/boolean feature fields, one-hot
    categories, derived features (schema `derived:`), then behaviour window
    features (schema `windows:`), whose values come from the offline engine
    for files and from the online state store for API requests.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.window_config: WindowConfig | None = None
        if schema.windows:
            from gendetect.features.windows import WindowConfig

            self.window_config = WindowConfig.from_dict(schema.windows)
        self._timestamp_fields = {f.name for f in schema.fields if f.kind == "timestamp"}
        self._derived_sources = {d.source for d in schema.derived}
        window_names = set(self.window_feature_names)
        for d in schema.derived:
            if d.op in TWO_COLUMN_FUNCTIONS and d.by not in window_names and d.by not in schema:
                raise ValueError(f"derived {d.name!r}: unknown column {d.by!r} in 'by'")

    # ------------------------------------------------------------------ names
    @property
    def window_feature_names(self) -> list[str]:
        return list(self.window_config.feature_names) if self.window_config else []

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
        cols: Columns = {}
        for name in self.needed_fields:
            if name in self._timestamp_fields:
                cols[name] = timestamps_to_ns(df[name])
            else:
                cols[name] = df[name].to_numpy()
        if self.window_config is not None:
            names = self.window_feature_names
            if not set(names).issubset(df.columns):
                df = self.with_window_features(df)
            for name in names:
                cols[name] = df[name].to_numpy(dtype=np.float64)
        return cols

    def with_window_features(self, df: pd.DataFrame) -> pd.DataFrame:
        from gendetect.features.windows import add_window_features

        config = self.window_config
        assert config is not None
        if config.label_col not in df.columns:
            # Unlabelled history: terminal risk is 0 everywhere. Say so once:
            # the model then learns without the delayed-label signal.
            log.warning("no %r column: terminal risk features are 0", config.label_col)
            df = df.assign(**{config.label_col: 0})
        for name in (config.time_col, config.customer_col, config.terminal_col, config.amount_col):
            if name not in df.columns:
                raise InputError("required for behaviour features", field=name)
        return add_window_features(df, config)

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
                    (v if isinstance(v, int) else datetime_to_ns(_as_datetime(v)) for v in values),
                    dtype=np.int64,
                    count=len(values),
                )
            else:
                cols[name] = np.asarray(values)
        if self.window_config is not None:
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


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).to_pydatetime()
    raise InputError(f"not a timestamp: {type(value).__name__}")
