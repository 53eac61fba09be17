"""Where a stored decision came from, for the analyst console: the name of
the key that asked, the request id (its log lines and trace) and the
entity ids as the audit keeps them, keyed hashes (never the ids)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from gendetect.errors import StoreUnavailableError
from gendetect.stores.tables import decisions


def decision_origin(engine: Engine, transaction_id: int) -> dict[str, Any] | None:
    """The origin of the transaction's decision; None when none is stored."""
    d = decisions.c
    query = select(d.key_name, d.request_id, d.entities).where(d.transaction_id == transaction_id)
    try:
        with engine.connect() as conn:
            row = conn.execute(query).mappings().first()
    except SQLAlchemyError as exc:
        raise StoreUnavailableError(f"the database failed: {type(exc).__name__}") from None
    if row is None:
        return None
    return {"transaction_id": transaction_id, "key_name": row["key_name"],
            "request_id": row["request_id"], "entities": dict(row["entities"] or {})}
