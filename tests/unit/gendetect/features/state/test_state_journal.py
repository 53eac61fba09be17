"""The memory store's journal: nothing acknowledged is lost, nothing applied
twice, whatever step a crash interrupts.

The kill -9 test runs a real process that records transactions and labels,
printing each acknowledgement, and kills it with SIGKILL right after; a store
reopened on its files must hold every acknowledged label and record. (The
store as it was before had no journal: whatever came after its last
snapshot, up to 30 s of records and labels, was lost.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gendetect.errors import StateUnavailableError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore
from gendetect.features.state import journal as state_module
from gendetect.features.state import memory as memory_module
from gendetect.features.windows import WindowConfig
from gendetect.timestamps import to_ns
from tests.records import tx

START = datetime(2024, 3, 1)
KEY = b"journal-test-key"


def _open(path: Path, **kwargs: float) -> OnlineWindowFeatures:
    return OnlineWindowFeatures(WindowConfig(), MemoryStateStore(path, **kwargs), entity_key=KEY)


def _restarted(path: Path) -> OnlineWindowFeatures:
    """A store started on a copy of the state folder as it is now (as after
    a crash: the running store is left alone)."""
    copies = path.parent.parent / "restarts"
    copies.mkdir(exist_ok=True)
    target = copies / str(len(list(copies.iterdir())))
    shutil.copytree(path.parent, target)
    return _open(target / path.name)


def _feed(online: OnlineWindowFeatures, ids: range) -> list[dict[str, float]]:
    out = []
    for k in ids:
        out.append(
            online.compute_and_record(
                tx(k, START + timedelta(hours=k), customer=k % 7, terminal=k % 3, amount=k + 0.5)
            )
        )
        if k % 4 == 0:
            online.add_label(k, k % 8 == 0, START + timedelta(hours=k + 1))
    return out


def _probe(online: OnlineWindowFeatures) -> list[dict[str, float]]:
    when = START + timedelta(days=9)
    return [online.compute(tx(10**6 + c, when, customer=c, terminal=c % 3)) for c in range(7)]


def _segments(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.journal.*"))


def test_a_reopened_store_replays_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "features.snapshot"
    first = _open(path)
    _feed(first, range(100))
    probe = _probe(first)
    # No snapshot, no close: as after a crash, only the journal has it all.
    again = _restarted(path)
    assert _probe(again) == probe
    assert again.store.lookup(8) == (1, to_ns(START + timedelta(hours=9)))  # type: ignore[attr-defined]
    assert again.store.lookup(4) == (0, to_ns(START + timedelta(hours=5)))  # type: ignore[attr-defined]
    # Retries after the restart are recognised: nothing counted twice.
    _feed(again, range(90, 100))
    assert _probe(again) == probe


def test_snapshot_then_journal_then_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(50))
    online.store.snapshot()
    assert [p.name for p in _segments(path)] == [f"{path.name}.journal.0000000001"]
    _feed(online, range(50, 120))
    probe = _probe(online)
    assert _probe(_restarted(path)) == probe  # snapshot + the newer segment
    online.store.snapshot()
    assert len(_segments(path)) == 1 and _segments(path)[0].stat().st_size == 0
    assert _probe(_restarted(path)) == probe


def test_a_crash_before_the_snapshot_rename_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(40))
    online.store.snapshot()
    _feed(online, range(40, 80))
    probe = _probe(online)

    def crash(*args: object) -> None:
        raise RuntimeError("killed before the rename")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(RuntimeError):
        online.store.snapshot()
    monkeypatch.undo()
    # The old snapshot and every segment since are still there.
    assert _probe(_restarted(path)) == probe
    assert not list(path.parent.glob(".*.tmp"))


def test_a_crash_after_the_rename_applies_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(60))
    probe = _probe(online)
    monkeypatch.setattr(state_module.Journal, "segments", lambda self: [])  # keeps old segments
    online.store.snapshot()
    monkeypatch.undo()
    stale = _segments(path)[0]
    assert len(_segments(path)) == 2 and stale.stat().st_size > 0  # still there
    reopened = _restarted(path)
    assert _probe(reopened) == probe  # its entries are in the snapshot: skipped
    copy = reopened.store._path  # type: ignore[attr-defined]
    assert not (copy.parent / stale.name).exists()  # and deleted


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(30))
    probe = _probe(online)
    with open(_segments(path)[-1], "ab") as fh:
        fh.write(b'["r",31,17092800000')  # a write cut short by a crash
    reopened = _restarted(path)
    assert _probe(reopened) == probe
    _feed(reopened, range(30, 35))  # goes on in a new segment
    assert len(reopened.store) == 35  # type: ignore[arg-type]


def test_a_failed_write_changes_nothing_and_the_next_one_starts_a_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(10))
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:7])  # a torn line, then the error
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.os, "write", full_disk)
    with pytest.raises(StateUnavailableError):
        online.compute_and_record(tx(10, START + timedelta(hours=10)))
    with pytest.raises(StateUnavailableError):
        online.add_label(3, True, START)
    monkeypatch.undo()
    assert len(online.store) == 10 and online.store.lookup(3) == (-1, 0)  # type: ignore[attr-defined]
    before = len(_segments(path))
    _feed(online, range(10, 20))
    assert len(_segments(path)) == before + 1
    probe = _probe(online)
    assert _probe(_restarted(path)) == probe


def test_the_flusher_fsyncs_on_its_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.set()

    path = tmp_path / "features.snapshot"
    online = _open(path, journal_fsync_seconds=0.01)
    monkeypatch.setattr(state_module.os, "fsync", fsync)
    online.compute_and_record(tx(1, START))  # a record: no fsync of its own
    assert synced.wait(30), "the background flusher never synced the journal"
    online.store.close()


def test_labels_are_fsynced_before_they_are_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "features.snapshot"
    online = _open(path, journal_fsync_seconds=60)  # the flusher stays out of it
    online.compute_and_record(tx(1, START))
    calls: list[int] = []
    monkeypatch.setattr(state_module.os, "fsync", lambda fd: calls.append(fd))
    assert online.add_label(1, True, START)
    assert calls, "add_label returned before the journal was synced"


@contextlib.contextmanager
def _flusher_in_a_slow_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: bytes
) -> Iterator[tuple[state_module.Journal, list[int]]]:
    """A journal holding `entry` whose flusher (a thread calling sync) is
    inside an fsync that waits until the block ends (a busy disk); yields the
    journal and the fsync calls so far."""
    journal = state_module.Journal(tmp_path / "features.snapshot", fsync_seconds=3600)
    journal.start(1)
    journal.write(entry)
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            entered.set()
            release.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(state_module.os, "fsync", fsync)
    flusher = threading.Thread(target=journal.sync)
    flusher.start()
    try:
        assert entered.wait(30)
        yield journal, calls
    finally:
        release.set()
        flusher.join(30)


def test_writes_go_on_while_the_journal_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving event loop writes the journal under the store's lock: the
    flusher's fsync (milliseconds on a busy disk) must not hold it up."""
    with _flusher_in_a_slow_fsync(tmp_path, monkeypatch, b"first\n") as (journal, _):
        writer = threading.Thread(target=journal.write, args=(b"second\n",))
        writer.start()
        writer.join(5)
        assert not writer.is_alive(), "a write waited for the fsync"
    journal.close()
    assert journal.path_of(1).read_bytes() == b"first\nsecond\n"


def test_a_sync_returns_only_once_its_own_entries_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label's sync that comes while the flusher's fsync is still running
    fsyncs itself: it never returns on the strength of an fsync that has not
    finished."""
    with _flusher_in_a_slow_fsync(tmp_path, monkeypatch, b"label\n") as (journal, calls):
        label = threading.Thread(target=journal.sync)
        label.start()
        label.join(5)
        assert not label.is_alive() and len(calls) == 2
    journal.sync()
    assert len(calls) == 2  # nothing new written: nothing to sync
    journal.close()


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta
    from gendetect.features.online import OnlineWindowFeatures
    from gendetect.timestamps import to_ns
    from gendetect.features.state import MemoryStateStore
    from gendetect.features.windows import WindowConfig

    store = MemoryStateStore(sys.argv[1], journal_fsync_seconds=0.05)
    online = OnlineWindowFeatures(WindowConfig(), store, entity_key=b"journal-test-key")
    start = datetime(2024, 3, 1)
    for k in range(10**9):
        online.compute_and_record({
            "transaction_id": k, "timestamp": start + timedelta(minutes=k),
            "customer_id": k % 11, "terminal_id": k % 5, "amount": 1.0 + k % 9,
        })
        print("r", k, flush=True)
        if k % 10 == 0:
            assert online.add_label(k, True, start + timedelta(minutes=k + 1))
            print("l", k, flush=True)
    """
)


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "state" / "features.snapshot"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    records: list[int] = []
    labels: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            kind, k = line.split()
            (records if kind == "r" else labels).append(int(k))
            if len(labels) >= 30:
                break
        os.kill(child.pid, signal.SIGKILL)  # right after an acknowledged label
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    store = MemoryStateStore(path)
    online = OnlineWindowFeatures(WindowConfig(), store, entity_key=KEY)
    assert all(store.lookup(k) is not None for k in records)
    assert all(store.lookup(k) == (1, 1709251200000000000 + (k + 1) * 60 * 10**9) for k in labels)
    # The windows hold every acknowledged record too (journal written through).
    last = records[-1]
    counts = online.compute(tx(10**9, START + timedelta(minutes=last), customer=0, terminal=99))
    assert counts["customer_nb_tx_1d"] >= len([k for k in records if k % 11 == 0]) + 1
    store.close()


def test_close_survives_a_failing_final_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path)
    _feed(online, range(25))
    probe = _probe(online)

    def disk_full(path: Path, payload: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(memory_module, "write_atomically", disk_full)
    online.store.close()  # logged, not raised: shutdown goes on
    monkeypatch.undo()
    assert not path.exists()
    assert _probe(_restarted(path)) == probe  # the journal had it all
