"""Batch scoring: a file in, the same rows with decisions out, using the
registered model and the same bundle code as the API.

Column-wise from end to end: the decisions of a chunk are arrays, the
explanations (top features and reasons, for the flagged rows unless
`--explain` says otherwise) go to Parquet as list<struct> columns without a
Python object per row, and to CSV as JSON text.

Files larger than memory stream: Parquet row groups are read in chunks of
`--chunk-rows` and written as row groups of the output. The behaviour
features of a row depend on earlier rows of its customer and terminal, so
when the file does not carry them precomputed, each chunk is computed after
the tail of history carried over from the chunks before it
(gendetect.features.pipeline.WindowHistory): exact, and it needs the rows in
time order. A file that is not in time order is scored in one piece (with a
note), as is every CSV file. `--engine spark` hands the file to
scoring.spark for data beyond one machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gendetect.bundle import FraudModelBundle
from gendetect.cli import show_progress
from gendetect.config import get_settings
from gendetect.data.io import prepare_output, read_table
from gendetect.decisions import BatchDecisions
from gendetect.errors import InputError
from gendetect.features.pipeline import WindowHistory, split_at_last_time
from gendetect.progress import ProgressReport, is_terminal
from gendetect.timestamps import column_to_ns

PREFIX = "gd_"
DEFAULT_CHUNK_ROWS = 1 << 20
# A progress log line (not on a terminal) at most this often while scoring.
PROGRESS_EVERY_S = 5.0


@dataclass
class ScoreSummary:
    rows: int = 0
    flagged: int = 0
    chunks: int = 0
    streamed: bool = False
    # Seconds per stage: read, features (validation, behaviour and derived
    # features), score (networks, risk, decisions, explanations), assemble
    # (output columns), write.
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("read", "features", "score", "assemble", "write"), 0.0
        )
    )
    # Per categorical field, values of a level never seen in training
    # (scored as "other", not an error).
    unseen_levels: dict[str, int] = field(default_factory=dict)


def cli_main(args: argparse.Namespace) -> int:
    import torch

    # One thread: the networks are small and per-core throughput is what
    # scales; several scoring processes use the cores better than threads.
    torch.set_num_threads(1)
    # As the training jobs: INFO lines on stderr (the progress lines when
    # stderr is not a terminal, gendetect.progress).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    model_uri = args.model_uri or settings.resolved_model_uri
    if getattr(args, "engine", "local") == "spark":
        from scoring.spark.job import score_file_with_spark

        return score_file_with_spark(
            args.data,
            args.out,
            model_uri,
            settings,
            explain=args.explain,
            # Spark's own stage bar and log: on a terminal only, as before.
            progress=show_progress(args) and is_terminal(),
        )
    from gendetect.tracking import load_registered_bundle

    bundle, ref = load_registered_bundle(model_uri, settings)
    progress = RowsProgress() if show_progress(args) else None
    try:
        summary = score_file(
            bundle,
            args.data,
            args.out,
            explain=args.explain,
            chunk_rows=args.chunk_rows,
            extra={"model_version": ref.version},
            on_progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()  # the last step shown before the summary below
    print(
        f"scored {summary.rows:,} rows with {ref.name} v{ref.version}: "
        f"{summary.flagged:,} flagged -> {args.out}"
    )
    for name, count in sorted(summary.unseen_levels.items()):
        if count:
            print(f"{name}: {count:,} value(s) of a level not seen in training, scored as "
                  "\"other\"", file=sys.stderr)
    return 0


def score_file(
    bundle: FraudModelBundle,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    explain: str = "flagged",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: dict[str, Any] | None = None,
    on_progress: Callable[[int, int | None, float], None] | None = None,
) -> ScoreSummary:
    """Score `data` into `out` (.parquet or .csv, by extension); the output
    holds the input columns, then the decisions prefixed `gd_`, then each
    `extra` value as a constant `gd_` column. Written to a temporary file and
    renamed, so a reader never sees half a file."""
    data, out = Path(data), prepare_output(out, inputs=(data,))
    summary = ScoreSummary()
    started = time.perf_counter()
    chunks = _stream_chunks(bundle, data, chunk_rows, summary)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    writer: pq.ParquetWriter | None = None
    history = _history(bundle) if summary.streamed else None
    total = _total_rows(data)
    unseen_before = bundle.pipeline.unseen_levels() if bundle.pipeline is not None else {}
    try:
        for table, frame in chunks:
            t0 = time.perf_counter()
            df = table.to_pandas() if frame is None else frame
            t1 = time.perf_counter()
            pipeline = bundle.pipeline
            assert pipeline is not None
            bundle.schema.validate_frame(df, source=str(data))
            cols, from_batch = pipeline.batch_columns(df, history)
            x = pipeline.transform(cols)
            t2 = time.perf_counter()
            decisions = bundle.score_matrix(x, explain=explain, batch_history_only=from_batch)
            t3 = time.perf_counter()
            if out.suffix.lower() == ".parquet":
                result = _with_decisions(table, decisions, extra)
                t4 = time.perf_counter()
                if writer is None:
                    writer = pq.ParquetWriter(
                        tmp, result.schema, use_dictionary=_dictionary_paths(result.schema)
                    )
                writer.write_table(result)
            else:
                frame = df.drop(columns=[c for c in df.columns if c.startswith(PREFIX)])
                frame = frame.join(
                    decisions.to_pandas(frame.index, json_text=True).add_prefix(PREFIX)
                )
                for name, value in (extra or {}).items():
                    frame[PREFIX + name] = value
                t4 = time.perf_counter()
                frame.to_csv(tmp, index=False, mode="a", header=summary.chunks == 0)
            t5 = time.perf_counter()
            s = summary.seconds
            s["read"] += t1 - t0
            s["features"] += t2 - t1
            s["score"] += t3 - t2
            s["assemble"] += t4 - t3
            s["write"] += t5 - t4
            summary.rows += len(decisions)
            summary.flagged += decisions.n_flagged
            summary.chunks += 1
            if on_progress is not None:
                on_progress(summary.rows, total, time.perf_counter() - started)
        if writer is not None:
            writer.close()
            writer = None
        if summary.rows == 0:
            raise InputError("the file has no rows (empty, or a header only)", source=str(data))
        os.replace(tmp, out)
        assert bundle.pipeline is not None
        summary.unseen_levels = {
            name: count - unseen_before.get(name, 0)
            for name, count in bundle.pipeline.unseen_levels().items()
        }
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return summary


def _history(bundle: FraudModelBundle) -> WindowHistory | None:
    behaviour = bundle.pipeline.behaviour if bundle.pipeline is not None else None
    return WindowHistory(behaviour) if behaviour is not None else None


Chunk = tuple[pa.Table, pd.DataFrame | None]


def _stream_chunks(
    bundle: FraudModelBundle, data: Path, chunk_rows: int, summary: ScoreSummary
) -> Iterator[Chunk]:
    """Chunks of the input as Arrow tables, each with its DataFrame when
    one was read already (a whole file). Sets `summary.streamed` (before the
    first chunk is asked for) when the file is read in several chunks."""
    is_parquet = data.suffix.lower() == ".parquet"
    if not is_parquet or chunk_rows <= 0:
        return _whole(data, summary)
    try:
        parquet = pq.ParquetFile(data)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read parquet file: {exc}", source=str(data)) from exc
    if parquet.metadata.num_rows <= chunk_rows:
        return _whole(data, summary)
    time_col = _time_column_needing_order(bundle, parquet.schema_arrow.names)
    if time_col is not None and not _in_time_order(parquet, time_col, data):
        print(
            f"{data}: rows are not in time order: scored in one piece "
            f"({parquet.metadata.num_rows:,} rows in memory)",
            file=sys.stderr,
        )
        return _whole(data, summary)
    summary.streamed = True
    return ((table, None) for table in _parquet_chunks(parquet, chunk_rows, time_col))


def _whole(data: Path, summary: ScoreSummary) -> Iterator[Chunk]:
    t0 = time.perf_counter()
    df = read_table(data)
    table = pa.Table.from_pandas(df, preserve_index=False)
    summary.seconds["read"] += time.perf_counter() - t0
    # The frame read is the one scored: no second conversion from Arrow.
    yield table, df


def _time_column_needing_order(bundle: FraudModelBundle, columns: list[str]) -> str | None:
    """The time column when behaviour features must be computed from the
    file (it does not carry them all), else None (chunks are independent)."""
    pipeline = bundle.pipeline
    if pipeline is None or pipeline.behaviour is None:
        return None
    if set(pipeline.window_feature_names) <= set(columns):
        return None
    return pipeline.behaviour.time_col


def _in_time_order(parquet: pq.ParquetFile, time_col: str, data: Path) -> bool:
    if time_col not in parquet.schema_arrow.names:
        return True  # validation names the missing column on the first chunk
    try:
        times = column_to_ns(parquet.read(columns=[time_col]).column(0).to_pandas())
    except (TypeError, ValueError) as exc:  # the same error as read_table's
        raise InputError(f"cannot parse timestamps: {exc}", field=time_col,
                         source=str(data)) from exc
    return bool(np.all(times[1:] >= times[:-1]))


def _parquet_chunks(
    parquet: pq.ParquetFile, chunk_rows: int, time_col: str | None
) -> Iterator[pa.Table]:
    """Row groups in chunks of about `chunk_rows`. With `time_col`, the rows
    at a chunk's last timestamp move to the next chunk, so that a tie is
    never split (see WindowHistory)."""
    pending: pa.Table | None = None
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        if pending is not None and pending.num_rows:
            table = pa.concat_tables([pending, table])
        if time_col is None:
            yield table
            continue
        times = column_to_ns(table.column(time_col).to_pandas())
        cut = split_at_last_time(times)
        pending = table.slice(cut)
        if cut:
            yield table.slice(0, cut)
    if pending is not None and pending.num_rows:
        yield pending


def _with_decisions(
    table: pa.Table, decisions: BatchDecisions, extra: dict[str, Any] | None
) -> pa.Table:
    keep = [name for name in table.column_names if not name.startswith(PREFIX)]
    result = table.select(keep)
    decided = decisions.to_arrow(PREFIX)
    for name, column in zip(decided.column_names, decided.columns, strict=True):
        result = result.append_column(name, column)
    for name, value in (extra or {}).items():
        result = result.append_column(PREFIX + name, pa.repeat(value, len(decisions)))
    return result


def _dictionary_paths(schema: pa.Schema) -> list[str]:
    """The Parquet column paths to dictionary-encode: all but floating-point
    ones. Scores, risks and float features are nearly all distinct, so a
    dictionary is tried, overflows and is dropped (about half the write
    time); ids, text and the explanations' feature names repeat, and their
    dictionaries make the file smaller."""
    paths: list[str] = []

    def walk(column: pa.Field, prefix: str) -> None:
        path = f"{prefix}{column.name}"
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            walk(pa.field("element", kind.value_type), f"{path}.list.")
        elif pa.types.is_struct(kind):
            for child in kind:
                walk(child, f"{path}.")
        elif not pa.types.is_floating(kind):
            paths.append(path)

    for column in schema:
        walk(column, "")
    return paths


def _total_rows(data: Path) -> int | None:
    if data.suffix.lower() != ".parquet":
        return None
    try:
        return int(pq.read_metadata(data).num_rows)
    except (OSError, pa.ArrowException):
        return None


class RowsProgress:
    """score_file's `on_progress`: rows scored, as a bar on a terminal and a
    log line at most every PROGRESS_EVERY_S seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream, self.live = stream, live
        self.report: ProgressReport | None = None

    def __call__(self, done: int, total: int | None, seconds: float) -> None:
        if self.report is None:  # the total is known from the first chunk on
            self.report = ProgressReport("score", total, unit="rows", every=PROGRESS_EVERY_S,
                                         stream=self.stream, live=self.live)
        rate = done / seconds if seconds > 0 else 0.0
        self.report.update(done, f"{rate:,.0f} rows/s")

    def close(self) -> None:
        if self.report is not None:
            self.report.close()


__all__ = ["DEFAULT_CHUNK_ROWS", "RowsProgress", "ScoreSummary", "score_file"]
