"""The scoring routes answered without FastAPI's routing and dependency
machinery, which costs more CPU per request than validating and scoring a
record (measured with benchmarks/serving_before_after.py: about 15% of the
single-record throughput). Same checks (serving.access), same service, same
answers as the FastAPI routes in serving.api.routes.score, which stay for
the OpenAPI document and answer when this path is off
(`create_app(fast_path=False)`).

It sits inside RequestGuard (body limits, 415) and Observability (metrics,
access log), so those apply to it unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.access import authenticate, authorize, served_model
from serving.errors import ApiError
from serving.middleware import send_json

ROUTE_KEY = "gendetect.route"  # read by serving.middleware.route_template


class ScoringFastPath:
    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state  # the FastAPI app's state: keys, manager, scoring
        self.routes: dict[str, Callable[..., Awaitable[Any]]] = {
            "/v1/score": lambda s, body, who: state.scoring.score_one(s, body, who),
            "/v1/score/batch": lambda s, body, who: state.scoring.score_batch(s, body, who),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = scope["path"]
        try:
            principal = authorize(authenticate(self.state.keys, _api_key(scope)), "score")
            served = served_model(self.state.manager)
            body = await _read_body(receive)
            if body is None:  # the client went away
                return
            payload, status = orjson.dumps(await handler(served, body, principal)), 200
        except ApiError as err:
            await send_json(send, err.status, err.body(), err.headers)
            return
        await send_json(send, status, payload)


def _api_key(scope: Scope) -> str | None:
    # Read as latin-1, as Starlette reads the header for the FastAPI routes.
    presented = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
    return presented.decode("latin-1") if presented is not None else None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
