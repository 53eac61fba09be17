"""What every online state store shares: the events it records, the
windows it answers (plans and their binary-search bounds), the sums it
answers with, the StateStore protocol, and the checks an event passes before
anything changes.

Entity keys reach a store already hashed (gendetect.features.online turns
customer and terminal ids into keyed HMAC digests), so nothing here, in
memory, in the snapshot, in the journal or in Redis, holds a raw id. Times
are int nanoseconds since the epoch (UTC), within int64; transaction ids are
int64 too (both checked here before anything changes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from gendetect.errors import DuplicateTransactionError, InputError
from gendetect.features.windows import Window

UNKNOWN_LABEL = -1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Larger amounts are refused: far beyond any payment, and it keeps every
# feature (an average of amounts) finite.
AMOUNT_LIMIT = 1e18
DUPLICATE_MESSAGE = "transaction_id already recorded with different content"

# Composite (time, id) keys for the fraud-label lists: ordered like the
# events, for any int64 time and id.
_ID_BIAS = 2**63
KEY_SHIFT = 64


def event_key(time_ns: int, tx_id: int) -> int:
    return (time_ns << KEY_SHIFT) + (tx_id + _ID_BIAS)


def time_bound(time_ns: int) -> int:
    """Keys below this are exactly those of events at or before `time_ns`."""
    return (time_ns + 1) << KEY_SHIFT


class TxEvent(NamedTuple):
    # A named tuple: built once per request, several times cheaper than a
    # frozen dataclass.
    transaction_id: int
    time_ns: int
    customer: str  # a keyed digest of the customer id, never the raw id
    terminal: str
    amount: float
    # Hex digest of the whole request record: the same id again with another
    # fingerprint is a conflicting duplicate, with the same one a retry.
    fingerprint: str = ""


@dataclass(frozen=True)
class Horizons:
    """How far back (ns) a customer's / a terminal's events still matter."""

    customer_ns: int
    terminal_ns: int


# A plan's windows as binary-search bounds: the distinct offsets, and per
# window the rows (indices into the offsets, or OWN_ROW: just past the request
# itself) of its start and end.
Bounds = tuple[tuple[int, ...], tuple[tuple[int, int], ...], bool]
OWN_ROW = -1


def bounds_of(windows: Sequence[Window]) -> Bounds:
    """(offsets, rows, whether any window ends at the request itself)."""
    offsets = sorted({w for window in windows for w in window if w is not None})
    row = {w: i for i, w in enumerate(offsets)}
    rows = tuple((row[begin], OWN_ROW if end is None else row[end]) for begin, end in windows)
    return tuple(offsets), rows, any(end is None for _, end in windows)


@dataclass(frozen=True)
class WindowPlan:
    """The windows a store answers, and how much history they need."""

    customer: tuple[Window, ...]
    terminal: tuple[Window, ...]
    horizons: Horizons
    customer_bounds: Bounds = field(init=False, repr=False, compare=False)
    terminal_bounds: Bounds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once per plan, not per request.
        object.__setattr__(self, "customer_bounds", bounds_of(self.customer))
        object.__setattr__(self, "terminal_bounds", bounds_of(self.terminal))


class WindowSums(NamedTuple):
    """Per window: the customer's transaction count and amount sum, and the
    terminal's transaction count and number of frauds known by the request's
    time; each in the plan's order. The request's own transaction is in the
    windows that include it, recorded or not."""

    customer_counts: tuple[int, ...]
    customer_sums: tuple[float, ...]
    terminal_counts: tuple[int, ...]
    terminal_frauds: tuple[int, ...]
    recorded: bool  # False for a retry, a read, or an event too old to keep


class StateStore(Protocol):
    def record_and_query(
        self, event: TxEvent, plan: WindowPlan, *, record: bool = True
    ) -> WindowSums:
        """Record `event` (if `record`, unless its id is known: a retry),
        prune, and answer the plan's windows for it, in one atomic step.
        Raises DuplicateTransactionError (and changes nothing) if the id is
        known with another fingerprint."""
        ...

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: WindowPlan
    ) -> list[WindowSums]:
        """`record_and_query` for each event in order (later ones see earlier
        ones), after checking them all: if any id is known (or repeated in
        `events`) with another fingerprint, DuplicateTransactionError is
        raised before anything is recorded."""
        ...

    def add_label(self, transaction_id: int, is_fraud: bool, labelled_at_ns: int) -> bool:
        """Attach a label; False if the transaction is unknown or expired."""
        ...

    def known_fingerprints(self, transaction_ids: Sequence[int]) -> dict[int, str]:
        """The fingerprints of those of `transaction_ids` the store holds."""
        ...

    def ping(self) -> bool:
        """Whether the store answers; never raises, bounded by its timeout."""
        ...

    def snapshot(self) -> None: ...

    def close(self) -> None: ...


def check_int64(value: Any, what: str) -> None:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise InputError("must be an integer within 64 bits", field=what)


def check_event(event: TxEvent) -> None:
    """What every store needs of an event before it changes anything: values
    that any later request, the snapshot and the journal can hold."""
    check_int64(event.transaction_id, "transaction_id")
    check_int64(event.time_ns, "timestamp")
    if type(event.amount) is not float or not abs(event.amount) <= AMOUNT_LIMIT:
        raise InputError(f"must be a number of magnitude at most {AMOUNT_LIMIT:g}", field="amount")
    for name in ("customer", "terminal", "fingerprint"):
        if type(getattr(event, name)) is not str:
            raise InputError("must be a string", field=name)


def check_conflicts(
    events: Sequence[TxEvent], known_fingerprint: Callable[[int], str | None]
) -> None:
    """DuplicateTransactionError if an event's id is known, or earlier in
    `events`, with another fingerprint."""
    batch: dict[int, str] = {}
    for event in events:
        tid = event.transaction_id
        have = batch.get(tid)
        if have is None:
            have = known_fingerprint(tid)
        if have is not None and have != event.fingerprint:
            raise DuplicateTransactionError(DUPLICATE_MESSAGE, field="transaction_id")
        batch.setdefault(tid, event.fingerprint)
