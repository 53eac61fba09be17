"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.api.deps import ManagerDep
from serving.metrics import CONTENT_TYPE
from serving.responses import HealthStatus, ReadyStatus

router = APIRouter(tags=["health"])
# Apart, so that it can require the API key (ServingSettings.metrics_require_key).
metrics_router = APIRouter(tags=["health"])


def _json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


@router.get("/healthz", operation_id="healthz",
            summary="The process is alive", response_model=HealthStatus)
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.get("/readyz", operation_id="readyz",
            summary="A model is loaded, its state store answers, and so does the "
            "audit database (when the audit is on)",
            response_model=ReadyStatus, responses={503: {"model": ReadyStatus}})
async def readyz(request: Request, manager: ManagerDep) -> Response:
    served = manager.current
    if served is None:
        reason = manager.last_error or "model not loaded yet"
        return _json({"status": "loading", "reason": reason}, 503)
    if not manager.ready:
        return _json({"status": "loading",
                      "reason": "the registry helper's first check is running"}, 503)
    if served.online is not None:
        timeout = request.app.state.settings.state_timeout_seconds
        try:
            up = await asyncio.wait_for(asyncio.to_thread(served.online.ping), timeout * 2)
        except TimeoutError:
            up = False
        request.app.state.metrics.state_store_up(up)
        if not up:
            return _json({"status": "unavailable", "reason": "state store not answering",
                          "model": served.model_ref}, 503)
    stores = request.app.state.stores
    if stores.writer is not None:
        # Scoring needs the audit database: without it every score is a 503.
        up = await asyncio.to_thread(stores.ping)
        if not up:
            reason = stores.ping_problem or "audit database not answering"
            return _json({"status": "unavailable", "reason": reason,
                          "model": served.model_ref}, 503)
    return _json({"status": "ready", "model": served.model_ref})


@metrics_router.get("/metrics", operation_id="metrics",
                    summary="Prometheus metrics", response_class=Response,
                    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}}})
async def prometheus(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
