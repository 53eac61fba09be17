"""The audit's slow path, for a group that met a stored transaction id:
look the group's ids up and sort each request's rows into new ones, retries
(same record fingerprint: the stored decision is the answer) and conflicts
(other content: DuplicateTransactionError for that request, none of its rows
written). Within one group the first row of an id wins the same way."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from gendetect.errors import DuplicateTransactionError
from gendetect.stores.records import AuditRow, decision_from_row
from gendetect.stores.tables import decisions

# What a request gets per row: None (stored as given) or the stored decision.
RequestOutcome = list[dict[str, Any] | None]
# Ids per SELECT ... IN (...) (SQLite's parameter limit is far above).
_IN_CHUNK = 500


def insert_checked(conn: Connection, requests: Sequence[Sequence[AuditRow]]
                   ) -> tuple[list[RequestOutcome | BaseException], int]:
    """Per request its outcome; and the number of rows inserted (in the
    connection's transaction)."""
    ids = list({r.transaction_id for rows in requests for r in rows
                if r.transaction_id is not None})
    stored: dict[int, Any] = {}
    for k in range(0, len(ids), _IN_CHUNK):
        query = select(decisions).where(decisions.c.transaction_id.in_(ids[k : k + _IN_CHUNK]))
        for row in conn.execute(query).mappings():
            stored[row["transaction_id"]] = row
    outcomes: list[RequestOutcome | BaseException] = []
    group: dict[int, AuditRow] = {}
    new_rows: list[dict[str, Any]] = []
    for rows in requests:
        outcome = _sort_request(rows, stored, group)
        outcomes.append(outcome)
        if not isinstance(outcome, BaseException):
            new_rows.extend(row.values(uuid.uuid4())
                            for row, result in zip(rows, outcome, strict=True) if result is None)
    if new_rows:
        conn.execute(insert(decisions), new_rows)
    return outcomes, len(new_rows)


def _sort_request(rows: Sequence[AuditRow], stored: dict[int, Any],
           group: dict[int, AuditRow]) -> RequestOutcome | BaseException:
    """Per row: None (new), the decision to return (a retry), or a conflict
    for the whole request. Accepted new rows join `group`."""
    outcome: RequestOutcome = []
    mine: dict[int, AuditRow] = {}
    for row in rows:
        tid = row.transaction_id
        if tid is None:
            outcome.append(None)
            continue
        if tid in stored:
            old = stored[tid]
            if old["fingerprint"] != row.fingerprint:
                return _conflict()
            outcome.append(decision_from_row(old))
            continue
        earlier = mine.get(tid) or group.get(tid)
        if earlier is not None:
            if earlier.fingerprint != row.fingerprint:
                return _conflict()
            outcome.append(earlier.decision)
            continue
        mine[tid] = row
        outcome.append(None)
    group.update(mine)
    return outcome


def _conflict() -> DuplicateTransactionError:
    return DuplicateTransactionError(
        "this transaction id is already recorded with different content",
        field="transaction_id",
    )
