"""The training job's data: read and validate a file, add behaviour features
over the whole history, and split it in time with gendetect's one split
(`gendetect.data.split.holdout_split`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from gendetect.data.io import fingerprint, read_table
from gendetect.data.split import holdout_split, holdout_windows
from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import Schema, load_schema
from gendetect.timestamps import NS_PER_DAY
from training import labels as label_sources
from training.config import EvaluationConfig, TrainingConfig
from training.labels import LabelSources

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
    # Training labels known by `window["holdout_start"]`: 1 fraud, 0 genuine, -1
    # unknown (None: the data has no labels at all).
    y_train: np.ndarray | None = None
    # since / until of the training rows, end of the held-out period (ISO).
    window: dict[str, str] = field(default_factory=dict)
    # How many labels each source gave, and the training labels by class.
    label_info: dict[str, Any] = field(default_factory=dict)


def prepare_data(
    df: pd.DataFrame,
    config: TrainingConfig,
    source: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    labels: LabelSources | None = None,
) -> PreparedData:
    """Validate, merge the labels, add behaviour features over the full
    history, split by time.

    Without `since`/`until`: the last `holdout_days` are held out, the
    `delay_days` before them dropped. With either: training rows are those
    in [since, until) (since defaults to the first day after the warm-up,
    until to the start of the last `holdout_days`), and the held-out period
    is the `holdout_days` after `until`; the days before `since` only warm
    up the behaviour features. Training labels are those known by the start
    of the held-out period (see training.labels).

    Behaviour features come first so that held-out rows see their real
    history; labels enter them only through the delayed terminal risk."""
    schema = load_schema(config.schema_name)
    schema = schema.resolve_columns([c for c in df.columns if c != schema.label_field])
    schema.validate_frame(df, source=source)
    label = schema.label_field
    time_col = next((f.name for f in schema.fields if f.kind == "timestamp"), None)
    sources = labels or LabelSources()
    now_frames = sources.frames(label) if label else []
    had_column = label is not None and label in df.columns
    if label and now_frames:
        if "transaction_id" not in df.columns:
            raise InputError("a labels file or the verdict store needs transaction_id",
                             source=source)
        base = (pd.to_numeric(df[label], errors="coerce").to_numpy(np.float64) if had_column
                else np.full(len(df), np.nan))
        merged, _ = label_sources.overlay(df["transaction_id"], base, now_frames, label)
        df = df.assign(**{label: merged})
    pipeline = FeaturePipeline(schema)
    if pipeline.behaviour is not None:
        if label and label in df.columns and df[label].isna().any():
            # Terminal risk counts known frauds: an unknown label is not one.
            # The unknowns come back afterwards (evaluation skips them).
            unknown = df[label].isna().to_numpy()
            df = pipeline.with_window_features(df.assign(**{label: df[label].fillna(0)}))
            df[label] = np.where(unknown, np.nan, df[label].to_numpy(np.float64))
        else:
            df = pipeline.with_window_features(df)
    evaluation = config.evaluation
    holdout = evaluation.holdout_days
    windowed = since is not None or until is not None
    if time_col is None or (not holdout and not windowed):
        prepared = PreparedData(df, None, schema, source)
        _add_labels(prepared, df, label, time_col, had_column, sources, None, evaluation)
        return prepared
    if windowed:
        train, test, window = _window_split(
            df, time_col, since, until, evaluation, warmup_days(pipeline, evaluation), source)
    else:
        train, test = _split(df, time_col, evaluation, warmup_days(pipeline, evaluation), source)
        # Train | delay_days | held-out: labels count as known by the start of
        # the held-out period (the gap is the time they take to arrive).
        day = pd.Timedelta(days=1)
        window = {
            "since": _iso(pd.to_datetime(train[time_col]).min().normalize()),
            "until": _iso(pd.to_datetime(train[time_col]).max().normalize() + day),
            "holdout_start": _iso(pd.to_datetime(test[time_col]).min().normalize()),
            "holdout_end": _iso(pd.to_datetime(test[time_col]).max().normalize() + day),
        }
    if len(train) < 100 or test.empty:
        raise _too_little(holdout, len(train), source)
    prepared = PreparedData(train, test, schema, source, window=window)
    _add_labels(prepared, train, label, time_col, had_column, sources,
                pd.Timestamp(window["holdout_start"]), evaluation)
    return prepared


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).isoformat()


def _window_split(
    df: pd.DataFrame,
    time_col: str,
    since: datetime | None,
    until: datetime | None,
    evaluation: EvaluationConfig,
    warmup: int,
    source: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    times = pd.to_datetime(df[time_col])
    first, last = times.min().normalize(), times.max().normalize() + pd.Timedelta(days=1)
    holdout = pd.Timedelta(days=evaluation.holdout_days)
    end = pd.Timestamp(until) if until is not None else last - holdout
    if since is not None:
        start = pd.Timestamp(since)
    else:
        start = first + pd.Timedelta(days=warmup)
        if (end - start).days < MIN_TRAIN_DAYS_AFTER_WARMUP:
            log.warning("too few days to skip the window warm-up: training from the first day")
            start = first
    if end <= start:
        raise InputError(f"--until ({end}) must be after --since ({start})", source=source)
    hold_end = end + holdout
    in_train = ((times >= start) & (times < end)).to_numpy()
    in_test = ((times >= end) & (times < hold_end)).to_numpy()
    if not in_test.any():
        raise InputError(
            f"no held-out rows after --until: the file ends at {times.max()}, the held-out "
            f"period is [{end}, {hold_end}); choose an earlier --until", source=source)
    window = {"since": _iso(start), "until": _iso(end), "holdout_start": _iso(end),
              "holdout_end": _iso(hold_end)}
    return df[in_train], df[in_test], window


def _add_labels(
    prepared: PreparedData,
    train: pd.DataFrame,
    label: str | None,
    time_col: str | None,
    had_column: bool,
    sources: LabelSources,
    cutoff: pd.Timestamp | None,
    evaluation: EvaluationConfig,
) -> None:
    """The training labels known by `cutoff` (all of them without one)."""
    if label is None:
        return
    n = len(train)
    base = np.full(n, np.nan)
    from_column = 0
    if had_column:
        values = pd.to_numeric(train[label], errors="coerce").to_numpy(np.float64)
        if cutoff is not None and time_col is not None:
            delay = pd.Timedelta(days=_label_delay_days(prepared.schema, evaluation))
            known = (pd.to_datetime(train[time_col]) + delay < cutoff).to_numpy()
            values = np.where(known, values, np.nan)
        base = values
        from_column = int((~np.isnan(values)).sum())
    frames = sources.frames(label, until=None if cutoff is None else cutoff.to_pydatetime())
    if not had_column and not frames:
        return
    merged, counts = label_sources.overlay(train["transaction_id"], base, frames, label) \
        if frames else (base, {})
    y = label_sources.as_training_labels(merged)
    prepared.y_train = y
    prepared.label_info = {
        "known_by": None if cutoff is None else _iso(cutoff),
        "sources": {"transactions_file": from_column, **counts},
        **label_sources.summary(y),
    }


def _label_delay_days(schema: Schema, evaluation: EvaluationConfig) -> float:
    """When a file label counts as known: the schema's label delay (the one
    the label-rate features use), else the evaluation's."""
    behaviour = FeaturePipeline(schema).behaviour
    if behaviour is None or not behaviour.declaration.needs_label:
        return float(evaluation.delay_days)
    return behaviour.label_delay_ns / NS_PER_DAY


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
    behaviour = pipeline.behaviour
    if behaviour is None:
        return 0
    return int(np.ceil(behaviour.horizon_ns / NS_PER_DAY))


def load_prepared(
    path: str,
    config: TrainingConfig,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    labels: LabelSources | None = None,
) -> tuple[PreparedData, dict[str, Any]]:
    """The file at `path` prepared for training, and its data fingerprint."""
    df = read_table(path)
    prepared = prepare_data(df, config, source=path, since=since, until=until, labels=labels)
    return prepared, fingerprint(df)
