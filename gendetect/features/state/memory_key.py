"""The memory store's hash-key check (with a snapshot path): the check
value of the key the state was written with (gendetect.key_check) is kept
in a small file beside the snapshot, `<snapshot>.keycheck`, written before the first journal segment
(so a state that is only a journal is covered), and in the snapshot itself.
A store opened with another key refuses to start (HashKeyChangedError,
naming the snapshot path): its digests would never match the new ones, and
every history would silently start from zero. With `accept_new_key` the old
snapshot, journal and check file are moved to `replaced-<time>/` beside
them (kept, in case the old key turns up) and the store starts empty. A
state written before check values existed is adopted: the key in use is
recorded.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gendetect.features.state.durable import fsync_dir, write_atomically
from gendetect.key_check import ACCEPT_SETTING, HashKeyChangedError

log = logging.getLogger(__name__)

_KEY_REMEDY = "start the online state over (the old files are moved aside)"


def _key_file(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".keycheck")


def _read_key_file(snapshot_path: Path) -> str | None:
    path = _key_file(snapshot_path)
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        raise ValueError(f"{path}: not a hash-key check file") from None
    value = raw.get("key_check") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{path}: not a hash-key check file")
    return value


def _write_key_file(snapshot_path: Path, value: str) -> None:
    # Atomically, like the snapshot: a torn check file would refuse a good
    # state at the next start.
    write_atomically(_key_file(snapshot_path), orjson.dumps({"key_check": value}) + b"\n")


def _state_files(snapshot_path: Path) -> list[Path]:
    """The snapshot and its journal segments (what holds entity digests)."""
    folder, name = snapshot_path.parent, snapshot_path.name
    segments = [p for p in folder.glob(f"{name}.journal.*") if p.name[len(name) + 9 :].isdigit()]
    return ([snapshot_path] if snapshot_path.exists() else []) + sorted(segments)


def _has_state(snapshot_path: Path) -> bool:
    return any(p == snapshot_path or p.stat().st_size > 0 for p in _state_files(snapshot_path))


def _settle_key(snapshot_path: Path, current: str | None, stored: set[str], accept: bool) -> bool:
    """Raise HashKeyChangedError if the state at `snapshot_path` was written
    with another key than `current` (`stored`: the check values it
    recorded); with `accept`, move it aside instead and return True. A check
    file left without any state (nothing to orphan) is simply replaced."""
    if current is None or not stored or stored == {current} or not _has_state(snapshot_path):
        return False
    if not accept:
        raise HashKeyChangedError(f"the online state at {snapshot_path}", _KEY_REMEDY)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = snapshot_path.parent / f"replaced-{stamp}-{uuid.uuid4().hex[:6]}"
    aside.mkdir(mode=0o700)
    moved = _state_files(snapshot_path)
    key_file = _key_file(snapshot_path)
    for path in [*moved, *([key_file] if key_file.exists() else [])]:
        os.replace(path, aside / path.name)
    fsync_dir(snapshot_path.parent)
    log.warning(
        "THE HASH KEY CHANGED and %s is set: the online state at %s (%d files) was written with "
        "the old key and is moved to %s; every customer and terminal history starts from zero",
        ACCEPT_SETTING, snapshot_path, len(moved), aside,
    )
    return True


def check_memory_key(
    snapshot_path: str | os.PathLike[str], key_check: str, *, accept_new_key: bool = False
) -> None:
    """The memory store's key check without opening the store (the API runs
    it before it opens its port, so a changed key stops it at once): raises
    HashKeyChangedError if the state at `snapshot_path` was written with
    another key; with `accept_new_key` moves that state aside. Reads the
    snapshot only when the check file is missing. Files it cannot read are
    left to the store, which reports them when it opens."""
    path = Path(snapshot_path)
    try:
        stored = _read_key_file(path)
        if stored is None and path.exists():
            raw = orjson.loads(path.read_bytes())
            stored = raw.get("key_check") if isinstance(raw, dict) else None
    except (OSError, ValueError):  # orjson.JSONDecodeError is a ValueError
        return
    _settle_key(path, key_check, {stored} if stored else set(), accept_new_key)


def key_at_start(
    snapshot_path: Path, key_check: str | None, raw: Any, *, accept_new_key: bool
) -> tuple[str | None, bool]:
    """The store's key check as it opens, `raw` being its parsed snapshot
    (None if there is none): raises HashKeyChangedError if the state was
    written with another key than `key_check`, or with `accept_new_key`
    moves it aside; records the key in use. Returns the check value the
    store keeps, and whether its state was moved aside (start empty)."""
    stored = _read_key_file(snapshot_path)
    snapshot_check = raw.get("key_check") if isinstance(raw, dict) else None
    checks = {c for c in (stored, snapshot_check) if c is not None}
    moved_aside = _settle_key(snapshot_path, key_check, checks, accept_new_key)
    if key_check is None:
        # No key given (a tool, a test): keep whatever the state had.
        return stored or snapshot_check, moved_aside
    if stored != key_check:
        # Before any journal segment is written: a state that is only a
        # journal is covered too.
        if not checks and _has_state(snapshot_path):
            log.warning("%s: no hash-key check value (written before gendetect kept one): "
                        "adopting the key in use", snapshot_path)
        _write_key_file(snapshot_path, key_check)
    return key_check, moved_aside
