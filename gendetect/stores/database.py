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
  processes on one file cannot interleave a check and an insert.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

# Execution option: the connection's transaction takes SQLite's write lock
# at BEGIN (other databases ignore it).
IMMEDIATE = {"sqlite_immediate": True}


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
    if parsed.database and parsed.database != ":memory:":
        from pathlib import Path

        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": timeout, "check_same_thread": False}, **_COMMON
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
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

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
