"""Verdicts as a labels file for training: one row per transaction whose
label was known in [since, until): `transaction_id`, the label column (the
schema's label field, `is_fraud`: 1 fraud, 0 genuine) and `labelled_at`.

The label is the transaction's latest verdict with a time before `until`
(verdicts after `until` are not looked at: a model trained up to `until`
must not learn from what was known only later), and `labelled_at` the time
since which that label has held (the first verdict of the run of equal
labels that ends the history, as the online state counts it). Joined to a
transactions file on `transaction_id` (replacing its label column, or
filling it where it is empty), the file is the label input `gendetect train`
reads; transactions without a verdict have no row.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from gendetect.stores.records import utc_naive
from gendetect.stores.tables import verdicts
from gendetect.stores.verdicts import PastVerdict, effective

log = logging.getLogger(__name__)


def latest_labels(engine: Engine, since: datetime | None = None, until: datetime | None = None,
                  *, label_column: str = "is_fraud") -> pd.DataFrame:
    v = verdicts.c
    query = select(v.transaction_id, v.label, v.analyst, v.note, v.labelled_at, v.id)
    if until is not None:
        query = query.where(v.labelled_at < utc_naive(until))
    query = query.order_by(v.transaction_id, v.labelled_at, v.id)
    start = utc_naive(since) if since is not None else None
    ids: list[int] = []
    labels: list[int] = []
    times: list[datetime] = []

    def flush(tid: int | None, history: list[PastVerdict]) -> None:
        current = effective(history)
        if tid is None or current is None:
            return
        if start is None or current[1] >= start:
            ids.append(tid)
            labels.append(1 if current[0] == "fraud" else 0)
            times.append(current[1])

    with engine.connect() as conn:
        tid: int | None = None
        history: list[PastVerdict] = []
        for row in conn.execution_options(yield_per=10_000).execute(query):
            if row.transaction_id != tid:
                flush(tid, history)
                tid, history = row.transaction_id, []
            history.append(PastVerdict(row.label, row.analyst, row.note, row.labelled_at, row.id))
        flush(tid, history)
    frame = pd.DataFrame({
        "transaction_id": pd.Series(ids, dtype="int64"),
        label_column: pd.Series(labels, dtype="int64"),
        "labelled_at": pd.to_datetime(pd.Series(times, dtype="object")),
    })
    return frame.sort_values(["labelled_at", "transaction_id"], kind="stable").reset_index(
        drop=True)


def export_labels(engine: Engine, out: str | Path, since: datetime | None = None,
                  until: datetime | None = None, *, label_column: str = "is_fraud") -> int:
    """Write the labels file (.csv or .parquet); returns the number of rows."""
    from gendetect.data.io import write_table

    frame = latest_labels(engine, since, until, label_column=label_column)
    write_table(frame, out)
    return len(frame)


def store_labels(url: str, until: datetime | None = None, *,
                 label_column: str = "is_fraud") -> pd.DataFrame:
    """`latest_labels` before `until` from the verdict store at `url` (how
    jobs read it: they open no store themselves). A database no API has
    written to yet (its tables come with the API's first start) has no
    verdicts, which is not an error."""
    from gendetect.stores.database import make_engine
    from gendetect.stores.migrate import current_revision

    engine = make_engine(url)
    try:
        if current_revision(engine) is None:
            log.warning("the verdict store has no tables yet: no verdicts to read")
            return latest_labels_frame(label_column)
        return latest_labels(engine, until=until, label_column=label_column)
    finally:
        engine.dispose()


def latest_labels_frame(label_column: str = "is_fraud") -> pd.DataFrame:
    """An empty labels frame with latest_labels' columns and types."""
    return pd.DataFrame({"transaction_id": pd.Series(dtype="int64"),
                         label_column: pd.Series(dtype="int64"),
                         "labelled_at": pd.Series(dtype="datetime64[ns]")})
