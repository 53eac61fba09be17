"""The memory store's snapshot format: the whole state (every entity's held
events and wall-clock write time, the transaction index, the hash key's
check value, the first journal segment not in it) as one JSON document, and
back. Writing it durably is gendetect.features.state.durable's job; when,
and what happens to the journal around it, the store's
(gendetect.features.state.memory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gendetect.features.state.model import KEY_SHIFT, event_key
from gendetect.features.state.series import CustomerSeries, Series, TerminalSeries, prefix_sums

log = logging.getLogger(__name__)

# 3: the hash key's check value, and each entity's wall-clock write time
# (version 2, without them, is still read: its key is adopted).
SNAPSHOT_VERSION = 3

# A transaction index entry: [terminal, time, fingerprint, label,
# labelled_at], a list so that the snapshot serialises it as it is.
TxIndex = dict[int, list[Any]]


@dataclass
class SnapshotState:
    """What a snapshot restores."""

    customers: dict[str, CustomerSeries]
    terminals: dict[str, TerminalSeries]
    tx: TxIndex
    writes: int  # recorded events so far (paces the idle sweep)
    journal_seq: int  # the first journal segment the snapshot does not contain


def encode_snapshot(state: SnapshotState, key_check: str | None) -> bytes:
    def columns(s: Series, *extra: list[Any]) -> list[Any]:
        return [
            s.times[s.start :], s.ids[s.start :], *(c[s.start :] for c in extra), s.written_at
        ]

    return orjson.dumps(
        {
            "version": SNAPSHOT_VERSION,
            "key_check": key_check,
            "journal_seq": state.journal_seq,
            "writes": state.writes,
            "customers": {k: columns(c, c.amounts) for k, c in state.customers.items()},
            "terminals": {k: columns(t) for k, t in state.terminals.items()},
            "tx": state.tx,
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def decode_snapshot(raw: Any, path: Path, clock: Callable[[], float]) -> SnapshotState | None:
    """The state in a parsed snapshot; None for the old format, which cannot
    be used. `clock`: the write time of entities saved without one."""
    version = raw.get("version") if isinstance(raw, dict) else None
    if version == 1:
        # The old format holds raw customer and terminal ids, which can
        # neither be matched to keyed digests nor kept: start empty.
        log.warning("%s: old snapshot format with raw ids; starting without it", path)
        return None
    if version not in (2, SNAPSHOT_VERSION):
        raise ValueError(f"{path}: unsupported state snapshot version {version!r}")
    # Version 2 has no write times: loading counts as a write.
    now = clock()
    customers: dict[str, CustomerSeries] = {}
    terminals: dict[str, TerminalSeries] = {}
    for key, (times, ids, amounts, *written) in raw["customers"].items():
        c = customers[key] = CustomerSeries()
        c.times, c.ids, c.amounts = times, ids, [float(a) for a in amounts]
        c.pre = prefix_sums(c.amounts)
        c.written_at = float(written[0]) if written else now
    for key, (times, ids, *written) in raw["terminals"].items():
        t = terminals[key] = TerminalSeries()
        t.times, t.ids = times, ids
        t.written_at = float(written[0]) if written else now
    tx: TxIndex = {int(k): v for k, v in raw["tx"].items()}
    for tid, entry in tx.items():
        if entry[3] == 1:
            terminal = terminals[entry[0]]
            pair = (entry[4], event_key(entry[1], tid))
            (terminal.fraud_at if entry[4] <= terminal.times[-1] else terminal.pending).append(
                pair
            )
    for terminal in terminals.values():
        terminal.fraud_at.sort()
        terminal.pending.sort()
        terminal.fraud_keys = sorted(k for _, k in terminal.fraud_at)
        terminal.fraud_times = [k >> KEY_SHIFT for k in terminal.fraud_keys]
    state = SnapshotState(customers, terminals, tx, raw["writes"], int(raw["journal_seq"]))
    log.info(
        "state snapshot loaded: %d customers, %d terminals, %d transactions",
        len(customers),
        len(terminals),
        len(tx),
    )
    return state
