"""What analysts read: the review queue (flagged decisions without a
verdict, newest first) and one transaction's decision with its verdicts.

The queue pages by cursor, not offset: the cursor is the (decided_at, id) of
the last alert of a page, so a page never repeats or skips an alert while
new ones arrive at the top, and each page is one index range scan (the
partial index on flagged decisions) however deep the reader is."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, and_, exists, or_, select
from sqlalchemy.exc import SQLAlchemyError

from gendetect.errors import InputError, StoreUnavailableError
from gendetect.stores.records import decision_from_row, utc_naive
from gendetect.stores.tables import decisions, verdicts


@dataclass(frozen=True, slots=True)
class AlertFilter:
    since: datetime | None = None  # decided_at >= since
    until: datetime | None = None  # decided_at < until
    model_version: str | None = None
    entity: tuple[str, str] | None = None  # (field, keyed hash)


def encode_cursor(decided_at: datetime, decision_id: uuid.UUID) -> str:
    raw = orjson.dumps([decided_at.isoformat(), decision_id.hex])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, hex_id = orjson.loads(raw)
        return datetime.fromisoformat(at), uuid.UUID(hex=hex_id)
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise InputError("not a cursor this service returned", field="cursor") from None


def _bound(value: datetime, field: str) -> datetime:
    try:
        return utc_naive(value)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last UTC time
        raise InputError("out of range", field=field) from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def decision_view(row: Any) -> dict[str, Any]:
    """A stored decision as the review endpoints show it."""
    out = decision_from_row(row)
    out["decided_at"] = _iso(row["decided_at"])
    out["event_time"] = _iso(row["event_time"])
    return out


def verdict_view(row: Any) -> dict[str, Any]:
    return {
        "label": row["label"], "analyst": row["analyst"], "note": row["note"],
        "labelled_at": _iso(row["labelled_at"]), "received_at": _iso(row["received_at"]),
        "source": row["source"],
    }


class ReviewStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def alerts(self, flt: AlertFilter, *, limit: int, cursor: str | None
               ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the queue and the cursor of the next (None at the end)."""
        d = decisions.c
        no_verdict = ~exists().where(verdicts.c.transaction_id == d.transaction_id)
        query = select(decisions).where(d.is_fraud, no_verdict)
        if flt.since is not None:
            query = query.where(d.decided_at >= _bound(flt.since, "since"))
        if flt.until is not None:
            query = query.where(d.decided_at < _bound(flt.until, "until"))
        if flt.model_version is not None:
            query = query.where(d.model_version == flt.model_version)
        if flt.entity is not None:
            query = query.where(d.entities[flt.entity[0]].as_string() == flt.entity[1])
        if cursor is not None:
            at, last = decode_cursor(cursor)
            query = query.where(or_(d.decided_at < at, and_(d.decided_at == at, d.id < last)))
        query = query.order_by(d.decided_at.desc(), d.id.desc()).limit(limit + 1)
        rows = self._all(query)
        page = rows[:limit]
        nxt = encode_cursor(page[-1]["decided_at"], page[-1]["id"]) if len(rows) > limit else None
        return [decision_view(r) for r in page], nxt

    def decision(self, transaction_id: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The stored decision (None if none) and the verdicts, oldest first."""
        found = self._all(select(decisions).where(decisions.c.transaction_id == transaction_id))
        history = self._all(select(verdicts).where(verdicts.c.transaction_id == transaction_id)
                            .order_by(verdicts.c.labelled_at, verdicts.c.id))
        return (decision_view(found[0]) if found else None), [verdict_view(v) for v in history]

    def _all(self, query: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query).mappings())
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(f"the database failed: {type(exc).__name__}") from None
