"""Where a training job's labels come from, and when each label became known.

Three sources, later ones overriding earlier ones per transaction:

1. the transactions file's label column (the schema's label field,
   `is_fraud`): such a label carries no time of its own, so it counts as
   known `delay_days` after the transaction (the schema's label delay, the
   same delay the terminal-risk features assume);
2. a labels file written by `gendetect labels export` (`transaction_id`,
   the label column, `labelled_at`);
3. the verdict store, when a database is configured (`GENDETECT_DATABASE_URL`
   set explicitly: the embedded SQLite default holds this machine's API
   verdicts only and is not read unless asked for).

A model trained up to a cutoff (the end of its training window) learns only
from labels known before that cutoff; everything else is unknown (-1), so a
fraud confirmed after the window stays in the normal data, exactly as the
job would have seen it had it run at the cutoff. Evaluation on the held-out
period after the window uses every label known now.

A "genuine" verdict (an analyst cleared the transaction) is label 0: the
detector counts such rows `label_genuine_weight` times among the rows it
learns "normal" from; one confirmed fraud turns on the label-aware head
(gendetect.label_aware).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from gendetect.errors import InputError

UNKNOWN = -1
LABELLED_AT = "labelled_at"


@dataclass(frozen=True)
class LabelSources:
    """The optional sources beyond the transactions file's own column."""

    labels_file: str | None = None
    database_url: str | None = None

    def describe(self) -> list[str]:
        out = ["transactions file"]
        if self.labels_file:
            out.append(f"labels file {Path(self.labels_file).name}")
        if self.database_url:
            out.append("verdict store")
        return out

    def frames(self, label: str, until: datetime | None = None) -> list[tuple[str, pd.DataFrame]]:
        """(source name, frame of transaction_id, label, labelled_at) per
        configured source; with `until`, only labels known before it (for the
        verdict store: the latest verdict before `until`, not the latest one
        filtered, so that a verdict changed after the cutoff counts as it was)."""
        out: list[tuple[str, pd.DataFrame]] = []
        if self.labels_file:
            frame = read_labels_file(self.labels_file, label)
            if until is not None:
                frame = frame[frame[LABELLED_AT] < pd.Timestamp(until)]
            out.append(("labels_file", frame))
        if self.database_url:
            # Imported here: SQLAlchemy only for jobs that read the store.
            from gendetect.stores.export import store_labels

            out.append(("verdict_store",
                        store_labels(self.database_url, until, label_column=label)))
        return out


def read_labels_file(path: str, label: str) -> pd.DataFrame:
    from gendetect.data.io import read_table

    frame = read_table(path)
    missing = [c for c in ("transaction_id", label, LABELLED_AT) if c not in frame.columns]
    if missing:
        raise InputError(f"labels file lacks column(s) {', '.join(missing)}", source=path)
    values = pd.to_numeric(frame[label], errors="coerce")
    bad = values.isna() | ~values.isin((0, 1))
    if bad.any():
        raise InputError(f"labels must be 0 or 1 ({int(bad.sum())} other value(s))",
                         source=path, field=label)
    times = pd.to_datetime(frame[LABELLED_AT], errors="coerce", utc=True)
    if times.isna().any():
        raise InputError("missing or unparseable time(s)", source=path, field=LABELLED_AT)
    ids = pd.to_numeric(frame["transaction_id"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any() or (ids < 0).any():
        raise InputError("transaction ids must be non-negative integers", source=path,
                         field="transaction_id")
    out = pd.DataFrame({
        "transaction_id": ids.astype("int64"),
        label: values.astype("int64"),
        LABELLED_AT: times.dt.tz_localize(None),
    }).sort_values(LABELLED_AT, kind="stable")
    # A transaction may be labelled again (a verdict changed): the newest
    # label counts. Two different labels at the same time cannot be ordered.
    same_time = out.duplicated(["transaction_id", LABELLED_AT], keep=False)
    conflicting = out[same_time].groupby(["transaction_id", LABELLED_AT])[label].nunique() > 1
    if conflicting.any():
        tid = int(conflicting[conflicting].index[0][0])
        raise InputError(f"transaction {tid} has different labels with the same {LABELLED_AT}",
                         source=path, field=label)
    return out.drop_duplicates("transaction_id", keep="last").reset_index(drop=True)


def overlay(ids: pd.Series, base: np.ndarray, frames: list[tuple[str, pd.DataFrame]],
            label: str) -> tuple[np.ndarray, dict[str, int]]:
    """`base` labels (float, NaN unknown) with each frame's labels written over
    them by transaction id; returns the labels and how many each source set."""
    out = base.astype(np.float64, copy=True)
    counts: dict[str, int] = {}
    position = pd.Index(ids.to_numpy())
    for name, frame in frames:
        if frame.empty:
            counts[name] = 0
            continue
        at = position.get_indexer(frame["transaction_id"].to_numpy())
        hit = at >= 0
        out[at[hit]] = frame[label].to_numpy(np.float64)[hit]
        counts[name] = int(hit.sum())
    return out, counts


def as_training_labels(values: np.ndarray) -> np.ndarray:
    """Float labels with NaN as int8 1 / 0 / -1 (fit(X, y)'s convention)."""
    out = np.full(len(values), UNKNOWN, dtype=np.int8)
    known = ~np.isnan(values)
    out[known] = values[known].astype(np.int8)
    return out


def summary(y: np.ndarray) -> dict[str, int]:
    return {
        "frauds": int((y == 1).sum()),
        "genuine": int((y == 0).sum()),
        "unknown": int((y == UNKNOWN).sum()),
    }


def digest(y: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(y, dtype=np.int8).tobytes()).hexdigest()
