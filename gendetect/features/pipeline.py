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
from gendetect.features.derived import TWO_COLUMN_FUNCTIONS
from gendetect.features.missing import absent_column
from gendetect.features.static import StaticFeatures
from gendetect.schema import Schema
from gendetect.timestamps import column_to_ns, to_ns

if TYPE_CHECKING:
    from gendetect.features.categorical import CategoricalEncoder
    from gendetect.features.windows import WindowConfig

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


class FeaturePipeline:
    """Turns validated records into the numeric matrix the detectors see.

    Columns of the output, in order: the static features (feature fields,
    each nullable one followed by its gap indicator, categorical encodings
    and derived features: gendetect.features.static), then behaviour window
    features (schema `windows:`), whose values come from the offline engine
    for files and from the online state store for API requests.
    """

    def __init__(self, schema: Schema, state: Mapping[str, Any] | None = None) -> None:
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
    def window_feature_names(self) -> list[str]:
        return list(self.window_config.feature_names) if self.window_config else []

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
        if self.window_config is None:
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
        cols.update(self.window_columns(df, history, cols.get(self.window_config.time_col)))
        return cols, True

    def window_columns(
        self,
        df: pd.DataFrame,
        history: WindowHistory | None = None,
        time_ns: np.ndarray | None = None,
    ) -> Columns:
        """The behaviour features of `df`'s rows from the offline engine's
        kernels, called on arrays (no copy of the frame). With `history`,
        the rows of earlier chunks within the windows' reach count too."""
        config = self.window_config
        assert config is not None
        for name in (config.time_col, config.customer_col, config.terminal_col, config.amount_col):
            if name not in df.columns:
                raise InputError("required for behaviour features", field=name)
        if time_ns is None:
            time_ns = column_to_ns(df[config.time_col])
        history = history if history is not None else WindowHistory(config)
        return history.features(df, time_ns)

    def with_window_features(self, df: pd.DataFrame) -> pd.DataFrame:
        from gendetect.features.window_engine import add_window_features

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
        if self.window_config is not None:
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
        return np.column_stack(parts)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        return self.transform(self.columns_from_frame(df))


class WindowHistory:
    """Behaviour features over a stream of chunks in time order, exact.

    A row's window features depend on earlier rows of its customer and
    terminal, which may sit in earlier chunks. Each chunk is computed with
    the offline engine's kernels over the carried tail of history (every
    earlier row within the longest window's reach, customer window or
    terminal delay + window) followed by the chunk; only the chunk's rows
    are answered. The result equals the engine on the whole stream at once
    (up to the rounding of sums started at another row, ~1e-15 relative).

    Chunks must come in time order, and rows with the same timestamp must
    not be split across chunks (the tie rule orders them by transaction id,
    which a later chunk could violate): `split_at_last_time` gives the
    cut. A row position stands in for the id when the id is not an integer
    column, counted over the whole stream as the offline engine does.
    """

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self.rows_seen = 0
        self.last_time: int | None = None
        self._reach = max(config.customer_horizon_ns, config.terminal_horizon_ns)
        self._tail: dict[str, np.ndarray] | None = None
        self._warned_no_label = False

    @property
    def tail_rows(self) -> int:
        return 0 if self._tail is None else len(self._tail["time"])

    def features(self, df: pd.DataFrame, time_ns: np.ndarray) -> Columns:
        from gendetect.features.window_engine import (
            customer_window_features,
            terminal_window_features,
        )

        config = self.config
        n = len(df)
        if n and self.last_time is not None and int(time_ns.min()) <= self.last_time:
            first = int(np.argmax(time_ns <= self.last_time))
            raise InputError(
                f"rows are not in time order across chunks (row {self.rows_seen + first} is not "
                "after the previous chunk): sort the file by time, or score it in one piece",
                field=config.time_col,
            )
        if config.id_col in df.columns and pd.api.types.is_integer_dtype(df[config.id_col]):
            order = df[config.id_col].to_numpy(dtype=np.int64)
        else:
            order = np.arange(self.rows_seen, self.rows_seen + n, dtype=np.int64)
        if config.label_col in df.columns:
            label = df[config.label_col].to_numpy(dtype=np.float64, na_value=0.0)
        else:
            if not self._warned_no_label:
                # Unlabelled history: terminal risk is 0 everywhere. Say so once:
                # the model then sees no delayed-label signal.
                log.warning("no %r column: terminal risk features are 0", config.label_col)
                self._warned_no_label = True
            label = np.zeros(n)
        chunk = {
            "time": np.asarray(time_ns, dtype=np.int64),
            "order": order,
            "customer": df[config.customer_col].to_numpy(),
            "terminal": df[config.terminal_col].to_numpy(),
            "amount": df[config.amount_col].to_numpy(dtype=np.float64),
            "label": label,
        }
        tail = self._tail
        if tail is None or len(tail["time"]) == 0:
            events, queries = chunk, None
        else:
            events = {k: np.concatenate([tail[k], v]) for k, v in chunk.items()}
            queries = np.arange(len(tail["time"]), len(events["time"]), dtype=np.int64)
        out: Columns = {}
        if n:
            customer = pd.factorize(events["customer"])[0].astype(np.int64)
            terminal = pd.factorize(events["terminal"])[0].astype(np.int64)
            out |= customer_window_features(
                customer, events["time"], events["order"], events["amount"], config, queries
            )
            out |= terminal_window_features(
                terminal, events["time"], events["order"], events["label"], config, queries
            )
            last = int(events["time"].max())
            keep = events["time"] > last - self._reach
            self._tail = {k: v[keep] for k, v in events.items()}
            self.last_time = last
        else:
            out = {name: np.zeros(0) for name in config.feature_names}
        self.rows_seen += n
        return {name: out[name] for name in config.feature_names}


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
