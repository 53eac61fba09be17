"""Connection limits against the real server, over raw sockets to 127.0.0.1:
a client that sends nothing, half a request head (at once or a byte at a
time), or half a body, or stays idle after an answer, is cut off within the
configured timeout (1 s here); requests on connections beyond the cap get
503. Before, 1,400 such connections were held for as long as their clients
liked, and none of them needed a key.

Every wait is bounded (a few seconds at most) and the connections are few.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0  # header, body and idle timeouts of the server under test
CAP = 4
KEY = "connection-limits-key-0123"
MARGIN_S = 3.0  # scheduling slack on a busy machine; far below the old "never"
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def limited(registered_model: RegisteredFixture,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from tests.integration.conftest import ServerProcess, server_env

    home = tmp_path_factory.mktemp("limits-home")
    timeout = str(TIMEOUT_S)
    env = server_env(registered_model.settings, home, GENDETECT_API_KEY=KEY,
                     GENDETECT_HEADER_TIMEOUT_SECONDS=timeout,
                     GENDETECT_BODY_TIMEOUT_SECONDS=timeout,
                     GENDETECT_IDLE_TIMEOUT_SECONDS=timeout,
                     GENDETECT_MAX_CONNECTIONS=str(CAP),
                     GENDETECT_STATE_SNAPSHOT_SECONDS="3600")
    proc = ServerProcess(home, env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    parts = urlsplit(server.url)
    assert parts.hostname == "127.0.0.1" and parts.port
    return socket.create_connection(("127.0.0.1", parts.port), timeout=5)


def _until_closed(sock: socket.socket, limit: float = TIMEOUT_S + MARGIN_S
                  ) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and how long
    that took; fails if it is still open after `limit` seconds."""
    started = time.monotonic()
    data = b""
    while True:
        left = limit - (time.monotonic() - started)
        assert left > 0, f"connection still open after {limit} s (got {data[:200]!r})"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue  # the assertion above reports it
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def _response(sock: socket.socket) -> bytes:
    """One complete response (Content-Length framed) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_connection_that_sends_nothing_is_closed(limited: ServerProcess) -> None:
    with _connect(limited) as sock:
        data, took = _until_closed(sock)
    assert data == b""  # no request began: closed without an answer
    assert took >= TIMEOUT_S * 0.8


def test_half_a_request_head_gets_408_and_is_closed(limited: ServerProcess) -> None:
    with _connect(limited) as sock:
        sock.sendall(HEAD)  # no blank line: the head never ends
        data, took = _until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data.lower()
    assert b'"code":"request_timeout"' in data
    assert took >= TIMEOUT_S * 0.8


def test_a_trickled_head_does_not_extend_the_deadline(limited: ServerProcess) -> None:
    """Slowloris: a header byte every 0.1 s keeps the connection busy, never
    complete; the deadline counts from the connection's opening."""
    head = HEAD + b"X-Slow: " + b"a" * 100
    started = time.monotonic()
    with _connect(limited) as sock:
        for byte in head:  # 11 s in all if nothing stopped it
            # Stop sending once the server answers (writing on would make it
            # reset the connection and drop the answer).
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(bytes([byte]))
        data, _ = _until_closed(sock)
    took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert took < TIMEOUT_S + MARGIN_S


def test_a_partial_body_gets_408_and_is_closed(limited: ServerProcess) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                     + b'{"transaction_id": 1, ')
        data, took = _until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data.lower()
    assert b'"code":"request_timeout"' in data
    assert took >= TIMEOUT_S * 0.8


def test_an_idle_keep_alive_connection_is_closed(limited: ServerProcess) -> None:
    with _connect(limited) as sock:
        sock.sendall(HEAD + b"\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200 ")
        data, _ = _until_closed(sock)
    assert data == b""


def test_a_later_request_on_a_kept_alive_connection_has_a_head_deadline(
    limited: ServerProcess,
) -> None:
    # uvicorn's keep-alive timer stops at the next request's first byte.
    with _connect(limited) as sock:
        sock.sendall(HEAD + b"\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(HEAD)
        data, _ = _until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data


def test_connections_beyond_the_cap_get_503(limited: ServerProcess) -> None:
    held = [_connect(limited) for _ in range(CAP)]
    try:
        # The held connections send nothing: they count until their header
        # deadline, far later than this request.
        with _connect(limited) as extra:
            extra.sendall(HEAD + b"\r\n")
            data, _ = _until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503 "), data
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + MARGIN_S
    while httpx.get(f"{limited.url}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "still refusing after the held connections closed"
        time.sleep(0.1)
