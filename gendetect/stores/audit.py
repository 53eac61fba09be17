"""The decision audit's writer: group commit.

One thread owns the writes. A request adds its rows to the event loop's
current list and awaits a future; the list is handed to the thread once per
loop iteration (every request the loop scored in that iteration, without
waiting for anything else). The thread takes every list handed over by then
(the requests that arrived while the previous commit was running), inserts
their rows in one transaction, commits, and then resolves every waiting
request at once (one wake-up of each event loop per group). The busier the
service, the more requests a commit carries, so the fixed cost of a commit
(an fsync, a round trip: about half a millisecond of CPU) is shared instead
of paid per request; an idle service writes a lone request at once.

- Stored if and only if answered: a request whose rows the writer has not
  taken up within `timeout` seconds gives up (StoreUnavailableError, the
  API's 503 `audit_unavailable`), and the writer skips them. Taking rows up
  and giving up exclude each other (one lock): rows the writer has taken
  are in a commit, and their request waits for its outcome, which the
  database's own timeouts bound (the engine's connect, lock and statement
  timeouts, also `timeout`); a 503 thus never hides a stored decision, and
  a 2xx never a lost one. Only a commit that has not finished `timeout` + 1 s
  after that (a database that stops answering mid-commit) answers 503
  without knowing the outcome.
- More than `queue_max` rows waiting: refused at once (back-pressure while
  the database is slow) rather than queueing requests that will time out.
- Each group is committed by gendetect.stores.group_commit (new ids in one
  driver-level INSERT; retries and conflicts sorted out only when a stored
  id is met; a failed commit fails that group only).
- This writer runs in a thread of the serving process. The API uses the
  writer process instead (gendetect.stores.audit_process: the same
  contract, the commits out of the serving process' interpreter lock); this
  one serves in-memory SQLite databases, which another process cannot open,
  and GENDETECT_AUDIT_WRITER=thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from gendetect.errors import StoreUnavailableError
from gendetect.stores.group_commit import GroupCommitter, Outcome
from gendetect.stores.records import AuditRow
from gendetect.stores.retries import RequestOutcome

log = logging.getLogger("gendetect.stores")

# Rows per transaction at most (a burst of large batches is split).
MAX_GROUP_ROWS = 5000
_STOP = object()


# An item's life: waiting for the writer, then taken up by it (in a commit)
# or abandoned by its request (never both: see the module docstring).
_WAITING, _TAKEN, _ABANDONED = 0, 1, 2
# How much longer than `timeout` a request waits for a commit already running.
COMMIT_GRACE_SECONDS = 1.0


@dataclass(slots=True)
class _Item:
    rows: Sequence[AuditRow]
    future: asyncio.Future[RequestOutcome]
    loop: asyncio.AbstractEventLoop
    state: int = _WAITING
    timer: asyncio.TimerHandle | None = None


class AuditWriter:
    def __init__(self, engine: Engine, *, timeout: float, queue_max: int) -> None:
        self.engine = engine
        self.timeout = timeout
        self.queue_max = queue_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        # Items of the current event-loop iteration, per loop (see write()).
        self._pending_items: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._thread: threading.Thread | None = None
        self._committer = GroupCommitter(engine)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def commits(self) -> int:
        """Transactions that wrote rows (for tests and metrics)."""
        return self._committer.commits

    @property
    def rows_written(self) -> int:
        return self._committer.rows_written

    def start(self) -> None:
        if self._thread is None:
            # A daemon: a database that hangs must not keep the process alive.
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    async def write(self, rows: Sequence[AuditRow]) -> RequestOutcome:
        """Store `rows` durably; per row None, or the stored decision of a
        retried transaction. Raises StoreUnavailableError or
        DuplicateTransactionError."""
        if self._thread is None:
            raise StoreUnavailableError("the audit writer is not running")
        with self._lock:
            if self._pending + len(rows) > self.queue_max:
                raise StoreUnavailableError("too many decisions waiting for the database")
            self._pending += len(rows)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RequestOutcome] = loop.create_future()
        pending = self._pending_items.get(loop)
        if pending is None:
            # Hand over once per event-loop iteration: every request scored
            # in this iteration joins the same item list (see _flush).
            pending = self._pending_items[loop] = []
            loop.call_soon(self._flush, loop)
        item = _Item(rows, future, loop)
        pending.append(item)
        item.timer = loop.call_later(self.timeout, self._expire, item)
        try:
            return await future
        finally:
            if item.timer is not None:
                item.timer.cancel()

    def _expire(self, item: _Item) -> None:
        """On the request's loop, `timeout` after it queued its rows."""
        with self._lock:
            abandoned = item.state == _WAITING
            if abandoned:
                item.state = _ABANDONED
        if abandoned:
            _fail(item.future, StoreUnavailableError(
                f"the database did not take the decision within {self.timeout:g} s; "
                "nothing was stored"))
        else:  # in a commit: its outcome is the answer
            item.timer = item.loop.call_later(COMMIT_GRACE_SECONDS, _fail, item.future,
                                              StoreUnavailableError(
                                                  "the database did not finish the commit"))

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue.put(self._pending_items.pop(loop))

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            items: list[_Item] = []
            first = self._queue.get()
            n = 0
            for handed in _drain(first, self._queue):
                if handed is _STOP:
                    stopping = True
                    continue
                n += sum(len(item.rows) for item in handed)
                items.extend(handed)
                if n >= MAX_GROUP_ROWS:
                    break
            # Requests that gave up (timed out, or went away) are not written;
            # the others are taken up and wait for this commit's outcome.
            live = []
            with self._lock:
                self._pending -= n
                for item in items:
                    if item.state == _WAITING and not item.future.done():
                        item.state = _TAKEN
                        live.append(item)
            if live:
                self._deliver(live, self._committer.commit([item.rows for item in live]))
        self._committer.drop_connection()

    @staticmethod
    def _deliver(items: list[_Item], outcomes: list[Outcome]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[RequestOutcome], Any]]
        ] = {}
        for item, outcome in zip(items, outcomes, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, outcome))
        for loop, pairs in by_loop.items():
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, pairs)


def _drain(first: Any, q: queue.SimpleQueue[Any]) -> Iterator[Any]:
    yield first
    while True:
        try:
            yield q.get_nowait()
        except queue.Empty:
            return


def _fail(future: asyncio.Future[RequestOutcome], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _resolve(pairs: list[tuple[asyncio.Future[RequestOutcome], Any]]) -> None:
    for future, outcome in pairs:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
