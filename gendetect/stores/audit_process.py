"""The decision audit's writer in a process of its own: group commit with
the commits out of the serving process.

The thread writer (gendetect.stores.audit) commits inside the serving
process: its SQLAlchemy and driver work, a few hundred microseconds of
Python per commit, competes with the event loop for the interpreter lock,
and each hand-over of the lock costs a request up to the switch interval.
Here the serving process only pickles each loop iteration's rows into one
frame on a socket and reads the answers on its event loop (no thread); a
child process (gendetect.stores.audit_worker) commits them through the same
code (gendetect.stores.group_commit), on another core.

The contract is the thread writer's:

- Stored if and only if answered. A request's rows carry a deadline
  (`timeout` seconds after they were queued, on CLOCK_MONOTONIC, shared by
  all processes of the machine). The writer takes rows up only before their
  deadline; rows it finds expired are never written and their request gets
  StoreUnavailableError (503 `audit_unavailable`). Rows it took are in a
  commit, and their request waits for its outcome, which the database's own
  timeouts bound; a 503 thus never hides a stored decision, and a 2xx never
  a lost one. Only when no answer came `timeout` + 1 s after the deadline
  (a database that stops answering mid-commit, a writer process that hangs)
  or the writer process died does a request answer 503 without knowing the
  outcome (a retry then gets the stored decision back, or stores it).
- More than `queue_max` rows waiting: refused at once (back-pressure).
- A writer process that died is started again at the next write (at most
  once a second); meanwhile writes answer 503.

One event loop at a time uses a writer (the API has one).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gendetect.errors import StoreUnavailableError
from gendetect.stores.audit_worker import EXPIRED, READY, STOP, Frames, encode
from gendetect.stores.records import AuditRow
from gendetect.stores.retries import RequestOutcome

log = logging.getLogger("gendetect.stores")

# How much longer than `timeout` a request waits for an answer.
COMMIT_GRACE_SECONDS = 1.0
RESTART_SECONDS = 1.0


@dataclass(slots=True)
class _Item:
    future: asyncio.Future[RequestOutcome]
    rows: int
    timer: asyncio.TimerHandle | None = None


class AuditProcessWriter:
    def __init__(self, url: str, *, timeout: float, queue_max: int) -> None:
        self.url = url
        self.timeout = timeout
        self.queue_max = queue_max
        self.commits = 0  # transactions that wrote rows (reported by the process)
        self.rows_written = 0
        self._started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames = Frames()
        self._items: dict[int, _Item] = {}
        self._ids = itertools.count()
        self._pending = 0  # rows sent and not answered
        self._batch: list[tuple[int, float, Sequence[AuditRow]]] = []
        self._out = bytearray()
        self._writing = False
        self._send_lock = threading.RLock()  # close() may run in another thread
        self._restart_at = 0.0

    # ------------------------------------------------------------ lifecycle
    def start(self, wait: float = 60.0) -> None:
        """Start the writer process and wait (at most `wait` seconds) until it
        has its database engine, so that the first requests do not spend
        their time budget on its start (StoreUnavailableError if it does
        not come up)."""
        if not self._started:
            self._spawn(ready_within=wait)
            self._started = True

    def _spawn(self, ready_within: float | None = None) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gendetect.stores.audit_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        # The URL goes over the socket, not the command line (it may hold a password).
        ours.sendall(encode((self.url, self.timeout)))
        if ready_within is not None:
            try:
                self._await_ready(ours, ready_within)
            except BaseException:
                ours.close()
                self._proc.kill()
                self._proc.wait()
                self._proc = None
                raise
        ours.setblocking(False)
        self._sock, self._frames, self._out, self._writing = ours, Frames(), bytearray(), False
        self._loop = None  # bound to the loop of the next write

    @property
    def running(self) -> bool:
        """Started (and not closed); the process itself is restarted on demand."""
        return self._started

    def writer_pid(self) -> int | None:
        """The writer process' id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _await_ready(self, sock: socket.socket, seconds: float) -> None:
        sock.settimeout(seconds)
        frames = Frames()
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    raise StoreUnavailableError("the audit writer process exited at start")
                if READY in frames.feed(data):
                    return
        except TimeoutError:
            raise StoreUnavailableError(
                f"the audit writer process did not start within {seconds:g} s") from None

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the process."""
        if not self._started:
            return
        self._started = False
        sock, proc = self._sock, self._proc
        if sock is not None:
            with self._send_lock:
                self._out += encode(STOP)
                _send_blocking(sock, self._out, timeout)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            if _running_loop() is loop:
                self._detach()
            else:
                loop.call_soon_threadsafe(self._detach)
        else:
            self._detach(loop_alive=False)

    # ---------------------------------------------------------------- write
    async def write(self, rows: Sequence[AuditRow]) -> RequestOutcome:
        """Store `rows` durably; per row None, or the stored decision of a
        retried transaction. Raises StoreUnavailableError or
        DuplicateTransactionError."""
        if not self._started:
            raise StoreUnavailableError("the audit writer is not running")
        if self._sock is None:
            self._restart()
        loop = asyncio.get_running_loop()
        self._bind(loop)
        if self._pending + len(rows) > self.queue_max:
            raise StoreUnavailableError("too many decisions waiting for the database")
        self._pending += len(rows)
        item_id = next(self._ids)
        item = _Item(loop.create_future(), len(rows))
        item.timer = loop.call_later(self.timeout + COMMIT_GRACE_SECONDS, self._give_up,
                                     item_id)
        self._items[item_id] = item
        if not self._batch:
            # One frame per event-loop iteration: every request scored in
            # this iteration joins it (see _flush).
            loop.call_soon(self._flush)
        self._batch.append((item_id, time.monotonic() + self.timeout, rows))
        try:
            return await item.future
        finally:
            if item.timer is not None:
                item.timer.cancel()

    def _restart(self) -> None:
        now = time.monotonic()
        if now < self._restart_at:
            raise StoreUnavailableError("the audit writer process is restarting")
        self._restart_at = now + RESTART_SECONDS
        log.warning("audit writer process stopped; starting it again")
        self._spawn()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        old = self._loop
        if old is not None and not old.is_closed() and old.is_running():
            raise RuntimeError("an AuditProcessWriter serves one event loop at a time")
        assert self._sock is not None
        self._loop = loop
        loop.add_reader(self._sock, self._on_readable)
        if self._out:
            self._writing = True
            loop.add_writer(self._sock, self._on_writable)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch and self._sock is not None:
            data = encode(batch)
            with self._send_lock:
                self._out += data
                self._write_out()

    def _on_writable(self) -> None:
        with self._send_lock:
            self._write_out()

    def _write_out(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        try:
            while self._out:
                sent = sock.send(self._out)
                del self._out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._lost()
            return
        if self._out and not self._writing:
            self._writing = True
            loop.add_writer(sock, self._on_writable)
        elif not self._out and self._writing:
            self._writing = False
            loop.remove_writer(sock)

    # --------------------------------------------------------------- answers
    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        frames = []
        try:
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    self._answer(frames)
                    self._lost()
                    return
                frames.extend(self._frames.feed(data))
        except BlockingIOError:
            pass
        except OSError:
            self._answer(frames)
            self._lost()
            return
        self._answer(frames)

    def _answer(self, frames: list[object]) -> None:
        for frame in frames:
            if frame == READY:  # a restarted process (nobody waited for it)
                continue
            answers, commits, rows_written = frame  # type: ignore[misc]
            self.commits, self.rows_written = commits, rows_written
            for item_id, outcome in answers:
                item = self._items.pop(item_id, None)
                if item is None:
                    continue  # its request gave up already
                self._pending -= item.rows
                if outcome == EXPIRED:
                    outcome = StoreUnavailableError(
                        f"the database did not take the decision within {self.timeout:g} s; "
                        "nothing was stored")
                _settle(item.future, outcome)

    def _give_up(self, item_id: int) -> None:
        item = self._items.pop(item_id, None)
        if item is not None:
            self._pending -= item.rows
            _settle(item.future, StoreUnavailableError("the database did not finish the commit"))

    def _lost(self) -> None:
        """The process is gone: its unanswered requests' outcome is unknown."""
        self._detach()
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(1)
            self._proc = None
        items, self._items, self._pending = self._items, {}, 0
        for item in items.values():
            _settle(item.future, StoreUnavailableError(
                "the audit writer process stopped; the decision may not be stored"))

    def _detach(self, loop_alive: bool = True) -> None:
        sock, loop = self._sock, self._loop
        self._sock, self._loop, self._writing = None, None, False
        if sock is None:
            return
        if loop is not None and loop_alive and not loop.is_closed():
            loop.remove_reader(sock)
            loop.remove_writer(sock)
        sock.close()


def _settle(future: asyncio.Future[RequestOutcome], outcome: object) -> None:
    if future.done():
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _send_blocking(sock: socket.socket, out: bytearray, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):
        while out and time.monotonic() < deadline:
            select.select([], [sock], [], max(0.0, deadline - time.monotonic()))
            try:
                del out[:sock.send(out)]
            except BlockingIOError:
                continue
