"""Plain-ASGI middleware (not BaseHTTPMiddleware, which adds a task and a
stream per request): request guards before anything reads a body, and one
access-log line plus metrics per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import ApiError, log_unexpected
from serving.metrics import Metrics

access_log = logging.getLogger("gendetect.serving.access")

_JSON = (b"content-type", b"application/json")
# Any POST without a limit of its own (reload, unknown paths).
DEFAULT_POST_LIMIT = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class RequestGuard:
    """Every POST: a JSON Content-Type when it has a body (415 otherwise: a
    text/plain post is a "simple" cross-origin request that a web page can
    send without a CORS preflight), and a body limit per path (413), checked
    on the Content-Length header and again while the body streams in. The
    body must arrive within `body_timeout` seconds of the request head (408,
    connection closed): a client trickling a body, or sending none after its
    Content-Length, held a connection and a task for as long as it liked."""

    def __init__(self, app: ASGIApp, limits: Mapping[str, int],
                 body_timeout: float = 30.0) -> None:
        self.app = app
        self.limits = dict(limits)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], DEFAULT_POST_LIMIT)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        has_body = (declared is None and b"transfer-encoding" in headers) or bool(declared)
        if has_body and not _is_json(headers.get(b"content-type", b"")):
            error = ApiError(415, "unsupported_media_type",
                             "request bodies must be JSON (Content-Type: application/json)")
            await send_json(send, 415, error.body())
            return
        received = 0
        started = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def limited_receive() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, limit)
        except _BodyTooSlow:
            if not started:
                error = ApiError(408, "request_timeout",
                                 f"request body not received within {self.body_timeout:g} s")
                # Closed: the rest of the body may still come, and would be
                # read as the next request.
                await send_json(send, 408, error.body(), {"Connection": "close"})


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


async def _too_large(send: Send, limit: int) -> None:
    error = ApiError(413, "payload_too_large", f"request body above {limit} bytes for this route")
    await send_json(send, 413, error.body())


async def send_json(send: Send, status: int, payload: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
    length = (b"content-length", str(len(payload)).encode())
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, length, *extra]})
    await send({"type": "http.response.body", "body": payload})


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/score`), never the raw path:
    metric labels must stay few. FastAPI >= 0.16x keeps included routers
    nested, so the route object's own path lacks the prefixes; the effective
    route context has the full template."""
    fast = scope.get("gendetect.route")  # answered by serving.fastpath
    if fast:
        return str(fast)
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    # Starlette routes (mounted static assets) have fixed prefixes.
    return scope["path"] if "endpoint" in scope else "unmatched"


class Observability:
    """Per request: metrics and one access-log line (route template, status,
    latency, model version; never the body). Unhandled errors are answered
    here with a 500 that carries no internals, logged without the exception
    message (it may quote record values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, current_version: Callable[[], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.current_version = current_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            log_unexpected(exc, scope["path"])
            if status == 0:
                await send_json(send_status, 500,
                                ApiError(500, "internal_error", "internal error").body())
            status = 500
        finally:
            elapsed = time.perf_counter() - started
            status = status or 499  # the client left before an answer
            route = route_template(scope)
            self.metrics.observe_request(route, scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                version = self.current_version()
                # The fields again as `extra`: separate keys in JSON log lines.
                access_log.info("%s %s %d %.2fms model=%s", scope["method"], route, status,
                                elapsed * 1000, version,
                                extra={"method": scope["method"], "route": route,
                                       "status": status, "latency_ms": round(elapsed * 1000, 3),
                                       "model_version": version})
