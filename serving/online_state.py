"""Glue between the API and the online behaviour features.

The features themselves (the window kernel, the state stores) live in
gendetect.features: the API only decides which store to open, where label
timestamps default, and when the memory store writes its snapshot, so that a
restart continues each customer's history instead of starting from zero.
The stores are thread-safe and record-and-read atomically, so no locking is
needed here.
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
    def __init__(self, config: WindowConfig, store: StateStore, *, in_memory: bool) -> None:
        self.config = config
        self.store = store
        self.features = OnlineWindowFeatures(config, store)
        self.in_memory = in_memory

    @classmethod
    def create(cls, config: WindowConfig, settings: Settings) -> OnlineState:
        if settings.state_store == "redis":
            log.info("online state: redis")
            return cls(config, RedisStateStore(url=settings.redis_url), in_memory=False)
        path = settings.state_snapshot_path
        log.info("online state: memory, snapshot at %s", path)
        return cls(config, MemoryStateStore(snapshot_path=path), in_memory=True)

    def with_config(self, config: WindowConfig) -> OnlineState:
        """A new model with other windows: same store, new window computer."""
        return OnlineState(config, self.store, in_memory=self.in_memory)

    @property
    def runs_inline(self) -> bool:
        """True when a call never waits on the network, so it may run on the
        event loop; a Redis round trip must not."""
        return self.in_memory

    def compute(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """Window features per record, recording each one; in order, so a
        batch's later records see its earlier ones."""
        compute = self.features.compute_and_record
        return [compute(r) for r in records]

    def add_label(self, transaction_id: int | str, is_fraud: bool, labelled_at: datetime) -> bool:
        return self.features.add_label(transaction_id, is_fraud, labelled_at)

    def snapshot(self) -> None:
        if self.in_memory:
            self.store.snapshot()

    def close(self) -> None:
        # The memory store writes its final snapshot on close.
        self.store.close()
