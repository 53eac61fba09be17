"""What analysts read: the review queue (flagged decisions without a
verdict, newest or riskiest first, optionally of one reason) and one
transaction's decision with its verdicts.

The queue pages by cursor, not offset: the cursor is the sort key of the
last alert of a page ((decided_at, id) newest first; (risk, decided_at, id)
riskiest first), so a page never repeats or skips an alert while new ones
arrive, and each page is one index range scan (a partial index on flagged
decisions per order) however deep the reader is. The reason filter is a
LIKE on the scanned rows' `reason_names`, not an index of its own: a
decision stays one row to write.

Riskiest is by `risk`, not `score`: risk is calibrated to [0, 1] per model,
so alerts of two model versions compare; raw scores of two detectors do
not. Within one model version the two orders agree (risk is monotone in
the score)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, exists, literal, select, text, tuple_
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
    reason: str | None = None  # one of the decision's top reasons


Order = Literal["newest", "riskiest"]
ORDERS: tuple[Order, ...] = ("newest", "riskiest")


def encode_cursor(order: Order, row: Any) -> str:
    """The sort key of `row`. Newest-first cursors keep the form they had
    before there were two orders ([time, id]), so cursors handed out then
    still work; riskiest-first ones are tagged."""
    key: list[Any] = [row["decided_at"].isoformat(), row["id"].hex]
    if order == "riskiest":
        key = ["riskiest", row["risk"], *key]
    raw = orjson.dumps(key)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: Order = "newest") -> tuple[Any, ...]:
    """The sort key in a cursor of `order`; a cursor of the other order is
    refused by name (its key would page the wrong list)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
        if not isinstance(key, list):
            raise TypeError
        tagged = len(key) == 4 and key[0] == "riskiest"
        if tagged != (order == "riskiest"):
            other = "riskiest" if tagged else "newest"
            raise InputError(f"a cursor of order={other}: page with the order it came from, "
                             "or start again without a cursor", field="cursor")
        if tagged:
            _, risk, at, hex_id = key
            if isinstance(risk, bool) or not isinstance(risk, (int, float)):
                raise TypeError
            return float(risk), datetime.fromisoformat(at), uuid.UUID(hex=hex_id)
        at, hex_id = key
        return datetime.fromisoformat(at), uuid.UUID(hex=hex_id)
    except InputError:
        raise
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise InputError("not a cursor this service returned", field="cursor") from None


# The partial indexes' own condition, word for word: SQLAlchemy writes a
# boolean column as "is_fraud = 1" on SQLite, which SQLite does not take as
# implying "is_fraud", and the queue then scanned every decision.
_FLAGGED = text("decisions.is_fraud")


def _reason_pattern(reason: str) -> str:
    if not reason or "|" in reason:
        raise InputError("not a reason name", field="reason")
    return f"|{reason}|"


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
    out["context"] = row["context"]
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

    def alerts(self, flt: AlertFilter, *, limit: int, cursor: str | None,
               order: Order = "newest") -> tuple[list[dict[str, Any]], str | None]:
        """One page of the queue and the cursor of the next (None at the end):
        newest first (decided_at, then id, descending) or riskiest first
        (risk, then decided_at and id, descending)."""
        if order not in ORDERS:
            raise InputError(f"one of {', '.join(ORDERS)}", field="order")
        d = decisions.c
        no_verdict = ~exists().where(verdicts.c.transaction_id == d.transaction_id)
        query = select(decisions).where(_FLAGGED, no_verdict)
        if flt.since is not None:
            query = query.where(d.decided_at >= _bound(flt.since, "since"))
        if flt.until is not None:
            query = query.where(d.decided_at < _bound(flt.until, "until"))
        if flt.model_version is not None:
            query = query.where(d.model_version == flt.model_version)
        if flt.entity is not None:
            query = query.where(d.entities[flt.entity[0]].as_string() == flt.entity[1])
        if flt.reason is not None:
            query = query.where(d.reason_names.contains(_reason_pattern(flt.reason),
                                                        autoescape=True))
        # A row-value comparison on the index's own columns: both databases
        # turn it into the start of the backward range scan.
        key = (d.risk, d.decided_at, d.id) if order == "riskiest" else (d.decided_at, d.id)
        if cursor is not None:
            last = [literal(v, c.type) for c, v in zip(key, decode_cursor(cursor, order),
                                                       strict=True)]
            query = query.where(tuple_(*key) < tuple_(*last))
        query = query.order_by(*(c.desc() for c in key)).limit(limit + 1)
        rows = self._all(query)
        page = rows[:limit]
        nxt = encode_cursor(order, page[-1]) if len(rows) > limit else None
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
