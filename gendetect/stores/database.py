"""Engines: one per database URL, with every wait bounded.

- `postgresql://` and `postgres://` URLs use psycopg 3 (the `postgres` extra;
  SQLAlchemy's default for them would be psycopg2). Connections are
  pre-pinged when taken from the pool, so that after a database restart the
  dead ones are replaced instead of failing a request; connect, statement
  and lock waits are bounded by `timeout`.
- SQLite runs in WAL mode (readers never block the writer) with
  synchronous=FULL, so that a committed transaction survives a power cut, not
  only a crash of the process. The driver's own transaction handling is
  switched off and SQLAlchemy emits BEGIN itself; the audit writer asks for
  BEGIN IMMEDIATE, which takes the write lock before it reads, so two
  processes on one file cannot interleave a check and an insert. A database
  file it creates is mode 0600 (its side files follow), its folder 0700.
- One transaction may ask for a shorter wait than the engine's (a request
  whose time budget is partly spent): `wait_bounds` gives the execution
  options that make SQLite's BEGIN wait at most that long, and
  `bound_transaction` sets PostgreSQL's lock and statement timeouts for the
  rest of the transaction.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from gendetect.private_files import create_private_file

# Execution option: the connection's transaction takes SQLite's write lock
# at BEGIN (other databases ignore it).
IMMEDIATE = {"sqlite_immediate": True}
# Execution option: SQLite's busy timeout (ms) for the next BEGIN instead of
# the engine's; other databases ignore it.
_BUSY_MS = "sqlite_busy_ms"


def wait_bounds(seconds: float) -> dict[str, Any]:
    """Execution options: SQLite's BEGIN waits for the write lock at most
    `seconds` (at least 1 ms: 0 would mean not at all)."""
    return {_BUSY_MS: max(1, int(seconds * 1000))}


def bound_transaction(conn: Connection, seconds: float) -> None:
    """PostgreSQL: every lock wait and statement of the current transaction
    ends within `seconds` (SET LOCAL: the pooled connection keeps the
    engine's timeouts for its next user). One round trip; nothing on SQLite,
    whose only wait (BEGIN) `wait_bounds` bounds."""
    if conn.dialect.name != "postgresql":
        return
    value = f"{max(1, int(seconds * 1000))}ms"
    conn.execute(text("SELECT set_config('lock_timeout', :v, true), "
                      "set_config('statement_timeout', :v, true)"), {"v": value})


def normalise_url(url: str) -> str:
    """postgresql:// and postgres:// -> postgresql+psycopg:// (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _json_dumps(value: Any) -> str:
    # orjson: several times faster than json, and floats round-trip exactly.
    return orjson.dumps(value).decode()


# Parameters never appear in error messages or logs: rows hold keyed hashes
# and scores, but an error message is no place for them either.
_COMMON: dict[str, Any] = {
    "hide_parameters": True, "json_serializer": _json_dumps, "json_deserializer": orjson.loads,
}


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, timeout: float = 2.0, pool_size: int = 4) -> Engine:
    """An engine whose waits (connect, pool checkout, locks, statements) are
    bounded by `timeout` seconds."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, timeout)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        millis = int(timeout * 1000)
        connect_args = {
            # libpq counts whole seconds and treats less than 2 as 2.
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"-c statement_timeout={millis * 5} -c lock_timeout={millis}",
            # A peer that vanished without closing is noticed in seconds.
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
            "keepalives_count": 2,
        }
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
        pool_timeout=timeout, pool_recycle=1800, connect_args=connect_args, **_COMMON,
    )


def _sqlite_engine(url: str, timeout: float) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        # Created here, 0600 in a 0700 folder, before SQLite opens it: SQLite
        # would create it with the umask's mode (0644, world-readable) and
        # give its -wal/-shm/-journal files that mode too; it holds analysts'
        # names and notes. (A `file:` URI is the caller's own business.)
        create_private_file(database)
    # A checkout waits no longer than any other wait (SQLAlchemy's default
    # is 30 s: requests queued behind a locked file waited that). Only file
    # databases get a queue pool; an in-memory one refuses the argument.
    in_memory = not database or database == ":memory:" or parsed.query.get("mode") == "memory"
    pool: dict[str, Any] = {} if in_memory else {"pool_timeout": timeout}
    engine = create_engine(
        url, connect_args={"timeout": timeout, "check_same_thread": False}, **pool, **_COMMON
    )
    busy_ms = int(timeout * 1000)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       f"busy_timeout={busy_ms}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        options = connection.get_execution_options()
        # The busy timeout belongs to the connection, and pooled connections
        # are shared: set it for this BEGIN when it differs from what the
        # connection has now (a PRAGMA, no I/O).
        wanted = int(options.get(_BUSY_MS, busy_ms))
        info = connection.connection.info
        if info.get(_BUSY_MS, busy_ms) != wanted:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wanted}")
            info[_BUSY_MS] = wanted
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate")
                                   else "BEGIN")

    return engine


def ping(engine: Engine) -> bool:
    """Whether the database answers (never raises; bounded by the engine's
    timeouts)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
