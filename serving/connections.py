"""Connection deadlines that uvicorn lacks: its HTTP protocols close a
kept-alive connection that stays idle after a response
(`timeout_keep_alive`), but a connection that never sends a complete
request head was held forever: one that sends nothing, half a request line,
or a header byte now and then (slowloris), or a new request's first bytes
after a response (the keep-alive timer stops at the first byte and is not
armed again).

`deadline_protocol` subclasses the protocol uvicorn would pick (httptools,
else h11) with a header timer:

- armed when the connection opens, and again when bytes of a later request
  arrive on a kept-alive connection;
- cancelled when a request's head is complete (the protocol starts a new
  request cycle), after which the body timeout (serving.middleware
  RequestGuard) and, once answered, uvicorn's keep-alive timer take over;
- on expiry the connection is closed: with a 408 when part of a new request
  has arrived (the client waits for an answer to it), silently when nothing
  has (like the keep-alive timeout: a pooled client must not read a 408 as
  the answer to a request it sends later).

The deadline is absolute: bytes trickling in do not extend it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from serving.errors import ApiError

_BaseProtocol: Any = AutoHTTPProtocol  # HttpToolsProtocol or H11Protocol


def request_timeout_response(message: str) -> bytes:
    """A complete HTTP/1.1 408 with the API's error envelope, closing."""
    body = ApiError(408, "request_timeout", message).body()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


class DeadlineProtocol(_BaseProtocol):  # type: ignore[misc]
    """uvicorn's HTTP protocol with a deadline on each request head."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None
        self._partial = False  # bytes of a request whose head is not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not self._seen_cycle:
            # The protocol made a new request cycle: a request head is complete.
            self._seen_cycle = cycle
            self._partial = False
            self._disarm()
        elif cycle is None or cycle.response_complete:
            # No request in progress: these bytes begin the next one (or are
            # the unread rest of an answered request's body).
            self._partial = True
            if self._header_timer is None:
                self._arm()

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _head_too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed already, or handed over (a protocol upgrade)
        cycle = self.cycle
        # After an early answer (401, 413) the rest of that request's body may
        # still be arriving: no 408 then, the client has its answer.
        if self._partial and (cycle is None or not cycle.more_body):
            transport.write(request_timeout_response(
                f"request headers not received within {self.header_timeout:g} s"))
        transport.close()


def deadline_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn.Config(http=...) with this header timeout."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"header_timeout": header_timeout})
