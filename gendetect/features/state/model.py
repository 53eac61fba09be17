"""What every online state store shares: the events it records, the answers
it gives (one float per declared feature), the StateStore protocol, and the
checks an event passes before anything changes.

An event carries, per entity of the plan (gendetect.features.state.plan: the
distinct key columns of the declaration's groups), the keyed digest of its
key (None when the key, or any part of a pair, is missing), the numeric
values the groups read (NaN when missing) and keyed digests of the values of
the `distinct` columns. Entity keys reach a store already hashed
(gendetect.features.online), so nothing here, in memory, in the snapshot, in
the journal or in Redis, holds a raw id. Times are int nanoseconds since the
epoch (UTC), within int64; transaction ids are int64 too (both checked here
before anything changes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gendetect.errors import DuplicateTransactionError, InputError

if TYPE_CHECKING:
    from gendetect.features.state.plan import AggregatePlan

UNKNOWN_LABEL = -1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Larger values are refused: far beyond any payment, and it keeps every
# feature (sums, means, std) finite and the fixed-point sums exact.
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
    # frozen dataclass. `keys`, `values` and `distinct` are in the plan's
    # order (AggregatePlan.entities, .value_columns, .distinct_columns).
    transaction_id: int
    time_ns: int
    keys: tuple[str | None, ...]  # keyed digests, never raw ids; None: missing
    values: tuple[float, ...] = ()  # NaN: missing
    distinct: tuple[str | None, ...] = ()  # keyed digests of the values; None: missing
    # Hex digest of the whole request record: the same id again with another
    # fingerprint is a conflicting duplicate, with the same one a retry.
    fingerprint: str = ""


class Answer(NamedTuple):
    """The declared features of one event, in the declaration's order (NaN
    for a group whose key the event lacks), and whether it was recorded."""

    features: tuple[float, ...]
    recorded: bool  # False for a retry, a read, or an event too old to keep


class StateStore(Protocol):
    def record_and_query(
        self, event: TxEvent, plan: AggregatePlan, *, record: bool = True,
        extra: Sequence[TxEvent] = (),
    ) -> Answer:
        """Record `event` (if `record`, unless its id is known: a retry),
        prune, and answer the plan's features for it, in one atomic step.
        `extra`: unrecorded events (previews in flight) counted as if held.
        Raises DuplicateTransactionError (and changes nothing) if the id is
        known with another fingerprint."""
        ...

    def record_and_query_many(
        self, events: Sequence[TxEvent], plan: AggregatePlan
    ) -> list[Answer]:
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


def check_event(event: TxEvent, plan: AggregatePlan) -> None:
    """What every store needs of an event before it changes anything: values
    that any later request, the snapshot and the journal can hold, one per
    entity, value and distinct column of `plan`."""
    check_int64(event.transaction_id, "transaction_id")
    check_int64(event.time_ns, "timestamp")
    if len(event.keys) != len(plan.entities):
        raise InputError(f"expected {len(plan.entities)} entity keys", field="keys")
    if len(event.values) != len(plan.value_columns):
        raise InputError(f"expected {len(plan.value_columns)} values", field="values")
    if len(event.distinct) != len(plan.distinct_columns):
        raise InputError(f"expected {len(plan.distinct_columns)} values", field="distinct")
    for name, value in zip(plan.value_columns, event.values, strict=True):
        if type(value) is not float or not (math.isnan(value) or abs(value) <= AMOUNT_LIMIT):
            raise InputError(f"must be a number of magnitude at most {AMOUNT_LIMIT:g}",
                             field=name)
    for entity, key in zip(plan.entities, event.keys, strict=True):
        if key is not None and type(key) is not str:
            raise InputError("must be a string digest", field=entity.name)
    for name, digest in zip(plan.distinct_columns, event.distinct, strict=True):
        if digest is not None and type(digest) is not str:
            raise InputError("must be a string digest", field=name)
    if type(event.fingerprint) is not str:
        raise InputError("must be a string", field="fingerprint")


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
