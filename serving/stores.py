"""The API's database: one engine for the audit writer, the verdicts and
the review queries (gendetect.stores), its schema check at start, and the
audit of the decisions the scoring routes return.

- At start the schema is checked in the background (the port opens at once,
  as for the model): an empty database gets the migrations, one at another
  revision is refused with a log line saying to run `gendetect db upgrade`,
  and an unreachable one is retried every few seconds. Until it is ready,
  scoring with the audit on answers 503 `audit_unavailable` and /readyz says
  why.
- With `audit_enabled` off nothing is written for scoring; verdicts and the
  review queue still use the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from gendetect.config import Settings
from gendetect.errors import DuplicateTransactionError
from gendetect.schema import Schema
from gendetect.stores.audit import AuditWriter
from gendetect.stores.database import make_engine, ping
from gendetect.stores.errors import SchemaVersionError, StoreUnavailableError
from gendetect.stores.records import RowBuilder
from gendetect.stores.review import ReviewStore
from gendetect.stores.verdicts import VerdictStore
from serving.auth import ConfigurationError
from serving.errors import ApiError, from_core_error

log = logging.getLogger("gendetect.serving")

RETRY_SECONDS = 2.0


def unavailable(code: str, exc: Exception) -> ApiError:
    return ApiError(503, code, str(exc), headers={"Retry-After": "1"})


class Stores:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.engine = make_engine(settings.resolved_database_url,
                                      timeout=settings.database_timeout_seconds)
        except (ArgumentError, NoSuchModuleError) as exc:
            # Never the URL itself: it may carry a password.
            raise ConfigurationError(
                f"GENDETECT_DATABASE_URL is not a database URL this installation can use "
                f"({type(exc).__name__}; PostgreSQL needs the postgres extra)") from None
        self.writer = (AuditWriter(self.engine, timeout=settings.database_timeout_seconds,
                                   queue_max=settings.audit_queue_max)
                       if settings.audit_enabled else None)
        self.verdicts = VerdictStore(self.engine)
        self.review = ReviewStore(self.engine)
        self.ready = False
        self.problem: str | None = "database schema not checked yet"
        self._hash_key = settings.resolved_hash_key()
        self._builder: tuple[Schema, RowBuilder] | None = None

    # ------------------------------------------------------------- lifecycle
    async def prepare(self) -> None:
        """Check (or create) the schema until it is right, then start the
        audit writer. Runs as a background task of the app."""
        from gendetect.stores.migrate import ensure_schema

        reported = None
        while True:
            try:
                await asyncio.to_thread(ensure_schema, self.engine)
                break
            except Exception as exc:  # retried: the database may come up later
                wait = 30.0 if isinstance(exc, SchemaVersionError) else RETRY_SECONDS
                message = (str(exc) if isinstance(exc, SchemaVersionError)
                           else f"database not reachable ({type(exc).__name__})")
                self.problem = message
                if message != reported:
                    log.warning("%s; retrying every %.0f s", message, wait)
                    reported = message
                await asyncio.sleep(wait)
        if self.writer is not None:
            self.writer.start()
        self.ready, self.problem = True, None
        log.info("database ready (audit %s)", "on" if self.writer is not None else "off")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # writes what is queued
        self.engine.dispose()

    def ping(self) -> bool:
        return self.ready and ping(self.engine)

    def require_ready(self, code: str) -> None:
        if not self.ready:
            raise ApiError(503, code, f"the database is not ready: {self.problem}",
                           headers={"Retry-After": "2"})

    # ----------------------------------------------------------------- audit
    def _rows_builder(self, schema: Schema) -> RowBuilder:
        cached = self._builder
        if cached is None or cached[0] is not schema:
            cached = self._builder = (schema, RowBuilder(schema, self._hash_key))
        return cached[1]

    async def audit(self, schema: Schema, records: Sequence[Mapping[str, Any]],
                    decisions: list[dict[str, Any]], decided_at: datetime,
                    key_name: str | None) -> list[dict[str, Any]]:
        """Store the decisions before they are returned; a retried
        transaction gets its stored decision back instead of the new one."""
        if self.writer is None:
            return decisions
        self.require_ready("audit_unavailable")
        rows = self._rows_builder(schema).rows(records, decisions, decided_at, key_name)
        try:
            outcome = await self.writer.write(rows)
        except StoreUnavailableError as exc:
            raise unavailable("audit_unavailable", exc) from None
        except DuplicateTransactionError as exc:
            raise from_core_error(exc) from None
        for i, stored in enumerate(outcome):
            if stored is not None:
                decisions[i] = stored
        return decisions
