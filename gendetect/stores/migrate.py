"""Schema migrations (Alembic), run from code: `gendetect db upgrade`, and
the API at start when the database is empty.

The API never upgrades a database that already has a schema: on a shared
production database that is an operator's step (`gendetect db upgrade`),
so a replica of a newer version cannot change the tables under the older
ones still running. A database at another revision is refused with a
message that says what to run.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from gendetect.stores.database import IMMEDIATE
from gendetect.stores.errors import SchemaVersionError
from gendetect.stores.tables import Base

log = logging.getLogger("gendetect.stores")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: replicas starting together on an empty PostgreSQL database
# take this advisory lock, so that one creates the schema and the others see it.
_LOCK_ID = 0x6765_6E64_6574


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    # The migration files of this installation: read once (readiness asks often).
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply the migrations up to `revision`; returns the revision before."""
    with engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
        _lock(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return before


def ensure_schema(engine: Engine) -> None:
    """At API start: create the schema in an empty database; accept one at
    the head revision; refuse any other (SchemaVersionError)."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        ours = {t.name for t in Base.metadata.sorted_tables}
        found = ours & set(inspect(engine).get_table_names())
        if found:
            raise SchemaVersionError(
                f"the database has tables {sorted(found)} but no migration revision: it was "
                "not created by gendetect's migrations; use an empty database"
            )
        before = upgrade(engine)
        if before is None:
            log.info("database schema created (revision %s)", head)
        return
    raise SchemaVersionError(
        f"the database schema is at revision {current}, this version of gendetect uses "
        f"{head}: run `gendetect db upgrade` (or upgrade gendetect if the database is newer)"
    )


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
