"""The audit database's record of the hash key (gendetect.key_check).

Decisions hold entity digests and record fingerprints keyed with the hash
key: under another key an exact retry of an acknowledged record no longer
matches its stored fingerprint (a 409 instead of the stored decision) and no
customer matches its old rows. So the database keeps the key's check value
(table `hash_key_check`, one row, migration 0002) and the API compares it at
start (`check_hash_key`, after the schema check). The database is never
wiped: with the accept setting the new check value is recorded and the old
rows stay as they are.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from gendetect.key_check import ACCEPT_SETTING, HashKeyChangedError
from gendetect.stores.database import IMMEDIATE
from gendetect.stores.tables import decisions, hash_key_check

log = logging.getLogger("gendetect.stores")

KeyCheckOutcome = Literal["recorded", "same", "accepted"]


def describe(engine: Engine) -> str:
    """The database in words, never with its password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the audit database {url.database}"
    return f"the audit database {url.database!r} on {url.host or 'localhost'}"


def check_hash_key(
    engine: Engine, key_check: str, *, accept_new_key: bool = False
) -> KeyCheckOutcome:
    """Compare `key_check` with the recorded one: record it if there is none
    ("recorded": a new database, or one written before check values existed,
    whose key is adopted), "same" if equal; HashKeyChangedError if another
    one is recorded and decisions were written under it, unless
    `accept_new_key` ("accepted": the new one is recorded, the rows kept)."""
    try:
        return _check_key(engine, key_check, accept_new_key)
    except IntegrityError:
        # Another replica recorded its value between our read and insert
        # (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises): compare with it.
        return _check_key(engine, key_check, accept_new_key)


def _check_key(engine: Engine, key_check: str, accept: bool) -> KeyCheckOutcome:
    now = datetime.now(UTC).replace(tzinfo=None)
    where = describe(engine)
    with engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
        stored = conn.execute(
            select(hash_key_check.c.key_check).where(hash_key_check.c.id == 1)
        ).scalar()
        if stored == key_check:
            return "same"
        written = conn.execute(select(decisions.c.id).limit(1)).first() is not None
        if stored is None:
            conn.execute(insert(hash_key_check).values(id=1, key_check=key_check,
                                                       recorded_at=now))
            if written:
                log.warning("%s has no hash-key check value (written before gendetect kept "
                            "one): adopting the key in use", where)
            return "recorded"
        if written and not accept:
            raise HashKeyChangedError(
                where, "record the new key there (its rows are kept; retries of decisions "
                "made under the old key are then conflicts)")
        conn.execute(update(hash_key_check).where(hash_key_check.c.id == 1)
                     .values(key_check=key_check, recorded_at=now))
    if written:
        log.warning("THE HASH KEY CHANGED and %s is set: %s now records the new key; its rows "
                    "made under the old key no longer match new digests", ACCEPT_SETTING, where)
    return "accepted"
