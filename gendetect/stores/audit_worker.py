"""The audit writer process: `python -m gendetect.stores.audit_worker FD`.

Started by gendetect.stores.audit_process, one per serving process, talking
over the socket inherited as file descriptor FD. Frames are a 4-byte length
and a pickle (both ends are this package; nothing else writes to the
socket). The first frame is the configuration (database URL, timeout),
answered with READY once the engine is made; then groups of items
`(id, deadline, rows)` come in and one answer per group goes out:
`(id, outcome)` per item, plus the writer's counters.

The loop: wait for a frame, take every frame that arrived meanwhile (the
requests of the serving process' last loop iterations, and those that came
while the previous commit ran), skip the items whose deadline has passed
(their requests give up: "expired", never written), commit the rest in one
transaction (gendetect.stores.group_commit) and answer. Deadlines are read
on CLOCK_MONOTONIC, which all processes of a machine share; an item is
taken only before its deadline, so a request never gives up on rows that
are in a commit (see gendetect.stores.audit_process).

A stop frame ends it after the groups before it are committed; so does the
end of the socket (the serving process is gone: what was received is still
committed, a client that retries gets that decision back). SIGINT and
SIGTERM are ignored: a Ctrl-C or a signal to the process group must not
kill a commit the serving process waits on; it stops the writer by the
socket.
"""

from __future__ import annotations

import logging
import pickle
import signal
import socket
import struct
import sys
import time
from typing import Any

_LENGTH = struct.Struct("!I")
STOP = "stop"
READY = "ready"  # sent once the engine is made
# Rows per transaction at most (a burst of large batches is split).
MAX_GROUP_ROWS = 5000
EXPIRED = "expired"

log = logging.getLogger("gendetect.stores")


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class Frames:
    """Splits a byte stream into decoded frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        out = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                break
            out.append(pickle.loads(self._buffer[_LENGTH.size:end]))
            del self._buffer[:end]
        return out


def _receive(sock: socket.socket, frames: Frames, wait: bool) -> tuple[list[Any], bool]:
    """(frames available now, whether the stream ended); with `wait`, at
    least one frame unless the stream ended."""
    out: list[Any] = []
    if wait:
        sock.setblocking(True)
        while not out:
            data = sock.recv(1 << 20)
            if not data:
                return out, True
            out.extend(frames.feed(data))
    sock.setblocking(False)
    try:
        while data := sock.recv(1 << 20):
            out.extend(frames.feed(data))
        return out, True  # an empty read: the end of the stream
    except BlockingIOError:
        return out, False


def serve(sock: socket.socket) -> None:
    from gendetect.stores.database import make_engine
    from gendetect.stores.group_commit import GroupCommitter

    frames = Frames()
    backlog, ended = _receive(sock, frames, wait=True)
    if not backlog:
        return
    url, timeout = backlog.pop(0)
    engine = make_engine(url, timeout=timeout)
    committer = GroupCommitter(engine)
    sock.setblocking(True)
    sock.sendall(encode(READY))
    stopping = False
    try:
        while not (stopping and not backlog):
            if not backlog:
                if ended:
                    break  # the serving process is gone, and all it sent is written
                backlog, ended = _receive(sock, frames, wait=True)
                continue
            if not ended:  # what came while the last commit ran joins this group
                more, ended = _receive(sock, frames, wait=False)
                backlog.extend(more)
            items: list[Any] = []
            rows = 0
            while backlog and rows < MAX_GROUP_ROWS:
                frame = backlog.pop(0)
                if frame == STOP:
                    stopping = True
                    continue
                items.extend(frame)
                rows += sum(len(item[2]) for item in frame)
            if items:
                _commit(sock, committer, items)
    finally:
        committer.drop_connection()
        engine.dispose()


def _commit(sock: socket.socket, committer: Any, items: list[Any]) -> None:
    now = time.monotonic()
    live = [item for item in items if now < item[1]]
    answers: list[tuple[int, Any]] = [(item[0], EXPIRED) for item in items if now >= item[1]]
    if live:
        outcomes = committer.commit([item[2] for item in live])
        answers.extend((item[0], outcome) for item, outcome in zip(live, outcomes, strict=True))
    try:
        sock.setblocking(True)
        sock.sendall(encode((answers, committer.commits, committer.rows_written)))
    except OSError:
        pass  # nobody waits any more


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with socket.socket(fileno=int(argv[0])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
