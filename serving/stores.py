"""The API's database: one engine for the audit writer, the verdicts and
the review queries (gendetect.stores), its schema check at start, and the
audit of the decisions the scoring routes return.

- At start the schema is checked in the background (the port opens at once,
  as for the model): an empty database gets the migrations, one at another
  revision is refused with a log line saying to run `gendetect db upgrade`,
  and an unreachable one is retried every few seconds. Until it is ready,
  scoring with the audit on answers 503 `audit_unavailable` and /readyz says
  why.
- Then the hash key's check value is compared with the one the database
  recorded (gendetect.stores.hash_key): a database whose decisions were
  written with another key keeps the service not ready for good (an ERROR
  log line, /readyz and every audit 503 say why) until the old key is back
  or GENDETECT_ACCEPT_NEW_HASH_KEY records the new one; its rows are never
  deleted. Not ready rather than a failed start: the check needs the
  database, which may come up after the port opened.
- With `audit_enabled` off nothing is written for scoring; verdicts and the
  review queue still use the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from gendetect.errors import DuplicateTransactionError, StoreUnavailableError
from gendetect.key_check import HashKeyChangedError, key_check
from gendetect.logs import request_id_var
from gendetect.schema import Schema
from gendetect.stores.audit import AuditWriter
from gendetect.stores.audit_process import AuditProcessWriter
from gendetect.stores.database import make_engine
from gendetect.stores.errors import SchemaVersionError
from gendetect.stores.hash_key import check_hash_key
from gendetect.stores.records import RowBuilder
from gendetect.stores.review import ReviewStore
from gendetect.stores.verdicts import VerdictStore
from serving.auth import ConfigurationError
from serving.errors import ApiError, from_core_error
from serving.settings import ServingSettings

log = logging.getLogger("gendetect.serving")

RETRY_SECONDS = 2.0


def unavailable(code: str, exc: Exception) -> ApiError:
    return ApiError(503, code, str(exc), headers={"Retry-After": "1"})


def _audit_writer(settings: ServingSettings, engine: Engine) -> AuditWriter | AuditProcessWriter:
    """The writer process (commits off the serving process' interpreter
    lock), unless asked for the thread or the database lives in this
    process' memory (another process cannot open it)."""
    timeout, queue_max = settings.database_timeout_seconds, settings.audit_queue_max
    url = engine.url
    in_memory = url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory")
    if settings.audit_writer == "thread" or in_memory:
        return AuditWriter(engine, timeout=timeout, queue_max=queue_max)
    return AuditProcessWriter(url.render_as_string(hide_password=False), timeout=timeout,
                              queue_max=queue_max)


class Stores:
    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        try:
            self.engine = make_engine(settings.resolved_database_url,
                                      timeout=settings.database_timeout_seconds)
        except (ArgumentError, NoSuchModuleError) as exc:
            # Never the URL itself: it may carry a password.
            raise ConfigurationError(
                f"GENDETECT_DATABASE_URL is not a database URL this installation can use "
                f"({type(exc).__name__}; PostgreSQL needs the postgres extra)") from None
        self.writer = _audit_writer(settings, self.engine) if settings.audit_enabled else None
        self.verdicts = VerdictStore(self.engine)
        self.review = ReviewStore(self.engine)
        self.ready = False  # the start-up checks passed and the writer runs
        self.problem: str | None = "database schema not checked yet"
        self.ping_problem: str | None = None  # what the last readiness probe found
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
                await asyncio.to_thread(check_hash_key, self.engine, key_check(self._hash_key),
                                        accept_new_key=self.settings.accept_new_hash_key)
                break
            except HashKeyChangedError as exc:
                # Not retried: only a restart with the old key (or the accept
                # setting) changes the answer.
                self.problem = str(exc.with_source(self.settings.hash_key_source))
                log.error("%s", self.problem)
                return
            except Exception as exc:  # retried: the database may come up later
                wait = 30.0 if isinstance(exc, SchemaVersionError) else RETRY_SECONDS
                message = (str(exc) if isinstance(exc, SchemaVersionError)
                           else f"database not reachable ({type(exc).__name__})")
                self.problem = message
                if message != reported:
                    log.warning("%s; retrying every %.0f s", message, wait)
                    reported = message
                await asyncio.sleep(wait)
        while self.writer is not None:
            try:
                # The writer process starts in a thread: the loop keeps answering.
                await asyncio.to_thread(self.writer.start)
                break
            except StoreUnavailableError as exc:
                self.problem = str(exc)
                log.warning("%s; retrying every %.0f s", exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
        self.ready, self.problem = True, None
        log.info("database ready (audit %s)", "on" if self.writer is not None else "off")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # writes what is queued
        self.engine.dispose()

    def ping(self) -> bool:
        """For /readyz: the database answers and holds the schema scoring
        writes to, at this version's revision, made with this hash key.
        `SELECT 1` is not enough: a database recreated empty answers it while
        every audit insert fails. An empty one gets the migrations again, as
        at start; one at another revision is not ready, with the reason in
        `ping_problem`, until `gendetect db upgrade`. Scoring does not wait
        for this probe: it fails or succeeds on the database by itself.
        Never raises; bounded by the engine's timeouts."""
        if not self.ready:
            self.ping_problem = self.problem
            return False
        from gendetect.stores.migrate import ensure_schema

        try:
            ensure_schema(self.engine)
            check_hash_key(self.engine, key_check(self._hash_key),
                           accept_new_key=self.settings.accept_new_hash_key)
        except HashKeyChangedError as exc:
            message = str(exc.with_source(self.settings.hash_key_source))
        except SchemaVersionError as exc:
            message = str(exc)
        except Exception as exc:
            message = f"database not reachable ({type(exc).__name__})"
        else:
            if self.ping_problem is not None:
                log.info("database ready again")
            self.ping_problem = None
            return True
        if message != self.ping_problem:
            log.warning("database not ready: %s", message)
        self.ping_problem = message
        return False

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
                    decisions: list[dict[str, Any]], fingerprints: Sequence[str],
                    decided_at: datetime, key_name: str | None,
                    behaviour: Sequence[Mapping[str, float]] | None = None,
                    ) -> list[dict[str, Any]]:
        """Store the decisions before they are returned; a retried
        transaction gets its stored decision back instead of the new one.
        `fingerprints`: the records' identities (the same the state keeps);
        `behaviour`: the window features the model got, kept for analysts."""
        if self.writer is None:
            return decisions
        self.require_ready("audit_unavailable")
        rows = self._rows_builder(schema).rows(records, decisions, decided_at, key_name,
                                               fingerprints, request_id_var.get(), behaviour)
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
