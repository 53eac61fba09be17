"""The memory store's snapshot format: the whole state (every key's held
events, values and wall-clock write time, the transaction index, the hash
key's check value, the first journal segment not in it) as one JSON
document, and back. Writing it durably is gendetect.features.state.durable's
job; when, and what happens to the journal around it, the store's
(gendetect.features.state.memory).

Versions: 4 holds one history per (entity, key) of the declared aggregates.
Versions 2 and 3 (fixed customer and terminal histories) cannot be read as
such (their keys do not say which column they came from): refused with an
error that says what to do, never misread. Version 1 held raw ids: skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gendetect.features.state.memory_state import MemoryState, TxIndex
from gendetect.features.state.model import event_key
from gendetect.features.state.series import Column, KeySeries

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 4
OLD_STATE_REMEDY = (
    "it was written by an older gendetect (fixed customer and terminal windows) and cannot "
    "hold the declared aggregates: move the snapshot and its journal segments aside (or delete "
    "them) and start the online state over, or replay the history into a new state"
)


@dataclass
class SnapshotState:
    """What a snapshot restores."""

    state: MemoryState
    journal_seq: int  # the first journal segment the snapshot does not contain


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]


def encode_snapshot(state: MemoryState, journal_seq: int, key_check: str | None) -> bytes:
    def history(s: KeySeries) -> list[Any]:
        a = s.start
        return [
            s.times[a:], s.ids[a:],
            {n: _nan_to_none(c.values[a:]) for n, c in s.cols.items()},
            {n: d[a:] for n, d in s.dcols.items()},
            s.written_at, s.horizon_ns,
        ]

    return orjson.dumps(
        {
            "version": SNAPSHOT_VERSION,
            "key_check": key_check,
            "journal_seq": journal_seq,
            "writes": state.writes,
            "series": {k: history(s) for k, s in state.series.items()},
            "tx": state.tx,
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def decode_snapshot(raw: Any, path: Path, clock: Callable[[], float]) -> SnapshotState | None:
    """The state in a parsed snapshot; None for the first format (raw ids,
    which can neither be matched to keyed digests nor kept). ValueError for
    a format this version cannot read."""
    version = raw.get("version") if isinstance(raw, dict) else None
    if version == 1:
        log.warning("%s: old snapshot format with raw ids; starting without it", path)
        return None
    if version in (2, 3):
        raise ValueError(f"{path}: state snapshot version {version}: {OLD_STATE_REMEDY}")
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"{path}: unsupported state snapshot version {version!r}")
    state = MemoryState(clock)
    for key, (times, ids, cols, dcols, written, horizon) in raw["series"].items():
        s = state.series[key] = KeySeries()
        s.times, s.ids = list(times), list(ids)
        s.cols = {n: Column([float("nan") if v is None else float(v) for v in values])
                  for n, values in cols.items()}
        s.dcols = {n: list(d) for n, d in dcols.items()}
        s.written_at, s.horizon_ns = float(written), int(horizon)
    state.tx = {int(k): v for k, v in raw["tx"].items()}
    _restore_labels(state.series, state.tx)
    state.writes = int(raw["writes"])
    log.info("state snapshot loaded: %d key histories, %d transactions",
             len(state.series), len(state.tx))
    return SnapshotState(state, int(raw["journal_seq"]))


def _restore_labels(series: dict[str, KeySeries], tx: TxIndex) -> None:
    for tid, (t, _, label, at, holders) in tx.items():
        if label != 1:
            continue
        pair = (at, event_key(t, tid))
        for key in holders:
            s = series[key]
            (s.fraud_at if at <= s.times[-1] else s.pending).append(pair)
    for s in series.values():
        s.fraud_at.sort()
        s.pending.sort()
        s.fraud_keys = sorted(k for _, k in s.fraud_at)
