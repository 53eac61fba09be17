"""The decision audit's writer: group commit.

One thread owns the writes. A request queues its rows and awaits a future;
the thread takes everything queued at that moment (the rows of all requests
that arrived while the previous commit was running), checks their
transaction ids against the stored ones, inserts the new rows in one
transaction, commits, and then resolves every waiting request at once (one
wake-up of each event loop per group). Under load a commit therefore
carries as many requests as arrived during the one before it, so the cost
of a commit (an fsync, a round trip) is shared instead of paid per request;
with no concurrency a row is written as soon as it arrives.

- A request waits at most `timeout` seconds; then it fails with
  StoreUnavailableError (the API's 503 `audit_unavailable`) and its rows are
  skipped if the writer has not reached them yet. A row may thus be stored
  for a request that answered 503, never the reverse: a decision returned
  with a 2xx is committed.
- More than `queue_max` rows waiting: refused at once (back-pressure while
  the database is slow) rather than queueing requests that will time out.
- A transaction id that is already stored with the same record fingerprint
  is a retry: the stored decision is returned instead of the new one (it may
  come from another model version since). Other content under a stored id
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

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gendetect.errors import DuplicateTransactionError
from gendetect.stores.database import IMMEDIATE
from gendetect.stores.errors import StoreUnavailableError
from gendetect.stores.records import AuditRow, decision_from_row
from gendetect.stores.tables import decision_entities, decisions

log = logging.getLogger("gendetect.stores")

# Rows per transaction at most (a burst of large batches is split).
MAX_GROUP_ROWS = 5000
# Ids per SELECT ... IN (...) (SQLite's parameter limit is far above).
_IN_CHUNK = 500
_STOP = object()

# What a request gets per row: None (stored as given) or the stored decision.
Outcome = list[dict[str, Any] | None]


@dataclass(slots=True)
class _Item:
    rows: Sequence[AuditRow]
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop


class AuditWriter:
    def __init__(self, engine: Engine, *, timeout: float, queue_max: int) -> None:
        self.engine = engine
        self.timeout = timeout
        self.queue_max = queue_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.commits = 0  # groups committed (for tests and metrics)
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

    async def write(self, rows: Sequence[AuditRow]) -> Outcome:
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
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Item(rows, future, loop))
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            raise StoreUnavailableError(
                f"the database did not commit within {self.timeout:g} s"
            ) from None

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            items: list[_Item] = []
            first = self._queue.get()
            n = 0
            for item in _drain(first, self._queue):
                if item is _STOP:
                    stopping = True
                    continue
                n += len(item.rows)
                items.append(item)
                if n >= MAX_GROUP_ROWS:
                    break
            with self._lock:
                self._pending -= n
            # Requests that gave up (timed out) are not written any more.
            live = [i for i in items if not i.future.done()]
            if live:
                self._deliver(live, self._commit_safely(live))

    def _commit_safely(self, items: list[_Item]) -> list[Outcome | BaseException]:
        for attempt in (1, 2):
            try:
                return self._commit(items)
            except IntegrityError:
                # Another process inserted one of these ids between our
                # check and insert (PostgreSQL replicas): check again.
                if attempt == 2:
                    log.exception("audit commit failed twice on a conflict")
                    break
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue  # the connection died under us: one fresh try
                log.warning("audit commit failed: %s", type(exc.orig).__name__)
                break
            except SQLAlchemyError as exc:
                log.warning("audit commit failed: %s", type(exc).__name__)
                break
        error = StoreUnavailableError("the audit database is unavailable; nothing was stored")
        return [error] * len(items)

    def _commit(self, items: list[_Item]) -> list[Outcome | BaseException]:
        ids = {r.transaction_id for i in items for r in i.rows if r.transaction_id is not None}
        with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
            stored: dict[int, Any] = {}
            id_list = list(ids)
            for k in range(0, len(id_list), _IN_CHUNK):
                chunk = id_list[k : k + _IN_CHUNK]
                query = select(decisions).where(decisions.c.transaction_id.in_(chunk))
                for row in conn.execute(query).mappings():
                    stored[row["transaction_id"]] = row
            outcomes: list[Outcome | BaseException] = []
            group: dict[int, AuditRow] = {}
            new_rows: list[dict[str, Any]] = []
            new_entities: list[dict[str, Any]] = []
            for item in items:
                outcome = _check(item.rows, stored, group)
                outcomes.append(outcome)
                if isinstance(outcome, BaseException):
                    continue
                for row, result in zip(item.rows, outcome, strict=True):
                    if result is not None:
                        continue
                    decision_id = uuid.uuid4()
                    new_rows.append(row.values(decision_id))
                    new_entities.extend({"field": f, "digest": d, "decision_id": decision_id}
                                        for f, d in row.entities)
            if new_rows:
                conn.execute(insert(decisions), new_rows)
                if new_entities:
                    conn.execute(insert(decision_entities), new_entities)
        self.commits += 1
        self.rows_written += len(new_rows)
        return outcomes

    @staticmethod
    def _deliver(items: list[_Item], outcomes: list[Outcome | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Any]]] = {}
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


def _check(rows: Sequence[AuditRow], stored: dict[int, Any],
           group: dict[int, AuditRow]) -> Outcome | BaseException:
    """Per row: None (new), the decision to return (a retry), or a conflict
    for the whole request. Accepted new rows join `group`."""
    outcome: Outcome = []
    mine: dict[int, AuditRow] = {}
    for row in rows:
        tid = row.transaction_id
        if tid is None:
            outcome.append(None)
            continue
        if tid in stored:
            old = stored[tid]
            if old["fingerprint"] != row.fingerprint:
                return _conflict()
            outcome.append(decision_from_row(old))
            continue
        earlier = mine.get(tid) or group.get(tid)
        if earlier is not None:
            if earlier.fingerprint != row.fingerprint:
                return _conflict()
            outcome.append(earlier.decision)
            continue
        mine[tid] = row
        outcome.append(None)
    group.update(mine)
    return outcome


def _conflict() -> DuplicateTransactionError:
    return DuplicateTransactionError(
        "this transaction id is already recorded with different content",
        field="transaction_id",
    )


def _resolve(pairs: list[tuple[asyncio.Future[Outcome], Any]]) -> None:
    for future, outcome in pairs:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
