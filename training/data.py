"""The training job's data: read and validate a file, add behaviour features
over the whole history, and split it in time with gendetect's one split
(`gendetect.data.split.holdout_split`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gendetect.data.io import fingerprint, read_table
from gendetect.data.split import holdout_split, holdout_windows
from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import Schema, load_schema
from training.config import EvaluationConfig, TrainingConfig, as_config

log = logging.getLogger(__name__)

# With fewer training days than this after the warm-up, the warm-up is not
# skipped: a short history is better used whole.
MIN_TRAIN_DAYS_AFTER_WARMUP = 8


@dataclass
class PreparedData:
    train: pd.DataFrame
    test: pd.DataFrame | None
    schema: Schema
    source: str


def prepare_data(
    df: pd.DataFrame, config: TrainingConfig | Mapping[str, Any], source: str
) -> PreparedData:
    """Validate, add behaviour features over the full history, split by time.

    Behaviour features come first so that held-out rows see their real
    history; labels enter them only through the delayed terminal risk."""
    config = as_config(config)
    schema = load_schema(config.schema_name)
    schema = schema.resolve_columns([c for c in df.columns if c != schema.label_field])
    schema.validate_frame(df, source=source)
    pipeline = FeaturePipeline(schema)
    if pipeline.window_config is not None:
        df = pipeline.with_window_features(df)
    evaluation = config.evaluation
    holdout = evaluation.holdout_days
    time_col = next((f.name for f in schema.fields if f.kind == "timestamp"), None)
    if not holdout or time_col is None:
        return PreparedData(df, None, schema, source)
    train, test = _split(df, time_col, evaluation, warmup_days(pipeline, evaluation), source)
    if len(train) < 100 or test.empty:
        raise _too_little(holdout, len(train), source)
    return PreparedData(train, test, schema, source)


def _split(
    df: pd.DataFrame, time_col: str, evaluation: EvaluationConfig, warmup: int, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    # The schema accepts timestamps as text too; the split works on parsed
    # ones and returns the original rows, columns unchanged.
    times = df[time_col]
    if not pd.api.types.is_datetime64_any_dtype(times):
        times = pd.to_datetime(times)
    frame = pd.DataFrame({time_col: times.reset_index(drop=True)})
    delay = evaluation.delay_days
    windows = holdout_windows(
        frame[time_col], holdout_days=evaluation.holdout_days, delay_days=delay, skip_days=warmup
    )
    if warmup and windows.train_days < MIN_TRAIN_DAYS_AFTER_WARMUP:
        log.warning("too few days to skip the window warm-up: training from the first day")
        warmup = 0
    try:
        train, test = holdout_split(
            frame,
            time_col=time_col,
            holdout_days=evaluation.holdout_days,
            delay_days=delay,
            skip_days=warmup,
        )
    except InputError:
        raise _too_little(evaluation.holdout_days, 0, source) from None
    return df.iloc[train.index.to_numpy()], df.iloc[test.index.to_numpy()]


def _too_little(holdout: int, n_train: int, source: str) -> InputError:
    return InputError(
        f"too little data for a {holdout}-day held-out week: {n_train} training rows; "
        "use more days or set evaluation.holdout_days: 0",
        source=source,
    )


def warmup_days(pipeline: FeaturePipeline, evaluation: EvaluationConfig) -> int:
    """Days at the start of the history whose window features are still
    filling up (longest window + label delay): they look unlike live traffic,
    so training skips them when there is enough data."""
    if evaluation.warmup_days != "auto":
        return int(evaluation.warmup_days)
    config = pipeline.window_config
    if config is None:
        return 0
    longest = max((*config.customer_windows_days, *config.terminal_windows_days))
    return int(np.ceil(longest + config.delay_days))


def load_prepared(
    path: str, config: TrainingConfig | Mapping[str, Any]
) -> tuple[PreparedData, dict[str, Any]]:
    """The file at `path` prepared for training, and its data fingerprint."""
    df = read_table(path)
    return prepare_data(df, config, source=path), fingerprint(df)
