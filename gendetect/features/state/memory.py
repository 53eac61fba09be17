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
from gendetect.features.state.durable import write_atomically
from gendetect.features.state.journal import Journal, label_line, read_segment, record_line
from gendetect.features.state.memory_key import key_at_start
from gendetect.features.state.model import (
    DUPLICATE_MESSAGE,
    UNKNOWN_LABEL,
    Horizons,
    TxEvent,
    WindowPlan,
    WindowSums,
    check_conflicts,
    check_event,
    check_int64,
    event_key,
)
from gendetect.features.state.series import CustomerSeries, TerminalSeries, query_windows
from gendetect.features.state.snapshot import (
    SnapshotState,
    TxIndex,
    decode_snapshot,
    encode_snapshot,
)
from gendetect.private_files import make_private_dir

log = logging.getLogger(__name__)

class MemoryStateStore:
    """In-process state for one API process. Thread-safe (one lock).

    With `snapshot_path`, every change is journaled beside it, `snapshot()`
    writes the whole state atomically, and a new store on the same path
    starts from the snapshot plus the journal (see the module docstring).
    """

    # Every this many recorded events, entities not written to for longer
    # than their horizon plus IDLE_MARGIN_SECONDS of wall-clock time are
    # dropped, so the number of entities is bounded too (module docstring).
    SWEEP_EVERY = 20_000
    # The margin Redis' key expiry gives too (redis_store._TTL_MARGIN_MS).
    IDLE_MARGIN_SECONDS = 86_400.0

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
        self._customers: dict[str, CustomerSeries] = {}
        self._terminals: dict[str, TerminalSeries] = {}
        # id -> [terminal, time, fingerprint, label, labelled_at]
        self._tx: TxIndex = {}
        self._writes = 0
        self._journal: Journal | None = None
        self._closed = False
        if self._path is not None:
            make_private_dir(self._path.parent)
            self._journal = Journal(self._path, journal_fsync_seconds)
            self._start_from_disk()

    # ------------------------------------------------------------------ API
    def record_and_query(
        self, event: TxEvent, plan: WindowPlan, *, record: bool = True
    ) -> WindowSums:
        check_event(event)
        with self._lock:
            recorded = False
            if record:
                known = self._tx.get(event.transaction_id)
                if known is not None:
                    if known[2] != event.fingerprint:
                        raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
                elif self._retains(event, plan.horizons):
                    if self._journal is not None:
                        self._journal.write(record_line(event, plan.horizons))
                    self._record(event, plan.horizons)
                    recorded = True
            return query_windows(
                self._customers.get(event.customer),
                self._terminals.get(event.terminal),
                event,
                plan,
                recorded,
            )

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: WindowPlan
    ) -> list[WindowSums]:
        for event in events:
            check_event(event)
        h = plan.horizons
        with self._lock:
            # Conflicts first, and the whole batch in one journal write:
            # applying never fails after that, so a failing batch changes
            # nothing.
            check_conflicts(events, lambda tid: e[2] if (e := self._tx.get(tid)) else None)
            if self._journal is not None:
                lines = [record_line(e, h) for e in events if e.transaction_id not in self._tx]
                if lines:
                    self._journal.write(b"".join(lines))
            out = []
            for event in events:
                recorded = event.transaction_id not in self._tx and self._retains(event, h)
                if recorded:
                    self._record(event, h)
                out.append(
                    query_windows(
                        self._customers.get(event.customer),
                        self._terminals.get(event.terminal),
                        event,
                        plan,
                        recorded,
                    )
                )
            return out

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        check_int64(transaction_id, "transaction_id")
        check_int64(labelled_at_ns, "labelled_at")
        with self._lock:
            if transaction_id not in self._tx:
                return False
            if self._journal is not None:
                self._journal.write(label_line(transaction_id, is_fraud, labelled_at_ns))
            self._label(transaction_id, bool(is_fraud), labelled_at_ns)
        if self._journal is not None:
            # Outside the lock: scoring goes on while the disk syncs. An
            # acknowledged label is on disk (a failed sync answers 503 and
            # posting the label again is harmless).
            self._journal.sync()
        return True

    def known_fingerprints(self, transaction_ids: Sequence[int]) -> dict[int, str]:
        with self._lock:
            return {tid: e[2] for tid in transaction_ids if (e := self._tx.get(tid)) is not None}

    def lookup(self, transaction_id: int) -> tuple[int, int] | None:
        """(label, labelled_at) of a known transaction (label UNKNOWN_LABEL
        until one arrives), None if unknown or expired."""
        with self._lock:
            entry = self._tx.get(transaction_id)
            return None if entry is None else (entry[3], entry[4])

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
                state = SnapshotState(
                    self._customers, self._terminals, self._tx, self._writes, next_seq
                )
                payload = encode_snapshot(state, self._key_check)
                counts = (len(self._customers), len(self._terminals), len(self._tx))
            write_atomically(self._path, payload)
            for seq, path in self._journal.segments():
                if seq < next_seq:
                    path.unlink(missing_ok=True)
        log.info("state snapshot written: %d customers, %d terminals, %d transactions", *counts)

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
        return len(self._tx)

    # ------------------------------------------------------------- internals
    def _retains(self, event: TxEvent, horizons: Horizons) -> bool:
        terminal = self._terminals.get(event.terminal)
        newest = terminal.newest_time if terminal is not None else None
        return newest is None or event.time_ns > newest - horizons.terminal_ns

    def _record(self, event: TxEvent, horizons: Horizons) -> None:
        """Apply a recorded event (it passed `_retains`). Never raises for a
        checked event: the journal already holds it."""
        t, tid = event.time_ns, event.transaction_id
        now = self._clock()
        customer = self._customers.get(event.customer)
        if customer is None:
            customer = self._customers[event.customer] = CustomerSeries()
        # Written to even when the event is too old for it (as Redis renews
        # the key's expiry): the entity is in use.
        customer.written_at = now
        newest = customer.newest_time
        if newest is None or t > newest - horizons.customer_ns:
            customer.insert(t, tid, event.amount)
            customer.prune(max(t, newest if newest is not None else t) - horizons.customer_ns)
        terminal = self._terminals.get(event.terminal)
        if terminal is None:
            terminal = self._terminals[event.terminal] = TerminalSeries()
        terminal.written_at = now
        terminal.insert(t, tid)
        self._tx[tid] = [event.terminal, t, event.fingerprint, UNKNOWN_LABEL, 0]
        assert terminal.newest_time is not None
        for gone in terminal.prune(terminal.newest_time - horizons.terminal_ns):
            self._tx.pop(gone, None)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self._sweep(horizons)

    def _label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> None:
        entry = self._tx[transaction_id]
        terminal = self._terminals[entry[0]]
        terminal.set_fraud(
            event_key(entry[1], transaction_id),
            labelled_at_ns,
            is_fraud,
            was_fraud=entry[3] == 1,
            was_at=entry[4],
        )
        entry[3], entry[4] = int(is_fraud), labelled_at_ns

    def _sweep(self, horizons: Horizons) -> None:
        """Drop the entities idle for longer than their horizon plus the
        margin, in wall-clock time since they were last written to, and the
        empty ones. Never by event time: other entities' events, however
        many and however recent, do not make an entity's history stale (a
        replay of last year's data keeps its windows)."""
        now = self._clock()
        for entities, horizon in (
            (self._customers, horizons.customer_ns),
            (self._terminals, horizons.terminal_ns),
        ):
            cutoff = now - (horizon / 1e9 + self.IDLE_MARGIN_SECONDS)
            stale = [
                k for k, s in entities.items() if s.written_at < cutoff or s.newest_time is None
            ]
            for key in stale:
                series = entities.pop(key)
                if isinstance(series, TerminalSeries):
                    for tid in series.ids[series.start :]:
                        self._tx.pop(tid, None)

    # ------------------------------------------------------------ start
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
            self._customers, self._terminals = loaded.customers, loaded.terminals
            self._tx, self._writes = loaded.tx, loaded.writes
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
        try:
            if entry[0] == "r":
                _, tid, t, customer, terminal, amount, fingerprint, h_c, h_t = entry
                event = TxEvent(tid, t, customer, terminal, float(amount), fingerprint)
                check_event(event)
                horizons = Horizons(h_c, h_t)
                # Same decisions as when it was first applied (the state is
                # the same): a repeated id or a too-old event changes nothing.
                if tid not in self._tx and self._retains(event, horizons):
                    self._record(event, horizons)
            else:
                _, tid, label, at = entry
                if tid in self._tx:
                    self._label(tid, bool(label), at)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: skipping a malformed journal entry (%s)", path.name, exc)
