"""Declared behaviour features (the schema's `aggregates:`) for single
transactions at request time.

The state store keeps each key's recent history (per entity: the key
columns of the declaration's groups) and answers every declared feature for
the current transaction, counts, sums, means, std, z-scores, label rates,
first_seen and since_previous in O(log history), min, max and distinct in
O(window) (gendetect.features.state), with the semantics of
gendetect.features.aggregates, so a model sees the same feature values in
serving as in training (the parity tests hold the stores to the offline
engine). Labels arrive later through `add_label` and count toward
label_rate only from the time they arrived (`labelled_at`).

Key values reach the store as keyed hashes (HMAC-SHA256 with `entity_key`,
128 bits in hex; gendetect.features.online_events), never as the values
themselves. Each recorded transaction carries a keyed fingerprint of its
whole record (the caller's, gendetect.keyed_hash.RecordFingerprint, or a
keyed digest of the record as given), so that the same transaction id sent
again is a retry (same content: its features, counted once) or a conflict
(DuplicateTransactionError, nothing changes).

Two ways to use it:
- `compute_and_record(_many)`: features and recording in one atomic step,
  for callers whose only record of a transaction is this state.
- `preview` then `record` or `discard`: features first, changing nothing,
  and the transaction recorded only once the caller has stored its decision
  elsewhere (the API's audit): a request that fails leaves no trace here.
  Between the two, the previewed events are "in flight" and count in the
  previews of other requests that share one of their keys, so that a
  burst of concurrent requests sees itself as it does with `compute_and_record`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gendetect.aggregates import AggregateDeclaration
from gendetect.errors import DuplicateTransactionError, InputError
from gendetect.features import online_events
from gendetect.features.behaviour import Behaviour
from gendetect.features.in_flight import InFlight
from gendetect.features.online_events import EventBuilder
from gendetect.features.state import AggregatePlan, Answer, MemoryStateStore, StateStore, TxEvent
from gendetect.features.windows import WindowConfig
from gendetect.keyed_hash import EntityHasher
from gendetect.timestamps import to_ns


class OnlineWindowFeatures:
    """Declared behaviour features for one transaction at a time, backed by a
    state store.

    The features are the declaration's (gendetect.features.aggregates),
    in its order; a group whose key a record lacks gives NaN. `entity_key`
    is the secret of the keyed hashes that keys are stored under; processes
    sharing a store must share it.
    """

    def __init__(
        self,
        config: Behaviour | WindowConfig | AggregateDeclaration | None = None,
        store: StateStore | None = None,
        entity_key: bytes | None = None,
        *,
        id_col: str = "transaction_id",
        time_col: str = "timestamp",
        label_col: str = "is_fraud",
    ) -> None:
        """`config`: the schema's behaviour features (Behaviour: the
        declaration and its time, id and label columns), a bare declaration
        (with the columns given here), or the legacy WindowConfig (whose five
        columns every record must carry, as before)."""
        self.config = config if config is not None else WindowConfig()
        required: tuple[str, ...] = ()
        if isinstance(self.config, WindowConfig):
            c = self.config
            behaviour = Behaviour.from_window_config(c)
            required = (c.customer_col, c.terminal_col, c.amount_col)
        elif isinstance(self.config, Behaviour):
            behaviour = self.config
        else:
            behaviour = Behaviour(self.config, time_col, id_col, label_col)
        if behaviour.id_col is None:
            raise InputError("online behaviour features need an id field (the tie-break and "
                             "what labels and retries refer to)", field="aggregates")
        self.behaviour = behaviour
        self.declaration = behaviour.declaration
        self.id_col, self.time_col = behaviour.id_col, behaviour.time_col
        self.label_col = behaviour.label_col or label_col
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self._plan = AggregatePlan.of(self.declaration)
        self._builder = EventBuilder(self._plan, entity_key, id_col=self.id_col,
                                     time_col=self.time_col, required=required)
        self._hasher = EntityHasher(entity_key)
        self._in_flight = InFlight()
        # The plan answers in declaration order; callers get the model's
        # column order (Behaviour.feature_names), by name.
        index = {name: i for i, name in enumerate(self._plan.feature_names)}
        self._order = tuple((name, index[name]) for name in behaviour.feature_names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.behaviour.feature_names

    @property
    def plan(self) -> AggregatePlan:
        return self._plan

    def compute_and_record(
        self, record: Mapping[str, Any], fingerprint: str | None = None
    ) -> dict[str, float]:
        """Features of `record` (the transaction itself included), which is then
        part of the history. The same transaction id again with the same
        record (a retried request) returns its features without counting it
        twice; with a different record it raises DuplicateTransactionError
        and changes nothing. `fingerprint`: the record's identity if the
        caller has computed it (else a keyed digest of the record as given)."""
        event = self._builder.event(record, fingerprint)
        try:
            answer = self.store.record_and_query(event, self._plan)
        except DuplicateTransactionError as exc:
            raise DuplicateTransactionError(exc.message, field=self.id_col) from None
        return self._features(answer)

    def compute_and_record_many(
        self, records: Sequence[Mapping[str, Any]], fingerprints: Sequence[str] | None = None
    ) -> list[dict[str, float]]:
        """`compute_and_record` for each record in order (later records see
        earlier ones), all or nothing for invalid input and conflicting
        duplicates: those raise before anything is recorded."""
        events = self._events(records, fingerprints)
        try:
            answers = self.store.record_and_query_many(events, self._plan)
        except DuplicateTransactionError as exc:
            raise DuplicateTransactionError(exc.message, field=self.id_col) from None
        return [self._features(a) for a in answers]

    def compute(self, record: Mapping[str, Any]) -> dict[str, float]:
        """Features of `record` as if it were recorded now, without recording it."""
        event = self._builder.event(record, "")
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
        # Earlier records of this batch that the store has not seen count in
        # the later ones, as they would once recorded one by one.
        stored = self.store.known_fingerprints([e.transaction_id for e in events]) \
            if len(events) > 1 else {}
        fresh = [e for e in events if e.transaction_id not in stored]
        token = self._in_flight.add(fresh)
        try:
            features = []
            for i, event in enumerate(events):
                others = self._in_flight.near(event, token)
                if i:
                    others += [e for e in events[:i] if e.transaction_id not in stored]
                answer = self.store.record_and_query(event, plan, record=False, extra=others)
                features.append(self._features(answer))
        except BaseException:
            self._in_flight.remove(token)
            raise
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
        tid = online_events.transaction_id(transaction_id, self.id_col)
        at_ns = online_events.time_ns(labelled_at, "labelled_at")
        return self.store.add_label(tid, bool(is_fraud), at_ns)

    def entity_digest(self, value: Any, field: str = "entity") -> str:
        """The digest an entity id is stored under (a keyed hash, 32 hex
        digits), behind its entity's name (`customer_id:<digest>`)."""
        return self._hasher.digest(value, field)

    # ------------------------------------------------------------- internals
    def _events(
        self, records: Sequence[Mapping[str, Any]], fingerprints: Sequence[str] | None
    ) -> list[TxEvent]:
        if fingerprints is None:
            return [self._builder.event(r, None) for r in records]
        return [self._builder.event(r, f) for r, f in zip(records, fingerprints, strict=True)]

    def _features(self, answer: Answer) -> dict[str, float]:
        values = answer.features
        return {name: values[i] for name, i in self._order}


@dataclass(frozen=True)
class Preview:
    """What `OnlineWindowFeatures.preview` computed: the checked events, their
    features, and the handle of their entry in flight."""

    events: list[TxEvent]
    features: list[dict[str, float]]
    token: int


def replay(
    df: pd.DataFrame, online: OnlineWindowFeatures, label_delay_ns: int | None = None
) -> pd.DataFrame:
    """Feed `df`'s transactions to `online` one at a time, as a live system
    would see them: in (time, transaction id) order, each label (if `df` has
    the label column) arriving `label_delay_ns` after its transaction (by
    default the delay of the groups that read labels). Returns the
    features for every row of `df` (same index and row order).

    Used to warm a state store from history, and to check that the online
    features equal the offline ones (they do for any delay > 0; with no delay
    a transaction's own label would have to be known at its own request).
    """
    names = list(online.feature_names)
    if len(df) == 0:
        return pd.DataFrame({name: np.empty(0) for name in names}, index=df.index)
    if label_delay_ns is None:
        label_delay_ns = online.behaviour.label_delay_ns
    times = np.array([to_ns(v) for v in df[online.time_col]], dtype=np.int64)
    ids = np.array([online_events.transaction_id(v, online.id_col) for v in df[online.id_col]],
                   dtype=np.int64)
    sequence = np.lexsort((ids, times))
    records = df.drop(columns=[online.label_col], errors="ignore").to_dict("records")
    labels = df[online.label_col].to_numpy() if online.label_col in df.columns else None
    label_at = times[sequence] + label_delay_ns
    next_label = 0
    out = np.empty((len(df), len(names)), dtype=np.float64)
    for k, i in enumerate(sequence):
        # Labels due by now arrive first (at its due time a label counts),
        # for transactions already seen.
        while labels is not None and next_label < k and label_at[next_label] <= times[i]:
            j = sequence[next_label]
            at = np.datetime64(int(label_at[next_label]), "ns")
            online.add_label(int(ids[j]), bool(labels[j]), at)
            next_label += 1
        out[i] = list(online.compute_and_record(records[i]).values())
    return pd.DataFrame(out, columns=names, index=df.index)
