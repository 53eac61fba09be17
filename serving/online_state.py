"""Glue between the API and the online behaviour features.

The features themselves (the window kernel, the state stores) live in
gendetect.features: the API only decides which store to open, where label
timestamps default, and when the memory store writes its snapshot, so that a
restart continues each customer's history instead of starting from zero.
The stores are thread-safe and record-and-read atomically, so no locking is
needed here.

Entity ids reach either store as keyed hashes (settings.resolved_hash_key());
replicas sharing Redis must share that key. A store that does not answer
within settings.state_timeout_seconds raises StateUnavailableError (503);
`ping()` is what /readyz asks.

Each store records the check value of the hash key it was written with and
refuses another key (gendetect.key_check): `check_state_key` runs that check
when the app is made, before the port opens, so that `gendetect serve` stops
with one line (exit 2) instead of starting every history from zero. A Redis
that does not answer then is checked by the store at its first call (a
changed key is a 503 and ping() False until the key is fixed). With
settings.accept_new_hash_key the old state is moved aside (memory) or its
prefix cleared (Redis) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gendetect.errors import StateUnavailableError
from gendetect.features.behaviour import Behaviour
from gendetect.features.online import OnlineWindowFeatures, Preview
from gendetect.features.state import MemoryStateStore, RedisStateStore, StateStore
from gendetect.features.state.memory_key import check_memory_key
from gendetect.features.windows import WindowConfig
from gendetect.key_check import HashKeyChangedError, key_check
from serving.settings import ServingSettings

log = logging.getLogger("gendetect.serving")


class OnlineState:
    def __init__(
        self,
        config: Behaviour | WindowConfig,
        store: StateStore,
        *,
        in_memory: bool,
        entity_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.entity_key = entity_key
        self.features = OnlineWindowFeatures(config, store, entity_key=entity_key)
        self.in_memory = in_memory

    @classmethod
    def create(cls, config: Behaviour | WindowConfig,
               settings: ServingSettings) -> OnlineState:
        """Open the configured store; HashKeyChangedError (naming where the
        key comes from) if it was written with another hash key."""
        key = settings.resolved_hash_key()
        try:
            if settings.state_store == "redis":
                log.info("online state: redis")
                return cls(config, _checked_redis_store(settings, key), in_memory=False,
                           entity_key=key)
            path = settings.state_snapshot_path
            log.info("online state: memory, snapshot and journal at %s", path)
            store = MemoryStateStore(
                snapshot_path=path,
                journal_fsync_seconds=settings.state_journal_fsync_seconds,
                key_check=key_check(key),
                accept_new_key=settings.accept_new_hash_key,
            )
        except HashKeyChangedError as exc:
            raise exc.with_source(settings.hash_key_source) from None
        return cls(config, store, in_memory=True, entity_key=key)

    def with_config(self, config: Behaviour | WindowConfig) -> OnlineState:
        """A new model with other behaviour features: same store, new computer."""
        return OnlineState(
            config, self.store, in_memory=self.in_memory, entity_key=self.entity_key
        )

    @property
    def runs_inline(self) -> bool:
        """True when `compute` never waits on the network, so it may run on
        the event loop (the memory store's journal write is one small write
        to the OS, no fsync); a Redis round trip must not."""
        return self.in_memory

    def compute(self, records: Sequence[Mapping[str, Any]],
                fingerprints: Sequence[str] | None = None) -> list[dict[str, float]]:
        """Window features per record, recording each one; in order, so a
        batch's later records see its earlier ones. Invalid input (InputError)
        and a transaction id already recorded with other content
        (DuplicateTransactionError, also for one id twice in the batch with
        different content) are refused before anything is recorded; the same
        record again is a retry, counted once. For the API without its audit:
        the state is then the only record of a request."""
        if len(records) == 1:
            return [self.features.compute_and_record(
                records[0], fingerprints[0] if fingerprints is not None else None)]
        return self.features.compute_and_record_many(records, fingerprints)

    def preview(self, records: Sequence[Mapping[str, Any]],
                fingerprints: Sequence[str]) -> Preview:
        """Features as `compute` would give them, recording nothing: with the
        audit on, a request is recorded here only after its decision is
        stored (`record`), or forgotten (`discard`)."""
        return self.features.preview(records, fingerprints)

    def record(self, preview: Preview) -> None:
        self.features.record(preview)

    def discard(self, preview: Preview) -> None:
        self.features.discard(preview)

    def add_label(self, transaction_id: int | str, is_fraud: bool, labelled_at: datetime) -> bool:
        """False if the transaction is unknown or expired. With the memory
        store this fsyncs the journal before it returns (an acknowledged label
        survives a crash): milliseconds on a slow disk, so do not call it on
        the event loop even when `runs_inline`."""
        return self.features.add_label(transaction_id, is_fraud, labelled_at)

    def ping(self) -> bool:
        """Whether the state store answers (never raises; bounded by the
        store's timeout): for /readyz."""
        return self.store.ping()

    def snapshot(self) -> None:
        if self.in_memory:
            self.store.snapshot()

    def close(self) -> None:
        # The memory store writes its final snapshot on close.
        self.store.close()


def _checked_redis_store(settings: ServingSettings, key: bytes) -> RedisStateStore:
    """The Redis store, its hash key checked (HashKeyChangedError, the store
    closed). A Redis that does not answer now is left to the store's own
    check at the first call that reaches it."""
    store = RedisStateStore(
        url=settings.redis_url,
        socket_timeout=settings.state_timeout_seconds,
        key_check=key_check(key),
        accept_new_key=settings.accept_new_hash_key,
    )
    try:
        store.check_key()
    except StateUnavailableError:
        log.warning("online state: Redis does not answer; the hash key is checked at the "
                    "first call that reaches it")
    except HashKeyChangedError:
        store.close()
        raise
    return store


def check_state_key(settings: ServingSettings) -> None:
    """The state store's hash-key check, at start before anything is served
    (serving.main.create_app): HashKeyChangedError, naming the state and
    where the key comes from, if the state was written with another key
    (with settings.accept_new_hash_key: the old state is set aside instead).
    A Redis that does not answer now is left to the store's own check."""
    key = settings.resolved_hash_key()
    try:
        if settings.state_store == "redis":
            _checked_redis_store(settings, key).close()
        else:
            check_memory_key(settings.state_snapshot_path, key_check(key),
                             accept_new_key=settings.accept_new_hash_key)
    except HashKeyChangedError as exc:
        raise exc.with_source(settings.hash_key_source) from None
