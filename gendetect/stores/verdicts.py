"""Analyst verdicts: one intake for `/v1/feedback` and `/v1/labels`.

- History, not state: a verdict is a new row; rows never change. The latest
  verdict of a transaction (by its time, then arrival) is its label.
- Idempotent: a verdict equal to a stored one (same label, analyst and note;
  and the same time when the request gives one, else the same as the latest)
  stores nothing and is reported as a duplicate.
- Known transactions only: a verdict is stored when this service scored the
  transaction (its decision is in the audit) or the online state knows it
  (the audit may be off, or older than the state). A verdict for anything else
  is refused as unknown and nothing is stored for it: this service's verdicts
  are for its own decisions, a mistyped id must not become a training label,
  and labels for transactions scored elsewhere belong in the transactions
  file that training reads.
- The online state (terminal risk) gets the label the history says now: the
  latest verdict's label, known since the first verdict of the run of equal
  labels that ends with it. A second analyst confirming a fraud later does not
  move the time from which the fraud counts; a verdict arriving late (an
  earlier time than the latest) is history and changes the state only if it
  changes that label or time. The online state is updated before the rows
  are committed, inside the same database transaction: a failure of either
  stores nothing, and posting the same verdicts again completes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from gendetect.stores.database import IMMEDIATE
from gendetect.stores.errors import StoreUnavailableError
from gendetect.stores.records import utc_naive
from gendetect.stores.tables import decisions, verdicts

log = logging.getLogger("gendetect.stores")

# apply(transaction_id, is_fraud, known_since) -> whether the online state knows it
ApplyLabel = Callable[[int, bool, datetime], bool]


@dataclass(frozen=True, slots=True)
class VerdictIn:
    transaction_id: int
    label: str  # "fraud" | "genuine"
    analyst: str
    note: str | None = None
    labelled_at: datetime | None = None  # default: received_at


@dataclass(slots=True)
class IntakeResult:
    stored: int = 0
    duplicates: int = 0
    unknown: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.stored + self.duplicates


@dataclass(slots=True)
class PastVerdict:
    label: str
    analyst: str
    note: str | None
    labelled_at: datetime
    order: int  # arrival order: the stored id, or after them for new rows


class VerdictStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, items: Sequence[VerdictIn], *, received_at: datetime, source: str,
            key_name: str | None, apply: ApplyLabel | None) -> IntakeResult:
        """Store `items` (in order) and update the online state through
        `apply`. Raises StoreUnavailableError when the database fails; errors
        of `apply` (e.g. the state store's 503) propagate, and nothing is stored."""
        now = utc_naive(received_at)
        try:
            with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
                return self._add(conn, items, now, source, key_name, apply)
        except SQLAlchemyError as exc:
            log.warning("verdict store failed: %s", type(exc).__name__)
            raise StoreUnavailableError(
                "the verdict database is unavailable; nothing was stored") from None

    def _add(self, conn: Connection, items: Sequence[VerdictIn], now: datetime, source: str,
             key_name: str | None, apply: ApplyLabel | None) -> IntakeResult:
        ids = sorted({i.transaction_id for i in items})
        _lock_ids(conn, ids)
        decided = set()
        history: dict[int, list[PastVerdict]] = {}
        for chunk in _chunks(ids):
            decided.update(conn.scalars(
                select(decisions.c.transaction_id).where(decisions.c.transaction_id.in_(chunk))))
            query = (select(verdicts).where(verdicts.c.transaction_id.in_(chunk))
                     .order_by(verdicts.c.labelled_at, verdicts.c.id))
            for row in conn.execute(query).mappings():
                history.setdefault(row["transaction_id"], []).append(PastVerdict(
                    row["label"], row["analyst"], row["note"], row["labelled_at"], row["id"]))
        result = IntakeResult()
        rows: list[dict[str, Any]] = []
        arrival = 1 << 62  # new rows come after every stored id
        for item in items:
            tid = item.transaction_id
            past = history.get(tid, [])
            when = utc_naive(item.labelled_at) if item.labelled_at is not None else now
            if _is_duplicate(item, when, past):
                result.duplicates += 1
                continue
            before = effective(past)
            arrival += 1
            after_list = sorted([*past, PastVerdict(item.label, item.analyst, item.note, when,
                                              arrival)],
                                key=lambda p: (p.labelled_at, p.order))
            after = effective(after_list)
            known_online = False
            if apply is not None and after != before:
                assert after is not None
                known_online = apply(tid, after[0] == "fraud", after[1])
            if not (tid in decided or past or known_online):
                result.unknown.append(tid)
                continue
            history[tid] = after_list
            rows.append({
                "transaction_id": tid, "label": item.label, "analyst": item.analyst,
                "note": item.note, "labelled_at": when, "received_at": now,
                "key_name": key_name, "source": source,
            })
        if rows:
            conn.execute(insert(verdicts), rows)
        result.stored = len(rows)
        return result


def effective(history: Sequence[PastVerdict]) -> tuple[str, datetime] | None:
    """(label, known since) of a time-ordered history: the latest label, since
    the first verdict of the run of equal labels that ends the history."""
    if not history:
        return None
    label = history[-1].label
    since = history[-1].labelled_at
    for past in reversed(history):
        if past.label != label:
            break
        since = past.labelled_at
    return label, since


def _is_duplicate(item: VerdictIn, when: datetime, past: Sequence[PastVerdict]) -> bool:
    def same(p: PastVerdict) -> bool:
        return (p.label, p.analyst, p.note) == (item.label, item.analyst, item.note)

    if item.labelled_at is None:
        latest = max(past, key=lambda p: (p.labelled_at, p.order), default=None)
        return latest is not None and same(latest)
    return any(same(p) and p.labelled_at == when for p in past)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[k : k + size] for k in range(0, len(ids), size)]


def _lock_ids(conn: Connection, ids: list[int]) -> None:
    """PostgreSQL: one transaction at a time per transaction id (the check
    for duplicates and the insert must not interleave across replicas);
    sorted, so two requests never wait on each other in a cycle. SQLite's
    BEGIN IMMEDIATE already serialises writers."""
    if conn.dialect.name == "postgresql" and ids:
        conn.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) "
                          "AS k ORDER BY k"), {"ids": ids})

