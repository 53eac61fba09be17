"""MemoryStateStore: the online state in process, with an optional snapshot
and journal.

Durability of the memory store (with a snapshot path): every record and
label is appended to a journal (one JSON line each, in the order applied,
written through to the operating system before the call returns, so a
process killed with SIGKILL loses nothing it acknowledged). A background
flusher thread fsyncs the journal every `journal_fsync_seconds` (group
fsync: at most that much window history is lost if the machine itself
fails), and `add_label` fsyncs before it returns, so an acknowledged label
survives a power cut too. The journal is split in numbered segments; a
snapshot is written atomically (temporary file, fsync, rename) and records
the first segment it does not contain, and only then are older segments
deleted: a kill between any two steps leaves either the old snapshot and
all segments after it, or the new one and possibly some stale segments it
already contains (skipped and deleted on start), never an entry lost or
applied twice. On start the snapshot is loaded and the later segments are
replayed; a torn line (a write cut short by a crash, never acknowledged) is
skipped. After a failed write the segment is abandoned and the next write
starts a new one, so a torn line is never followed by good ones in a
segment. Snapshot and journal files are created with mode 0600.

The hash key (with a snapshot path): the check value of the key the state
was written with (gendetect.key_check) is kept in a small file beside the
snapshot, `<snapshot>.keycheck`, written before the first journal segment
(so a state that is only a journal is covered), and in the snapshot itself.
A store opened with another key refuses to start (HashKeyChangedError,
naming the snapshot path): its digests would never match the new ones, and
every history would silently start from zero. With `accept_new_key` the old
snapshot, journal and check file are moved to `replaced-<time>/` beside
them (kept, in case the old key turns up) and the store starts empty. A
state written before check values existed is adopted: the key in use is
recorded.

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
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gendetect.errors import DuplicateTransactionError
from gendetect.features.state.journal import _fsync_dir, _Journal, _read_segment, _record_line
from gendetect.features.state.model import (
    _SHIFT,
    DUPLICATE_MESSAGE,
    UNKNOWN_LABEL,
    Horizons,
    TxEvent,
    WindowPlan,
    WindowSums,
    _check_conflicts,
    _check_int64,
    _key,
    check_event,
)
from gendetect.features.state.series import _Customer, _prefix, _query, _Series, _Terminal
from gendetect.key_check import ACCEPT_SETTING, HashKeyChangedError
from gendetect.private_files import make_private_dir

log = logging.getLogger(__name__)

# 3: the hash key's check value, and each entity's wall-clock write time
# (version 2, without them, is still read: its key is adopted).
_SNAPSHOT_VERSION = 3
_KEY_REMEDY = "start the online state over (the old files are moved aside)"


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
        self._customers: dict[str, _Customer] = {}
        self._terminals: dict[str, _Terminal] = {}
        # id -> [terminal, time, fingerprint, label, labelled_at]: a list, so
        # that the snapshot serialises it as it is.
        self._tx: dict[int, list[Any]] = {}
        self._writes = 0
        self._journal: _Journal | None = None
        self._closed = False
        if self._path is not None:
            make_private_dir(self._path.parent)
            self._journal = _Journal(self._path, journal_fsync_seconds)
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
                        self._journal.write(_record_line(event, plan.horizons))
                    self._record(event, plan.horizons)
                    recorded = True
            return _query(
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
            _check_conflicts(events, lambda tid: e[2] if (e := self._tx.get(tid)) else None)
            if self._journal is not None:
                lines = [_record_line(e, h) for e in events if e.transaction_id not in self._tx]
                if lines:
                    self._journal.write(b"".join(lines))
            out = []
            for event in events:
                recorded = event.transaction_id not in self._tx and self._retains(event, h)
                if recorded:
                    self._record(event, h)
                out.append(
                    _query(
                        self._customers.get(event.customer),
                        self._terminals.get(event.terminal),
                        event,
                        plan,
                        recorded,
                    )
                )
            return out

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        _check_int64(transaction_id, "transaction_id")
        _check_int64(labelled_at_ns, "labelled_at")
        with self._lock:
            if transaction_id not in self._tx:
                return False
            if self._journal is not None:
                line = orjson.dumps(["l", transaction_id, int(bool(is_fraud)), labelled_at_ns])
                self._journal.write(line + b"\n")
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
                payload = self._serialise(next_seq)
                counts = (len(self._customers), len(self._terminals), len(self._tx))
            self._write_atomically(payload)
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
            customer = self._customers[event.customer] = _Customer()
        # Written to even when the event is too old for it (as Redis renews
        # the key's expiry): the entity is in use.
        customer.written_at = now
        newest = customer.newest_time
        if newest is None or t > newest - horizons.customer_ns:
            customer.insert(t, tid, event.amount)
            customer.prune(max(t, newest if newest is not None else t) - horizons.customer_ns)
        terminal = self._terminals.get(event.terminal)
        if terminal is None:
            terminal = self._terminals[event.terminal] = _Terminal()
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
            _key(entry[1], transaction_id),
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
                if isinstance(series, _Terminal):
                    for tid in series.ids[series.start :]:
                        self._tx.pop(tid, None)

    # ------------------------------------------------------------ persistence
    def _serialise(self, next_seq: int) -> bytes:
        def columns(s: _Series, *extra: list[Any]) -> list[Any]:
            return [
                s.times[s.start :], s.ids[s.start :], *(c[s.start :] for c in extra), s.written_at
            ]

        return orjson.dumps(
            {
                "version": _SNAPSHOT_VERSION,
                "key_check": self._key_check,
                "journal_seq": next_seq,
                "writes": self._writes,
                "customers": {k: columns(c, c.amounts) for k, c in self._customers.items()},
                "terminals": {k: columns(t) for k, t in self._terminals.items()},
                "tx": self._tx,
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    def _write_atomically(self, payload: bytes) -> None:
        assert self._path is not None
        # Beside the target, then rename: a crash mid-write leaves the
        # previous snapshot intact, never a truncated one.
        tmp = self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
            _fsync_dir(self._path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def _start_from_disk(self) -> None:
        assert self._path is not None and self._journal is not None
        raw = orjson.loads(self._path.read_bytes()) if self._path.exists() else None
        stored = _read_key_file(self._path)
        snapshot_check = raw.get("key_check") if isinstance(raw, dict) else None
        checks = {c for c in (stored, snapshot_check) if c is not None}
        if _settle_key(self._path, self._key_check, checks, self._accept_new_key):
            raw = None  # moved aside: start empty
        if self._key_check is None:
            # No key given (a tool, a test): keep whatever the state had.
            self._key_check = stored or snapshot_check
        elif stored != self._key_check:
            # Before any journal segment is written: a state that is only a
            # journal is covered too.
            if not checks and _has_state(self._path):
                log.warning("%s: no hash-key check value (written before gendetect kept one): "
                            "adopting the key in use", self._path)
            _write_key_file(self._path, self._key_check)
        first_seq = 0
        if raw is not None:
            first_seq = self._load(raw, self._path)
        replayed = 0
        last_seq = first_seq - 1
        for seq, path in self._journal.segments():
            last_seq = max(last_seq, seq)
            if seq < first_seq:
                path.unlink(missing_ok=True)  # already in the snapshot
                continue
            for entry in _read_segment(path):
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

    def _load(self, raw: Any, path: Path) -> int:
        version = raw.get("version") if isinstance(raw, dict) else None
        if version == 1:
            # The old format holds raw customer and terminal ids, which can
            # neither be matched to keyed digests nor kept: start empty.
            log.warning("%s: old snapshot format with raw ids; starting without it", path)
            return 0
        if version not in (2, _SNAPSHOT_VERSION):
            raise ValueError(f"{path}: unsupported state snapshot version {version!r}")
        # Version 2 has no write times: loading counts as a write.
        now = self._clock()
        for key, (times, ids, amounts, *written) in raw["customers"].items():
            c = self._customers[key] = _Customer()
            c.times, c.ids, c.amounts = times, ids, [float(a) for a in amounts]
            c.pre = _prefix(c.amounts)
            c.written_at = float(written[0]) if written else now
        for key, (times, ids, *written) in raw["terminals"].items():
            t = self._terminals[key] = _Terminal()
            t.times, t.ids = times, ids
            t.written_at = float(written[0]) if written else now
        self._tx = {int(k): v for k, v in raw["tx"].items()}
        for tid, entry in self._tx.items():
            if entry[3] == 1:
                terminal = self._terminals[entry[0]]
                pair = (entry[4], _key(entry[1], tid))
                (terminal.fraud_at if entry[4] <= terminal.times[-1] else terminal.pending).append(
                    pair
                )
        for terminal in self._terminals.values():
            terminal.fraud_at.sort()
            terminal.pending.sort()
            terminal.fraud_keys = sorted(k for _, k in terminal.fraud_at)
            terminal.fraud_times = [k >> _SHIFT for k in terminal.fraud_keys]
        self._writes = raw["writes"]
        log.info(
            "state snapshot loaded: %d customers, %d terminals, %d transactions",
            len(self._customers),
            len(self._terminals),
            len(self._tx),
        )
        return int(raw["journal_seq"])


# ------------------------------------------------------------- the hash key
def _key_file(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".keycheck")


def _read_key_file(snapshot_path: Path) -> str | None:
    path = _key_file(snapshot_path)
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        raise ValueError(f"{path}: not a hash-key check file") from None
    value = raw.get("key_check") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{path}: not a hash-key check file")
    return value


def _write_key_file(snapshot_path: Path, value: str) -> None:
    # Atomically, like the snapshot: a torn check file would refuse a good
    # state at the next start.
    path = _key_file(snapshot_path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps({"key_check": value}) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _state_files(snapshot_path: Path) -> list[Path]:
    """The snapshot and its journal segments (what holds entity digests)."""
    folder, name = snapshot_path.parent, snapshot_path.name
    segments = [p for p in folder.glob(f"{name}.journal.*") if p.name[len(name) + 9 :].isdigit()]
    return ([snapshot_path] if snapshot_path.exists() else []) + sorted(segments)


def _has_state(snapshot_path: Path) -> bool:
    return any(p == snapshot_path or p.stat().st_size > 0 for p in _state_files(snapshot_path))


def _settle_key(snapshot_path: Path, current: str | None, stored: set[str], accept: bool) -> bool:
    """Raise HashKeyChangedError if the state at `snapshot_path` was written
    with another key than `current` (`stored`: the check values it
    recorded); with `accept`, move it aside instead and return True. A check
    file left without any state (nothing to orphan) is simply replaced."""
    if current is None or not stored or stored == {current} or not _has_state(snapshot_path):
        return False
    if not accept:
        raise HashKeyChangedError(f"the online state at {snapshot_path}", _KEY_REMEDY)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = snapshot_path.parent / f"replaced-{stamp}-{uuid.uuid4().hex[:6]}"
    aside.mkdir(mode=0o700)
    moved = _state_files(snapshot_path)
    key_file = _key_file(snapshot_path)
    for path in [*moved, *([key_file] if key_file.exists() else [])]:
        os.replace(path, aside / path.name)
    _fsync_dir(snapshot_path.parent)
    log.warning(
        "THE HASH KEY CHANGED and %s is set: the online state at %s (%d files) was written with "
        "the old key and is moved to %s; every customer and terminal history starts from zero",
        ACCEPT_SETTING, snapshot_path, len(moved), aside,
    )
    return True


def check_state_key(
    snapshot_path: str | os.PathLike[str], key_check: str, *, accept_new_key: bool = False
) -> None:
    """The memory store's key check without opening the store (the API runs
    it before it opens its port, so a changed key stops it at once): raises
    HashKeyChangedError if the state at `snapshot_path` was written with
    another key; with `accept_new_key` moves that state aside. Reads the
    snapshot only when the check file is missing. Files it cannot read are
    left to the store, which reports them when it opens."""
    path = Path(snapshot_path)
    try:
        stored = _read_key_file(path)
        if stored is None and path.exists():
            raw = orjson.loads(path.read_bytes())
            stored = raw.get("key_check") if isinstance(raw, dict) else None
    except (OSError, ValueError):  # orjson.JSONDecodeError is a ValueError
        return
    _settle_key(path, key_check, {stored} if stored else set(), accept_new_key)
