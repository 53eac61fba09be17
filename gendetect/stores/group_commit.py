"""One audit commit of a group of requests' rows: the database side of the
audit writers (the in-process thread, gendetect.stores.audit, and the writer
process, gendetect.stores.audit_process), so that both store the same way.

- A group is first inserted as it is, in one statement without reads (the
  common case: new ids), at the driver level (gendetect.stores.bulk). Only
  when that meets a stored id (a unique violation, rolled back) are the
  group's ids looked up. A transaction id that is already stored with the
  same record fingerprint is a retry: the stored decision is returned
  instead of the new one (it may come from another model version since).
  Other content under a stored id is a DuplicateTransactionError (409) and
  none of that request's rows are written. Within one group the first row of
  an id wins the same way.
- A failed commit fails that group's requests only; the next group takes a
  fresh (pre-pinged) connection, so the writer recovers by itself when the
  database is back. A connection lost mid-commit is retried once at once.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gendetect.errors import StoreUnavailableError
from gendetect.stores import bulk
from gendetect.stores.database import IMMEDIATE
from gendetect.stores.records import AuditRow
from gendetect.stores.retries import RequestOutcome, insert_checked
from gendetect.stores.tables import decisions

log = logging.getLogger("gendetect.stores")

Outcome = RequestOutcome | BaseException


class GroupCommitter:
    """Commits groups of requests' rows on one kept connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Kept between groups (no pool checkout and pre-ping per commit);
        # replaced after any database error.
        self._conn: Connection | None = None
        self.commits = 0  # transactions that wrote rows (for tests and metrics)
        self.rows_written = 0

    def commit(self, requests: Sequence[Sequence[AuditRow]]) -> list[Outcome]:
        """Per request: its outcome (None per row, or the stored decision of
        a retried transaction), or the exception to raise for it."""
        # First as if every id were new: one INSERT, no reads (retries are
        # rare). A unique violation means a stored id: then check each row.
        checked = False
        for _attempt in range(3):
            try:
                return self._checked(requests) if checked else self._insert_all(requests)
            except IntegrityError:
                if checked:
                    # Another process inserted one of these ids between our
                    # check and insert (replicas): check again.
                    log.warning("audit commit met a concurrent insert; checking again")
                checked = True
            except DBAPIError as exc:
                self.drop_connection()
                if exc.connection_invalidated and _attempt == 0:
                    continue  # the connection died under us: one fresh try
                log.warning("audit commit failed: %s", type(exc.orig).__name__)
                break
            except SQLAlchemyError as exc:
                self.drop_connection()
                log.warning("audit commit failed: %s", type(exc).__name__)
                break
        error = StoreUnavailableError("the audit database is unavailable; nothing was stored")
        return [error] * len(requests)

    def _connection(self) -> Connection:
        if self._conn is None:
            # Taken from the pool with a pre-ping: a database that restarted
            # meanwhile gets a fresh connection here.
            self._conn = self.engine.connect().execution_options(**IMMEDIATE)
        return self._conn

    def drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def _insert_all(self, requests: Sequence[Sequence[AuditRow]]) -> list[Outcome]:
        values = [row.values(uuid.uuid4()) for rows in requests for row in rows]
        conn = self._connection()
        with conn.begin():
            if bulk.supported(conn):
                bulk.insert_decisions(conn, values)
            else:
                conn.execute(insert(decisions), values)
        self.commits += 1
        self.rows_written += len(values)
        return [[None] * len(rows) for rows in requests]

    def _checked(self, requests: Sequence[Sequence[AuditRow]]) -> list[Outcome]:
        conn = self._connection()
        with conn.begin():
            outcomes, written = insert_checked(conn, requests)
        if written:  # a group of retries only writes nothing
            self.commits += 1
            self.rows_written += written
        return outcomes
