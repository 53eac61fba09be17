"""The memory store's write-ahead journal: numbered append-only segments
beside the snapshot, written through to the OS on every entry, fsynced by a
background flusher, and read back skipping torn lines; and its entry format.

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
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gendetect.errors import StateUnavailableError
from gendetect.features.state.durable import fsync_dir
from gendetect.features.state.memory_state import Part
from gendetect.features.state.snapshot import OLD_STATE_REMEDY

log = logging.getLogger(__name__)


class Journal:
    """Numbered append-only segments `<snapshot name>.journal.<n>` beside the
    snapshot. Every entry is written through to the OS at once; fsync runs on
    a background thread every `fsync_seconds` and on `sync()`.

    The lock is never held during an fsync (it syncs a duplicate of the
    descriptor): writes are made under the store's lock on the serving
    event loop, and an fsync takes from a fraction of a millisecond to
    several (p99 3.5 ms, p99.9 7 ms measured on the development machine's
    disk), so a write waiting for the flusher's fsync stalled every request
    once per `fsync_seconds`."""

    def __init__(self, snapshot_path: Path, fsync_seconds: float) -> None:
        self.dir = snapshot_path.parent
        self.prefix = f"{snapshot_path.name}.journal."
        self.fsync_seconds = fsync_seconds
        self._lock = threading.Lock()  # fd, seq, dirty; taken after the store's
        self._fd: int | None = None
        self._broken = False
        # Entries written through, and of them those an fsync that completed
        # covers (a sync returns only once its own entries are covered).
        self._written = 0
        self._synced = 0
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.dir.glob(self.prefix + "*"):
            suffix = path.name[len(self.prefix) :]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def path_of(self, seq: int) -> Path:
        return self.dir / f"{self.prefix}{seq:010d}"

    def start(self, seq: int) -> None:
        with self._lock:
            self._open(seq)
        self._thread = threading.Thread(target=self._flusher, name="state-journal", daemon=True)
        self._thread.start()

    def _open(self, seq: int) -> None:
        fd = os.open(self.path_of(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fd, self.seq, self._broken = fd, seq, False
        fsync_dir(self.dir)  # the new file's name survives a power cut too

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
                self._synced = self._written
            finally:
                os.close(self._fd)
                self._fd = None

    def write(self, line: bytes) -> None:
        """Append one entry; raises StateUnavailableError (and the caller
        changes nothing) if it could not be written."""
        with self._lock:
            try:
                if self._broken or self._fd is None:
                    # A failed write may have left a torn line: never append
                    # good entries after it, start the next segment instead.
                    self._close_fd_quietly()
                    self._open(self.seq + 1)
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]
                self._written += 1
            except OSError as exc:
                self._broken = True
                raise StateUnavailableError("the state journal could not be written") from exc

    def _close_fd_quietly(self) -> None:
        try:
            self._close_fd()
        except OSError:
            self._fd = None

    def sync(self) -> None:
        """Return once every entry written before the call is on disk."""
        with self._lock:
            target = self._written
            if self._synced >= target or self._fd is None:
                return
            fd, seq = os.dup(self._fd), self.seq
        try:
            os.fsync(fd)  # the lock is free meanwhile: writes go on
        except OSError as exc:
            with self._lock:
                if self.seq == seq:  # never append after what may not be on disk
                    self._broken = True
            raise StateUnavailableError("the state journal could not be synced") from exc
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, target)

    def rotate(self) -> int:
        """Close the current segment (fsynced) and open the next; returns the
        new segment's number: every entry so far is in an earlier one."""
        with self._lock:
            self._close_fd()
            self._open(self.seq + 1)
            return self.seq

    def _flusher(self) -> None:
        while not self._stop.wait(self.fsync_seconds):
            try:
                self.sync()
            except StateUnavailableError:
                log.exception("state journal fsync failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._close_fd()


def read_segment(path: Path) -> list[list[Any]]:
    """A segment's entries; lines that do not parse are writes cut short by a
    crash or a failed write (never acknowledged): skipped. A record entry of
    the older format (fixed customer and terminal, tag "r") is refused: it
    cannot be read as the declared aggregates' state (ValueError)."""
    entries = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line:
            continue
        try:
            entry = orjson.loads(line)
            if not isinstance(entry, list) or entry[0] not in ("R", "l", "r"):
                raise ValueError("not a journal entry")
        except (orjson.JSONDecodeError, ValueError, IndexError):
            log.warning("%s:%d: skipping a torn journal line", path.name, number)
            continue
        if entry[0] == "r":
            raise ValueError(f"{path}:{number}: a journal entry of the older state format: "
                             f"{OLD_STATE_REMEDY}")
        entries.append(entry)
    return entries


def record_line(tid: int, t: int, fingerprint: str, parts: Sequence[Part]) -> bytes:
    # Per history its horizon goes with the entry: replay must prune exactly
    # as it was. NaN (a missing value) is written as null.
    return orjson.dumps(
        ["R", tid, t, fingerprint,
         [[key, h, {c: (None if v != v else v) for c, v in vals.items()}, dist]
          for key, h, vals, dist in parts]]
    ) + b"\n"


def parts_from_line(entry: list[Any]) -> tuple[int, int, str, list[Part]]:
    """(id, time, fingerprint, parts) of a record entry."""
    _, tid, t, fingerprint, raw = entry
    parts: list[Part] = [
        (str(key), int(h), {c: float("nan") if v is None else float(v) for c, v in vals.items()},
         dict(dist))
        for key, h, vals, dist in raw
    ]
    return int(tid), int(t), str(fingerprint), parts


def label_line(transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bytes:
    return orjson.dumps(["l", transaction_id, int(bool(is_fraud)), labelled_at_ns]) + b"\n"
