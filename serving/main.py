"""The scoring API's app factory: settings, API keys, the model manager,
the database (audit, verdicts), the scoring and feedback services,
middleware and one router per resource. What each part does lives in its
own module (see the room table in the architecture document)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI

from gendetect import __version__
from gendetect.config import get_settings
from serving.api.deps import ApiKey
from serving.api.routes import console_reads, feedback, health, model, review, score
from serving.auth import ConfigurationError, KeyRing
from serving.console import console_router
from serving.errors import add_error_handlers
from serving.fastpath import ScoringFastPath
from serving.feedback import FeedbackService
from serving.metrics import Metrics
from serving.middleware import Observability, RequestGuard
from serving.model_manager import ModelManager
from serving.online_state import check_state_key
from serving.openapi import build_openapi, docs_router
from serving.request_id import RequestId
from serving.responses import ErrorResponse
from serving.scoring import ScoringService, body_limits
from serving.settings import ServingSettings
from serving.snapshots import snapshot_loop
from serving.stores import Stores
from serving.tracing import setup_tracing, stop_tracing

__all__ = ["ConfigurationError", "create_app"]

log = logging.getLogger("gendetect.serving")


def create_app(settings: ServingSettings | None = None, *, fast_path: bool = True,
               span_exporter: Any = None) -> FastAPI:
    """The API. `span_exporter` receives the traces instead of OTLP (tests);
    passing one turns tracing on whatever GENDETECT_OTEL_ENABLED says."""
    settings = settings or get_settings(ServingSettings)
    keys = KeyRing.from_settings(settings)  # refuses no keys, unless GENDETECT_AUTH=disabled
    # A state written with another hash key stops the start here (before the
    # port opens, exit 2 from `gendetect serve`), not at the model load in
    # the background, where it would only be retried.
    check_state_key(settings)
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    stores = Stores(settings)
    if stores.writer is not None:
        metrics.watch_audit(stores.writer)
    metrics.watch_unseen_levels(lambda: _unseen_levels(manager))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: the process answers /healthz at once and
        # /readyz says 503 until the model is in.
        # The database schema likewise: scoring answers 503 until it is ready.
        tasks = [asyncio.create_task(manager.load_until_ready(), name="model-load"),
                 asyncio.create_task(stores.prepare(), name="database-schema"),
                 asyncio.create_task(snapshot_loop(manager, settings), name="state-snapshot")]
        if settings.model_poll_seconds > 0:
            tasks.append(asyncio.create_task(
                manager.follow_registry(settings.model_poll_seconds), name="registry-follow"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Final snapshot, so a restart continues every entity's history;
            # the audit writer commits what is queued.
            await asyncio.to_thread(manager.close)
            await asyncio.to_thread(stores.close)
            stop_tracing(getattr(app.state, "tracer_provider", None))

    app = FastAPI(
        title="gendetect scoring API",
        version=__version__,
        description="Fraud scores from generative models. Request fields follow the served "
        "model's schema; errors are JSON and name the offending field.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,  # served offline, see serving.openapi
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.manager = manager
    app.state.stores = stores
    app.state.scoring = ScoringService(settings, metrics, stores)
    metrics.watch_batcher(app.state.scoring.batcher)
    app.state.feedback = FeedbackService(settings, stores)
    app.state.keys = keys
    add_error_handlers(app)

    # Every /v1 route authenticates (401); each needs its scope (403).
    protected = [ApiKey] if not keys.is_open else []
    errors = {code: {"model": ErrorResponse} for code in (401, 403, 409, 413, 415, 422, 503)}
    if keys.is_open:
        errors.pop(401)
        errors.pop(403)
    v1 = APIRouter(prefix="/v1", dependencies=protected, responses=errors)  # type: ignore[arg-type]
    for resource in (score, feedback, console_reads, review, model):
        v1.include_router(resource.router)
    app.include_router(health.router)
    app.include_router(health.metrics_router,
                       dependencies=protected if settings.metrics_require_key else [])
    app.include_router(v1)
    app.include_router(docs_router(app, protected if settings.docs_require_key else []))
    app.include_router(console_router(app))
    app.openapi = lambda: build_openapi(app, manager)  # type: ignore[method-assign]

    if fast_path:  # innermost: after the body limits, inside metrics and logs
        app.add_middleware(ScoringFastPath, state=app.state)
    app.add_middleware(RequestGuard, limits=body_limits(settings),
                       body_timeout=settings.body_timeout_seconds)
    app.add_middleware(Observability, metrics=metrics, current_version=manager.current_version)
    app.add_middleware(RequestId)  # outermost: every log line of the request carries its id
    if settings.otel_enabled or span_exporter is not None:
        app.state.tracer_provider = setup_tracing(app, span_exporter)
    return app



def _unseen_levels(manager: ModelManager) -> dict[str, int]:
    """The served model's count of unseen categorical levels (none before
    a model is loaded)."""
    served = manager.current
    pipeline = served.bundle.pipeline if served is not None else None
    return pipeline.unseen_levels() if pipeline is not None else {}
