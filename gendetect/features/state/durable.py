"""Durable file writes shared by the memory store's journal, snapshot and
hash-key check file: a whole file replaced atomically, and a folder's
entries synced so that a new or renamed file survives a power cut.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the file data is synced
    finally:
        os.close(fd)


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` (mode 0600 if new) or leave the old file
    intact: beside the target, then rename, so a crash mid-write never
    leaves a truncated file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
