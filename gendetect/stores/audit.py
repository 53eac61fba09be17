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
- A group is first inserted as it is, in one statement without reads (the
  common case: new ids). Only when that meets a stored id (a unique
  violation, rolled back) are the group's ids looked up. A transaction id
  that is already stored with the same record fingerprint is a retry: the
  stored decision is returned instead of the new one (it may come from
  another model version since). Other content under a stored id
  is a DuplicateTransactionError (409) and none of that request's rows are
  written. Within one group the first row of an id wins the same way.
- A failed commit fails that group's requests only; the next group takes a
  fresh (pre-pinged) connection, so the writer recovers by itself when the
  database is back. A connection lost mid-commit is retried once at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gendetect.errors import StoreUnavailableError
from gendetect.stores import bulk
from gendetect.stores.database import IMMEDIATE
from gendetect.stores.records import AuditRow
from gendetect.stores.retries import RequestOutcome, insert_checked
from gendetect.stores.tables import decisions

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
        # The writer's own connection, kept between groups (no pool checkout
        # and pre-ping per commit); replaced after any database error.
        self._conn: Connection | None = None
        self.commits = 0  # transactions that wrote rows (for tests and metrics)
        self.rows_written = 0

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
                self._deliver(live, self._commit_safely(live))
        self._drop_connection()

    def _commit_safely(self, items: list[_Item]) -> list[RequestOutcome | BaseException]:
        # First as if every id were new: one INSERT, no reads (retries are
        # rare). A unique violation means a stored id: then check each row.
        checked = False
        for _attempt in range(3):
            try:
                return self._commit(items) if checked else self._insert_all(items)
            except IntegrityError:
                if checked:
                    # Another process inserted one of these ids between our
                    # check and insert (PostgreSQL replicas): check again.
                    log.warning("audit commit met a concurrent insert; checking again")
                checked = True
            except DBAPIError as exc:
                self._drop_connection()
                if exc.connection_invalidated and _attempt == 0:
                    continue  # the connection died under us: one fresh try
                log.warning("audit commit failed: %s", type(exc.orig).__name__)
                break
            except SQLAlchemyError as exc:
                self._drop_connection()
                log.warning("audit commit failed: %s", type(exc).__name__)
                break
        error = StoreUnavailableError("the audit database is unavailable; nothing was stored")
        return [error] * len(items)

    def _connection(self) -> Connection:
        if self._conn is None:
            # Taken from the pool with a pre-ping: a database that restarted
            # meanwhile gets a fresh connection here.
            self._conn = self.engine.connect().execution_options(**IMMEDIATE)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def _insert_all(self, items: list[_Item]) -> list[RequestOutcome | BaseException]:
        values = [row.values(uuid.uuid4()) for item in items for row in item.rows]
        conn = self._connection()
        with conn.begin():
            if bulk.supported(conn):
                bulk.insert_decisions(conn, values)
            else:
                conn.execute(insert(decisions), values)
        self.commits += 1
        self.rows_written += len(values)
        return [[None] * len(item.rows) for item in items]

    def _commit(self, items: list[_Item]) -> list[RequestOutcome | BaseException]:
        conn = self._connection()
        with conn.begin():
            outcomes, written = insert_checked(conn, [item.rows for item in items])
        if written:  # a group of retries only writes nothing
            self.commits += 1
            self.rows_written += written
        return outcomes

    @staticmethod
    def _deliver(items: list[_Item], outcomes: list[RequestOutcome | BaseException]) -> None:
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
