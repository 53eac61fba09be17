"""MemoryStateStore: the online state in process, with an optional snapshot
and journal.

With a snapshot path, every change is journaled and the state survives a
kill or a power cut (the rules: gendetect.features.state.journal), in a
snapshot of its own format (gendetect.features.state.snapshot), and a state
written with another hash key is refused
(gendetect.features.state.memory_key).

Idle entities (what bounds memory): each entity is pruned by its own newest
event time only, so volume cannot move anybody else's history; after
pruning an entity still holds everything within its horizon, however old
its events are against the others' (a customer replaying 2024 data keeps
its windows while other customers record at today's dates). What removes
entities that stop transacting is the wall clock, as Redis' key expiry does:
every SWEEP_EVERY recorded events, an entity not written to for longer than
its horizon plus IDLE_MARGIN_SECONDS of server time is dropped. The number
of entities held is therefore bounded by the entities written to in the
last horizon + margin of real time, whatever the event times say; an event
time (a replay, a record dated a year ahead) never decides it. A record's
write time is kept per entity in the snapshot (a journal replay counts as a
write at the time of the replay).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from gendetect.errors import DuplicateTransactionError
from gendetect.features.state.answer import answer_event
from gendetect.features.state.durable import write_atomically
from gendetect.features.state.journal import (
    Journal,
    label_line,
    parts_from_line,
    read_segment,
    record_line,
)
from gendetect.features.state.memory_key import key_at_start
from gendetect.features.state.memory_state import MemoryState, parts_of
from gendetect.features.state.model import (
    DUPLICATE_MESSAGE,
    Answer,
    TxEvent,
    check_conflicts,
    check_event,
    check_int64,
)
from gendetect.features.state.plan import AggregatePlan
from gendetect.features.state.snapshot import decode_snapshot, encode_snapshot
from gendetect.private_files import make_private_dir

log = logging.getLogger(__name__)

class MemoryStateStore:
    """In-process state for one API process. Thread-safe (one lock).

    With `snapshot_path`, every change is journaled beside it, `snapshot()`
    writes the whole state atomically, and a new store on the same path
    starts from the snapshot plus the journal (see the module docstring).
    """

    # The idle sweep's pace and margin live with the state
    # (gendetect.features.state.memory_state.MemoryState); settable here.
    @property
    def SWEEP_EVERY(self) -> int:
        return self._state.SWEEP_EVERY

    @SWEEP_EVERY.setter
    def SWEEP_EVERY(self, value: int) -> None:
        self._state.SWEEP_EVERY = value

    @property
    def IDLE_MARGIN_SECONDS(self) -> float:
        return self._state.IDLE_MARGIN_SECONDS

    @IDLE_MARGIN_SECONDS.setter
    def IDLE_MARGIN_SECONDS(self, value: float) -> None:
        self._state.IDLE_MARGIN_SECONDS = value

    def __init__(
        self,
        snapshot_path: str | os.PathLike[str] | None = None,
        *,
        journal_fsync_seconds: float = 1.0,
        key_check: str | None = None,
        accept_new_key: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`key_check`: the check value of the hash key the entity digests
        are made with (gendetect.key_check.key_check); with a snapshot path,
        a state written with another key raises HashKeyChangedError, unless
        `accept_new_key`, which moves it aside and starts empty. `clock`:
        the wall clock of the idle sweep (seconds)."""
        self._path = Path(snapshot_path) if snapshot_path is not None else None
        self._key_check = key_check
        self._accept_new_key = accept_new_key
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._state = MemoryState(clock)
        self._journal: Journal | None = None
        self._closed = False
        if self._path is not None:
            make_private_dir(self._path.parent)
            self._journal = Journal(self._path, journal_fsync_seconds)
            self._start_from_disk()

    # ------------------------------------------------------------------ API
    def record_and_query(
        self, event: TxEvent, plan: AggregatePlan, *, record: bool = True,
        extra: Sequence[TxEvent] = (),
    ) -> Answer:
        check_event(event, plan)
        with self._lock:
            recorded = False
            if record:
                known = self._state.tx.get(event.transaction_id)
                if known is not None:
                    if known[1] != event.fingerprint:
                        raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
                else:
                    recorded = self._record(event, plan)
            features = answer_event(plan, event, self._state.histories(event, plan, extra))
            return Answer(features, recorded)

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: AggregatePlan
    ) -> list[Answer]:
        for event in events:
            check_event(event, plan)
        with self._lock:
            # Conflicts first, and the whole batch in one journal write:
            # applying never fails after that, so a failing batch changes
            # nothing.
            tx = self._state.tx
            check_conflicts(events, lambda tid: e[1] if (e := tx.get(tid)) else None)
            if self._journal is not None:
                lines = [record_line(e.transaction_id, e.time_ns, e.fingerprint,
                                     parts_of(e, plan))
                         for e in events if e.transaction_id not in tx]
                if lines:
                    self._journal.write(b"".join(lines))
            out = []
            for event in events:
                recorded = False
                if event.transaction_id not in tx:
                    parts = parts_of(event, plan)
                    recorded = self._state.record(
                        event.transaction_id, event.time_ns, event.fingerprint, parts)
                features = answer_event(plan, event, self._state.histories(event, plan))
                out.append(Answer(features, recorded))
            return out

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        check_int64(transaction_id, "transaction_id")
        check_int64(labelled_at_ns, "labelled_at")
        with self._lock:
            if transaction_id not in self._state.tx:
                return False
            if self._journal is not None:
                self._journal.write(label_line(transaction_id, is_fraud, labelled_at_ns))
            self._state.label(transaction_id, bool(is_fraud), labelled_at_ns)
        if self._journal is not None:
            # Outside the lock: scoring goes on while the disk syncs. An
            # acknowledged label is on disk (a failed sync answers 503 and
            # posting the label again is harmless).
            self._journal.sync()
        return True

    def known_fingerprints(self, transaction_ids: Sequence[int]) -> dict[int, str]:
        with self._lock:
            tx = self._state.tx
            return {tid: e[1] for tid in transaction_ids if (e := tx.get(tid)) is not None}

    def lookup(self, transaction_id: int) -> tuple[int, int] | None:
        """(label, labelled_at) of a known transaction (label UNKNOWN_LABEL
        until one arrives), None if unknown or expired."""
        with self._lock:
            entry = self._state.tx.get(transaction_id)
            return None if entry is None else (entry[2], entry[3])

    def ping(self) -> bool:
        return not self._closed

    def snapshot(self) -> None:
        if self._path is None or self._journal is None:
            raise ValueError("this MemoryStateStore has no snapshot_path")
        with self._snapshot_lock:
            with self._lock:
                # Everything so far goes into the snapshot; later entries go
                # to the new segment, which the snapshot names as its first.
                next_seq = self._journal.rotate()
                payload = encode_snapshot(self._state, next_seq, self._key_check)
                counts = (len(self._state.series), len(self._state.tx))
            write_atomically(self._path, payload)
            for seq, path in self._journal.segments():
                if seq < next_seq:
                    path.unlink(missing_ok=True)
        log.info("state snapshot written: %d key histories, %d transactions", *counts)

    def close(self) -> None:
        """Write the final snapshot and close the journal. A snapshot that
        cannot be written (a full disk) is logged, not raised: the journal,
        synced here, still holds everything, and shutdown goes on."""
        if self._closed:
            return
        self._closed = True
        if self._journal is None:
            return
        try:
            self.snapshot()
        except OSError:
            log.exception("final state snapshot failed; the journal keeps the state")
        finally:
            self._journal.close()

    def __len__(self) -> int:
        """Number of transactions currently indexed."""
        return len(self._state.tx)

    # ------------------------------------------------------------- internals
    def _record(self, event: TxEvent, plan: AggregatePlan) -> bool:
        parts = parts_of(event, plan)
        if not self._state.retains(event.time_ns, parts):
            return False
        if self._journal is not None:
            self._journal.write(record_line(event.transaction_id, event.time_ns,
                                            event.fingerprint, parts))
        return self._state.record(event.transaction_id, event.time_ns, event.fingerprint, parts)

    def _start_from_disk(self) -> None:
        assert self._path is not None and self._journal is not None
        raw = orjson.loads(self._path.read_bytes()) if self._path.exists() else None
        self._key_check, moved_aside = key_at_start(
            self._path, self._key_check, raw, accept_new_key=self._accept_new_key
        )
        if moved_aside:
            raw = None  # start empty
        first_seq = 0
        loaded = decode_snapshot(raw, self._path, self._clock) if raw is not None else None
        if loaded is not None:
            loaded.state.SWEEP_EVERY = self._state.SWEEP_EVERY
            loaded.state.IDLE_MARGIN_SECONDS = self._state.IDLE_MARGIN_SECONDS
            self._state = loaded.state
            first_seq = loaded.journal_seq
        replayed = 0
        last_seq = first_seq - 1
        for seq, path in self._journal.segments():
            last_seq = max(last_seq, seq)
            if seq < first_seq:
                path.unlink(missing_ok=True)  # already in the snapshot
                continue
            for entry in read_segment(path):
                self._replay(entry, path)
                replayed += 1
        if replayed:
            log.info("state journal replayed: %d entries", replayed)
        self._journal.start(last_seq + 1)

    def _replay(self, entry: list[Any], path: Path) -> None:
        state = self._state
        try:
            if entry[0] == "R":
                tid, t, fingerprint, parts = parts_from_line(entry)
                # Same decisions as when it was first applied (the state is
                # the same): a repeated id or a too-old event changes nothing.
                if tid not in state.tx and state.retains(t, parts):
                    state.record(tid, t, fingerprint, parts)
            else:
                _, tid, label, at = entry
                if tid in state.tx:
                    state.label(tid, bool(label), at)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: skipping a malformed journal entry (%s)", path.name, exc)
