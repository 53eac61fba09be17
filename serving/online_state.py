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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gendetect.config import Settings
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore, RedisStateStore, StateStore
from gendetect.features.windows import WindowConfig

log = logging.getLogger("gendetect.serving")


class OnlineState:
    def __init__(
        self,
        config: WindowConfig,
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
    def create(cls, config: WindowConfig, settings: Settings) -> OnlineState:
        key = settings.resolved_hash_key()
        if settings.state_store == "redis":
            log.info("online state: redis")
            store: StateStore = RedisStateStore(
                url=settings.redis_url, socket_timeout=settings.state_timeout_seconds
            )
            return cls(config, store, in_memory=False, entity_key=key)
        path = settings.state_snapshot_path
        log.info("online state: memory, snapshot and journal at %s", path)
        store = MemoryStateStore(
            snapshot_path=path, journal_fsync_seconds=settings.state_journal_fsync_seconds
        )
        return cls(config, store, in_memory=True, entity_key=key)

    def with_config(self, config: WindowConfig) -> OnlineState:
        """A new model with other windows: same store, new window computer."""
        return OnlineState(
            config, self.store, in_memory=self.in_memory, entity_key=self.entity_key
        )

    @property
    def runs_inline(self) -> bool:
        """True when `compute` never waits on the network, so it may run on
        the event loop (the memory store's journal write is one small write
        to the OS, no fsync); a Redis round trip must not."""
        return self.in_memory

    def compute(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """Window features per record, recording each one; in order, so a
        batch's later records see its earlier ones. Invalid input (InputError)
        and a transaction id already recorded with other content
        (DuplicateTransactionError, also for one id twice in the batch with
        different content) are refused before anything is recorded; the same
        record again is a retry, counted once."""
        if len(records) == 1:
            return [self.features.compute_and_record(records[0])]
        return self.features.compute_and_record_many(records)

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
