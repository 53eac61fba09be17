"""Folders and files the service creates for its own data (the audit
database, the online state, the hash key, the local MLflow store) are
private to the user it runs as: folders 0700, files 0600, whatever the
umask. They hold analysts' names and notes, decisions and keyed digests;
nothing else on the machine needs to read them. Existing folders and files
are left as they are (an operator may have opened them up on purpose).
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create `path` and its missing parents, each one we create with mode
    0700 (`Path.mkdir(parents=True, mode=...)` applies the mode to the last
    one only; the parents would get the umask's 0755)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made by another process meanwhile
            continue


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create `path` empty with mode 0600 if it does not exist (its folder
    private too, if we create it); True if this call created it. SQLite
    takes an empty file as an empty database and gives its -wal, -shm and
    -journal files the database file's mode, so creating it first is what
    keeps them all private."""
    path = Path(path)
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
