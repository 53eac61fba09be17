"""The stores' tables. Times are UTC, stored without a zone (SQLite has
none; both databases then compare them the same way). Floats are doubles, so
a stored decision reads back bit for bit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints: migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
LABELS = ("fraud", "genuine")
# SQLite makes only INTEGER PRIMARY KEY columns autoincrement.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Decision(Base):
    """One decision the API returned: what it needs to answer again exactly
    (an idempotent retry) and what an analyst asks ("which model, why")."""

    __tablename__ = "decisions"
    # Made by the writer, not the database: a stored row is recognised as the
    # writer's own without a round trip for generated keys, and ids are
    # unique across replicas.
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    transaction_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime())
    event_time: Mapped[datetime | None] = mapped_column(DateTime())
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Double())
    risk: Mapped[float] = mapped_column(Double())
    is_fraud: Mapped[bool]
    threshold: Mapped[float] = mapped_column(Double())
    top_features: Mapped[list[dict[str, Any]]] = mapped_column(JSON())
    top_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON())
    # The schema's entity ids as keyed hashes, {field: digest}: in the row
    # itself, so that a decision is one row to write (a table of its own
    # would double the statements of every commit).
    entities: Mapped[dict[str, str]] = mapped_column(JSON())
    # Keyed hash of the whole validated record: a retry with other content
    # under the same id is a conflict, not a replay.
    fingerprint: Mapped[str] = mapped_column(String(32))
    key_name: Mapped[str | None] = mapped_column(String(64))
    # The request's X-Request-ID (serving.request_id): its log lines and trace.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # The top reasons' names as "|name|name|": the queue's reason filter is a
    # LIKE on the row the ordered index scan reads anyway, so a decision stays
    # one row to write (records.reason_names).
    reason_names: Mapped[str | None] = mapped_column(String(512))
    # The record's non-personal fields and its behaviour features, for the
    # analyst ({"record": {...}, "behaviour": {...}}; records.RowBuilder).
    # Null for decisions stored before it was kept.
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    __table_args__ = (
        Index("ix_decisions_decided_at_id", "decided_at", "id"),
        # The review queue reads flagged decisions newest first, or riskiest
        # first: each order a backward range scan of its partial index.
        Index("ix_decisions_flagged", "decided_at", "id",
              postgresql_where=text("is_fraud"), sqlite_where=text("is_fraud")),
        Index("ix_decisions_flagged_risk", "risk", "decided_at", "id",
              postgresql_where=text("is_fraud"), sqlite_where=text("is_fraud")),
    )


class Verdict(Base):
    """An analyst's verdict; rows are never changed: a changed verdict is a
    new row, and the latest (labelled_at, then id) wins."""

    __tablename__ = "verdicts"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(16))
    analyst: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text())
    labelled_at: Mapped[datetime] = mapped_column(DateTime())
    received_at: Mapped[datetime] = mapped_column(DateTime())
    key_name: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint("label IN ('fraud', 'genuine')", name="label"),
        Index("ix_verdicts_transaction", "transaction_id", "labelled_at", "id"),
        Index("ix_verdicts_labelled_at", "labelled_at"),
    )


class HashKeyCheck(Base):
    """The check value of the hash key the entity digests are made with
    (gendetect.key_check); one row (id 1), never the key itself."""

    __tablename__ = "hash_key_check"
    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    key_check: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(DateTime())

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


decisions = Decision.__table__
verdicts = Verdict.__table__
hash_key_check = HashKeyCheck.__table__
