"""X-Request-ID: taken from the client when it is a plain token, generated
otherwise, echoed on the response, set for the logs (gendetect.logs) and kept
in the request's scope for the audit row.

A client's id is accepted only as letters, digits and `._:-`, at most 128
characters: it ends up in log lines and the audit, where a newline or a
megabyte would be an injection, not an id. Anything else is replaced by a
fresh one (the response says which)."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gendetect.logs import request_id_var

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside one)."""
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), None)
        rid = given.decode("ascii") if given is not None and _VALID.match(given) else (
            uuid.uuid4().hex)
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER]
                message["headers"] = [*headers, (HEADER, raw)]
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
