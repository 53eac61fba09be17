"""When the memory store writes its snapshot.

The snapshot encodes the whole state while holding the store's lock, so
every request that reaches the store meanwhile waits for it: with a large
state that is tens of milliseconds, straight into the tail. The journal
already makes every change durable (gendetect.features.state.journal); the
snapshot only bounds how much journal a restart replays. So it is written
when that journal has grown past `state_snapshot_journal_mb` (a bounded
replay), at the latest every `state_snapshot_seconds`, and at shutdown,
instead of on a short fixed period. Checking costs a directory listing
every few seconds, in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from serving.settings import ServingSettings

if TYPE_CHECKING:
    from serving.model_manager import ModelManager

log = logging.getLogger("gendetect.serving")

CHECK_SECONDS = 5.0


class SnapshotSchedule:
    """Whether a snapshot is due: journal bytes beyond `max_bytes`, or
    `max_seconds` since the last one."""

    def __init__(self, snapshot_path: Path, *, max_bytes: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = snapshot_path.parent
        self.prefix = f"{snapshot_path.name}.journal."  # the journal's segments
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.clock = clock
        self.last = clock()

    @classmethod
    def for_settings(cls, settings: ServingSettings) -> SnapshotSchedule:
        return cls(settings.state_snapshot_path,
                   max_bytes=int(settings.state_snapshot_journal_mb * 1024 * 1024),
                   max_seconds=settings.state_snapshot_seconds)

    def journal_bytes(self) -> int:
        """Bytes in the journal segments (what a restart would replay)."""
        total = 0
        for path in self.dir.glob(self.prefix + "*"):
            try:
                total += path.stat().st_size
            except OSError:  # deleted by a snapshot meanwhile
                continue
        return total

    def due(self) -> bool:
        return (self.clock() - self.last >= self.max_seconds
                or self.journal_bytes() >= self.max_bytes)

    def done(self) -> None:
        self.last = self.clock()


async def snapshot_loop(manager: ModelManager, settings: ServingSettings,
                        check_seconds: float = CHECK_SECONDS) -> None:
    """The app's background task: a snapshot whenever one is due."""
    schedule = SnapshotSchedule.for_settings(settings)
    while True:
        await asyncio.sleep(min(check_seconds, settings.state_snapshot_seconds))
        served = manager.current
        if served is None or served.online is None or not served.online.in_memory:
            continue
        try:
            if not await asyncio.to_thread(schedule.due):
                continue
            await asyncio.to_thread(served.online.snapshot)
            schedule.done()
        except Exception:
            log.exception("state snapshot failed")
