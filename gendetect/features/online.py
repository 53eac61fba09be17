"""Window features for single transactions at request time.

The state store keeps the customer's and terminal's recent history and
answers each window (count, amount sum, frauds known by then) for the
current transaction in O(log history), see gendetect.features.state; the
windows are the offline engine's (gendetect.features.windows), so a model
sees the same feature values in serving as in training (the parity tests
hold the two to each other). Labels arrive later through `add_label` and
count toward terminal risk only from the time they arrived (`labelled_at`),
and only in the windows that end `delay_days` before the request, exactly
like the offline features.

Customer and terminal ids reach the store as keyed hashes (HMAC-SHA256 with
`entity_key`, 128 bits in hex), never as the ids themselves. Each recorded
transaction carries a keyed fingerprint of its whole record (the caller's,
gendetect.keyed_hash.RecordFingerprint, or a keyed digest of the record as
given), so that the same transaction id sent again is a retry (same content:
its features, counted once) or a conflict (DuplicateTransactionError,
nothing changes).

Two ways to use it:
- `compute_and_record(_many)`: features and recording in one atomic step,
  for callers whose only record of a transaction is this state.
- `preview` then `record` or `discard`: features first, changing nothing,
  and the transaction recorded only once the caller has stored its decision
  elsewhere (the API's audit): a request that fails leaves no trace here.
  Between the two, the previewed events are "in flight" and count in the
  previews of other requests of the same customer or terminal, so that a
  burst of concurrent requests sees itself as it does with `compute_and_record`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd

from gendetect.errors import DuplicateTransactionError, InputError
from gendetect.features.in_flight import InFlight, with_unrecorded
from gendetect.features.state import (
    AMOUNT_LIMIT,
    INT64_MAX,
    INT64_MIN,
    Horizons,
    MemoryStateStore,
    StateStore,
    TxEvent,
    WindowPlan,
    WindowSums,
)
from gendetect.features.windows import WindowConfig, kernel_windows
from gendetect.keyed_hash import UNKEYED, EntityHasher, record_digest
from gendetect.timestamps import days_to_ns, to_ns


def _transaction_id(value: Any, field: str) -> int:
    # Integer ids double as the tie-break between same-time transactions.
    if type(value) is int:  # the common case, before the slower ABC checks
        tid = value
    elif isinstance(value, Integral) and not isinstance(value, bool):
        tid = int(value)
    elif isinstance(value, str) and (text := value.strip()).lstrip("-").isdecimal():
        # int() of a huge digit string is slow (and refused past 4,300 digits)
        tid = int(text) if len(text) <= 20 else INT64_MAX + 1
    else:
        raise InputError("must be an integer transaction id", field=field)
    if not INT64_MIN <= tid <= INT64_MAX:
        raise InputError("must be an integer transaction id within 64 bits", field=field)
    return tid


def _time_ns(value: Any, field: str) -> int:
    try:
        ns = to_ns(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(str(exc), field=field) from exc
    if not INT64_MIN <= ns <= INT64_MAX:
        raise InputError("timestamp out of range", field=field)
    return ns


def window_plan(config: WindowConfig) -> WindowPlan:
    """The offline engine's windows for `config`, as a store answers them."""
    customer, terminal = kernel_windows(config)
    return WindowPlan(
        customer, terminal, Horizons(config.customer_horizon_ns, config.terminal_horizon_ns)
    )


class OnlineWindowFeatures:
    """Window features for one transaction at a time, backed by a state store.

    `entity_key` is the secret of the keyed hashes that customer and terminal
    ids are stored under; processes sharing a store must share it.
    """

    def __init__(
        self,
        config: WindowConfig | None = None,
        store: StateStore | None = None,
        entity_key: bytes | None = None,
    ) -> None:
        self.config = config or WindowConfig()
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self._hasher = EntityHasher(entity_key)
        self._record_key = entity_key if entity_key is not None else UNKEYED
        self._in_flight = InFlight()
        self._plan = window_plan(self.config)
        self._horizons = self._plan.horizons

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.config.feature_names

    def compute_and_record(
        self, record: Mapping[str, Any], fingerprint: str | None = None
    ) -> dict[str, float]:
        """Features of `record` (the transaction itself included), which is then
        part of the history. The same transaction id again with the same
        record (a retried request) returns its features without counting it
        twice; with a different record it raises DuplicateTransactionError
        and changes nothing. `fingerprint`: the record's identity if the
        caller has computed it (else a keyed digest of the record as given)."""
        event = self._event(record, fingerprint)
        try:
            sums = self.store.record_and_query(event, self._plan)
        except DuplicateTransactionError as exc:
            raise DuplicateTransactionError(exc.message, field=self.config.id_col) from None
        return self._features(sums)

    def compute_and_record_many(
        self, records: Sequence[Mapping[str, Any]], fingerprints: Sequence[str] | None = None
    ) -> list[dict[str, float]]:
        """`compute_and_record` for each record in order (later records see
        earlier ones), all or nothing for invalid input and conflicting
        duplicates: those raise before anything is recorded."""
        events = self._events(records, fingerprints)
        try:
            sums = self.store.record_and_query_many(events, self._plan)
        except DuplicateTransactionError as exc:
            raise DuplicateTransactionError(exc.message, field=self.config.id_col) from None
        return [self._features(s) for s in sums]

    def compute(self, record: Mapping[str, Any]) -> dict[str, float]:
        """Features of `record` as if it were recorded now, without recording it."""
        event = self._event(record, "")
        return self._features(self.store.record_and_query(event, self._plan, record=False))

    def preview(
        self, records: Sequence[Mapping[str, Any]], fingerprints: Sequence[str] | None = None
    ) -> Preview:
        """The features `compute_and_record_many` would give `records`, changing
        nothing in the store: each record sees the store, the earlier records
        of `records` and the events of other previews still in flight. The
        events stay in flight until `record` or `discard` (call one of them,
        always). Invalid input raises InputError before anything is held."""
        events = self._events(records, fingerprints)
        plan = self._plan
        sums = [self.store.record_and_query(e, plan, record=False) for e in events]
        # Earlier records of this batch that the store has not seen count in
        # the later ones, as they would once recorded one by one.
        stored = self.store.known_fingerprints([e.transaction_id for e in events]) \
            if len(events) > 1 else {}
        fresh = [e for e in events if e.transaction_id not in stored]
        token = self._in_flight.add(fresh)
        features = []
        for i, (event, answer) in enumerate(zip(events, sums, strict=True)):
            others = self._in_flight.near(event, token)
            if i:
                others += [e for e in events[:i] if e.transaction_id not in stored]
            features.append(self._features(with_unrecorded(answer, event, others, plan)))
        return Preview(events, features, token)

    def record(self, preview: Preview) -> None:
        """Record a preview's events (the caller stored their decisions), then
        take them out of flight. A transaction the store already holds with
        another fingerprint (recorded before its identity was computed the
        way it is now) is left as the store has it: the caller's own store
        decided that this request is new, and it is the authority."""
        try:
            if len(preview.events) > 1:
                try:
                    self.store.record_and_query_many(preview.events, self._plan)
                    return
                except DuplicateTransactionError:
                    pass  # one by one below, keeping the store's version of the conflict
            for event in preview.events:
                with contextlib.suppress(DuplicateTransactionError):
                    self.store.record_and_query(event, self._plan)
        finally:
            self._in_flight.remove(preview.token)

    def discard(self, preview: Preview) -> None:
        """Forget a preview whose decisions were not stored: nothing of it
        stays, in the store or in flight."""
        self._in_flight.remove(preview.token)

    def add_label(self, transaction_id: Any, is_fraud: bool, labelled_at: Any) -> bool:
        """Record the label of a past transaction, known from `labelled_at` on.
        False if the transaction is unknown or too old to matter."""
        tid = _transaction_id(transaction_id, self.config.id_col)
        at_ns = _time_ns(labelled_at, "labelled_at")
        return self.store.add_label(tid, bool(is_fraud), at_ns)

    def entity_digest(self, value: Any, field: str = "entity") -> str:
        """The key an entity id is stored under (a keyed hash, 32 hex digits)."""
        return self._hasher.digest(value, field)

    # ------------------------------------------------------------- internals
    def _events(
        self, records: Sequence[Mapping[str, Any]], fingerprints: Sequence[str] | None
    ) -> list[TxEvent]:
        if fingerprints is None:
            return [self._event(r, None) for r in records]
        return [self._event(r, f) for r, f in zip(records, fingerprints, strict=True)]

    def _event(self, record: Mapping[str, Any], fingerprint: str | None) -> TxEvent:
        c = self.config
        for name in (c.id_col, c.time_col, c.customer_col, c.terminal_col, c.amount_col):
            if name not in record or record[name] is None:
                raise InputError("required for behaviour features", field=name)
        time_ns = _time_ns(record[c.time_col], c.time_col)
        try:
            amount = float(record[c.amount_col])
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputError("must be a number", field=c.amount_col) from exc
        if not math.isfinite(amount):
            raise InputError("must be finite", field=c.amount_col)
        if abs(amount) > AMOUNT_LIMIT:
            raise InputError(f"must be at most {AMOUNT_LIMIT:g} in magnitude", field=c.amount_col)
        return TxEvent(
            transaction_id=_transaction_id(record[c.id_col], c.id_col),
            time_ns=time_ns,
            customer=self.entity_digest(record[c.customer_col], c.customer_col),
            terminal=self.entity_digest(record[c.terminal_col], c.terminal_col),
            amount=amount,
            # Keyed: an unkeyed digest next to the record's time and amount
            # gives its ids back to a brute-force search.
            fingerprint=(fingerprint if fingerprint is not None
                         else record_digest(record, self._record_key)),
        )

    def _features(self, sums: WindowSums) -> dict[str, float]:
        names = self.config.feature_names
        out: dict[str, float] = {}
        k = 0
        for nb, total in zip(sums.customer_counts, sums.customer_sums, strict=True):
            # The window includes the request itself: nb >= 1.
            out[names[k]] = float(nb)
            out[names[k + 1]] = total / nb
            k += 2
        for nb, frauds in zip(sums.terminal_counts, sums.terminal_frauds, strict=True):
            out[names[k]] = float(nb)
            out[names[k + 1]] = frauds / nb if nb > 0 else 0.0
            k += 2
        return out


@dataclass(frozen=True)
class Preview:
    """What `OnlineWindowFeatures.preview` computed: the checked events, their
    features, and the handle of their entry in flight."""

    events: list[TxEvent]
    features: list[dict[str, float]]
    token: int


def replay(df: pd.DataFrame, online: OnlineWindowFeatures) -> pd.DataFrame:
    """Feed `df`'s transactions to `online` one at a time, as a live system
    would see them: in (time, transaction id) order, each label (if `df` has
    the label column) arriving `delay_days` after its transaction. Returns
    the features for every row of `df` (same index and row order).

    Used to warm a state store from history, and to check that the online
    features equal the offline ones (they do for any delay > 0; with no delay
    a transaction's own label would have to be known at its own request).
    """
    c = online.config
    if len(df) == 0:
        return pd.DataFrame({name: np.empty(0) for name in c.feature_names}, index=df.index)
    times = np.array([to_ns(v) for v in df[c.time_col]], dtype=np.int64)
    ids = np.array([_transaction_id(v, c.id_col) for v in df[c.id_col]], dtype=np.int64)
    sequence = np.lexsort((ids, times))
    fields = [c.id_col, c.time_col, c.customer_col, c.terminal_col, c.amount_col]
    records = df[fields].to_dict("records")
    labels = df[c.label_col].to_numpy() if c.label_col in df.columns else None
    label_at = times[sequence] + days_to_ns(c.delay_days)
    next_label = 0
    out = np.empty((len(df), len(c.feature_names)), dtype=np.float64)
    for k, i in enumerate(sequence):
        # Labels due by now arrive first (at its due time a label counts),
        # for transactions already seen.
        while labels is not None and next_label < k and label_at[next_label] <= times[i]:
            j = sequence[next_label]
            at = np.datetime64(int(label_at[next_label]), "ns")
            online.add_label(int(ids[j]), bool(labels[j]), at)
            next_label += 1
        out[i] = list(online.compute_and_record(records[i]).values())
    return pd.DataFrame(out, columns=list(c.feature_names), index=df.index)
