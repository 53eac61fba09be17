"""The memory store's snapshot still happens, now when its journal has grown
(or at the latest after the longest period), not on a short fixed timer."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from gendetect.features.windows import WindowConfig
from serving.online_state import OnlineState
from serving.settings import ServingSettings
from serving.snapshots import SnapshotSchedule, snapshot_loop
from tests.records import tx

START = datetime(2024, 3, 1, 12)


def _settings(tmp_path: Path, **extra: object) -> ServingSettings:
    return ServingSettings(home=tmp_path, hash_key="snapshot-test-key", **extra)  # type: ignore[arg-type]


def test_a_grown_journal_makes_the_snapshot_due(tmp_path: Path) -> None:
    settings = _settings(tmp_path, state_snapshot_journal_mb=0.001)  # ~1 KiB
    online = OnlineState.create(WindowConfig(), settings)
    schedule = SnapshotSchedule.for_settings(settings)
    try:
        assert not schedule.due()
        online.compute([tx(i, START, customer=i % 7) for i in range(1, 40)])
        assert schedule.journal_bytes() >= 1024 and schedule.due()
        online.snapshot()
        # The snapshot holds the journal's entries: its segments are gone.
        assert schedule.journal_bytes() < 1024
    finally:
        online.close()


def test_the_longest_period_makes_it_due_without_traffic(tmp_path: Path) -> None:
    now = [0.0]
    schedule = SnapshotSchedule(tmp_path / "features.snapshot", max_bytes=1 << 30,
                                max_seconds=60.0, clock=lambda: now[0])
    now[0] = 59.0
    assert not schedule.due()
    now[0] = 61.0
    assert schedule.due()
    schedule.done()
    assert not schedule.due()


def test_the_app_loop_writes_the_snapshot(tmp_path: Path) -> None:
    settings = _settings(tmp_path, state_snapshot_journal_mb=0.001)
    online = OnlineState.create(WindowConfig(), settings)
    manager = SimpleNamespace(current=SimpleNamespace(online=online))
    snapshot = tmp_path / "state" / "features.snapshot"
    online.compute([tx(i, START, customer=i % 5) for i in range(1, 40)])
    assert not snapshot.is_file()

    async def run() -> None:
        task = asyncio.create_task(snapshot_loop(manager, settings, check_seconds=0.05))  # type: ignore[arg-type]
        try:
            for _ in range(200):
                if snapshot.is_file():
                    return
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    try:
        asyncio.run(run())
        assert snapshot.is_file()
        # Restarted from it: the history goes on.
        online.close()
        again = OnlineState.create(WindowConfig(), settings)
        assert len(again.store) == 39  # type: ignore[arg-type]
        again.close()
    finally:
        online.close()
