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
- Not before the transaction: a verdict whose time is earlier than the
  decision's event time (read with the decision, no extra round trip) is
  refused (VerdictTimeError) and nothing of the request is stored. Without a
  stored decision (the audit off, or older than the online state) there is
  no event time to compare with, and the verdict is taken as before.
- Bounded: with a `Deadline` (serving.feedback makes one per request) the
  request stops waiting when it passes, and every wait of the write (SQLite's
  lock at BEGIN, PostgreSQL's locks and statements) is bounded by what is
  left of it. A transaction that has not started to commit by then is rolled
  back, never committed later: a request that answered 503 stored nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from gendetect.errors import InputError, StoreUnavailableError
from gendetect.stores.database import IMMEDIATE, bound_transaction, wait_bounds
from gendetect.stores.records import utc_naive
from gendetect.stores.tables import decisions, verdicts

log = logging.getLogger("gendetect.stores")

# apply(transaction_id, is_fraud, known_since) -> whether the online state knows it
ApplyLabel = Callable[[int, bool, datetime], bool]


@dataclass(frozen=True, slots=True)
class NewVerdict:
    transaction_id: int
    label: str  # "fraud" | "genuine"
    analyst: str
    note: str | None = None
    labelled_at: datetime | None = None  # default: received_at


class VerdictTimeError(InputError):
    """Verdicts dated before their transaction's event time; `items` are
    their positions in the request. Nothing was stored."""

    MESSAGE = "must not be before the transaction's own time (its timestamp)"

    def __init__(self, items: list[int]) -> None:
        super().__init__(self.MESSAGE, field="labelled_at")
        self.items = items


class Deadline:
    """The time budget of one write, shared by the request that waits for
    it and the thread that does it. Once the request has given up
    (`abandon`) the thread commits nothing; once the thread has started to
    commit (`start_commit`) the request can no longer say that nothing was
    stored."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._state = "open"  # -> "committing" | "abandoned"

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self) -> None:
        """StoreUnavailableError when the budget is spent or the request
        has given up: the caller rolls back."""
        if self._state == "abandoned" or self.remaining() <= 0:
            raise self.expired()

    @staticmethod
    def expired() -> StoreUnavailableError:
        return StoreUnavailableError(
            "the verdict database did not answer in time; nothing was stored")

    def start_commit(self) -> bool:
        with self._lock:
            if self._state != "open" or self.remaining() <= 0:
                self._state = "abandoned"
                return False
            self._state = "committing"
            return True

    def abandon(self) -> bool:
        """Give up; True when nothing was or will be committed."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "abandoned"
            return True


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

    def add(self, items: Sequence[NewVerdict], *, received_at: datetime, source: str,
            key_name: str | None, apply: ApplyLabel | None,
            deadline: Deadline | None = None) -> IntakeResult:
        """Store `items` (in order) and update the online state through
        `apply`. Raises StoreUnavailableError when the database fails or
        `deadline` passes, VerdictTimeError for verdicts dated before their
        transaction; errors of `apply` (e.g. the state store's 503)
        propagate. In every one of those cases nothing is stored."""
        now = utc_naive(received_at)
        deadline = deadline or Deadline(math.inf)
        bounded = math.isfinite(deadline.at)
        options = {**IMMEDIATE, **(wait_bounds(deadline.remaining()) if bounded else {})}
        try:
            with self.engine.connect().execution_options(**options) as conn:
                deadline.check()  # the pool or a new connection may have used it up
                with conn.begin():
                    if bounded:
                        bound_transaction(conn, deadline.remaining())
                    result = self._add(conn, items, now, source, key_name, apply, deadline)
                    if not deadline.start_commit():
                        raise deadline.expired()  # rolled back: never committed late
                return result
        except SQLAlchemyError as exc:
            log.warning("verdict store failed: %s", type(exc).__name__)
            raise StoreUnavailableError(
                "the verdict database is unavailable; nothing was stored") from None

    def _add(self, conn: Connection, items: Sequence[NewVerdict], now: datetime, source: str,
             key_name: str | None, apply: ApplyLabel | None,
             deadline: Deadline) -> IntakeResult:
        ids = sorted({i.transaction_id for i in items})
        _lock_ids(conn, ids)
        # Transaction id -> its event time (None when the record had none),
        # for the ids the audit holds; read with the ids, no extra query.
        decided: dict[int, datetime | None] = {}
        history: dict[int, list[PastVerdict]] = {}
        for chunk in _chunks(ids):
            query = (select(decisions.c.transaction_id, decisions.c.event_time)
                     .where(decisions.c.transaction_id.in_(chunk)))
            decided.update((tid, at) for tid, at in conn.execute(query))
            query = (select(verdicts).where(verdicts.c.transaction_id.in_(chunk))
                     .order_by(verdicts.c.labelled_at, verdicts.c.id))
            for row in conn.execute(query).mappings():
                history.setdefault(row["transaction_id"], []).append(PastVerdict(
                    row["label"], row["analyst"], row["note"], row["labelled_at"], row["id"]))
        _check_times(items, decided)
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
                deadline.check()  # no change to the online state for a request given up
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


def _check_times(items: Sequence[NewVerdict], decided: dict[int, datetime | None]) -> None:
    """VerdictTimeError for verdicts dated before their transaction's event
    time, all of them, before anything is applied or stored. A verdict
    without a time is dated on arrival and not refused for a time its sender
    did not give (a record may be dated up to the clock skew ahead of the
    server's clock)."""
    early = []
    for i, item in enumerate(items):
        event_time = decided.get(item.transaction_id)
        if item.labelled_at is not None and event_time is not None \
                and utc_naive(item.labelled_at) < event_time:
            early.append(i)
    if early:
        raise VerdictTimeError(early)


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


def _is_duplicate(item: NewVerdict, when: datetime, past: Sequence[PastVerdict]) -> bool:
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

