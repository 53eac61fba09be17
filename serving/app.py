"""The scoring API: a FastAPI app factory.

Design notes (why it looks the way it does):
- Request bodies are read as bytes and validated with the request models
  generated from the served bundle's schema (`model_validate_json`). The
  models can change when a new model version is swapped in, which FastAPI's
  decorator-time body parameters could not follow, and pydantic's JSON parser
  turns NaN/Infinity literals into a 422 naming the field. The OpenAPI
  document is rebuilt from the current models.
- The single-record path never builds a DataFrame: bytes -> validated dict ->
  online window features -> `bundle.score_records` -> orjson bytes. Features
  and scoring come only from the bundle (one source of truth).
- Hot path: POST /v1/score and /v1/score/batch are answered by the outer
  ASGI middleware (`ServingMiddleware`) without FastAPI's routing and
  dependency machinery, which costs more CPU per request than validating and
  serialising a record. The FastAPI routes of the same paths run the same
  `Scorer` methods; they document the endpoints and answer if the fast path
  is switched off (`create_app(fast_path=False)`).
- Scoring runs on the event loop: it takes well under a millisecond and a
  thread hop would cost about as much. Large batches and network-backed
  state stores run in a worker thread so health checks stay responsive.
- Logs carry route, status, latency and model version, never record fields:
  several of them are personal data (the schema marks them `pii`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gendetect import __version__
from gendetect.config import Settings, get_settings
from gendetect.errors import InputError, ModelNotReadyError
from serving.metrics import CONTENT_TYPE, Metrics
from serving.model_manager import ModelManager, ServedModel
from serving.request_models import (
    BatchResponse,
    ErrorResponse,
    LabelIn,
    LabelResult,
    ModelInfo,
    ScoreResponse,
    add_request_bodies,
    error_fields,
    schema_fields,
)

log = logging.getLogger("gendetect.serving")
access_log = logging.getLogger("gendetect.serving.access")

# Batches up to this size are scored on the event loop (a few ms at most).
INLINE_BATCH_MAX = 32
# A generous bound on one JSON record: bodies beyond it (times the batch
# limit for batches) are refused with 413 before they are read in full.
MAX_RECORD_BYTES = 16_384

_LABEL = TypeAdapter(LabelIn)
_LABELS = TypeAdapter(list[LabelIn])
_JSON = (b"content-type", b"application/json")


# ------------------------------------------------------------------ errors
class ApiError(Exception):
    """An error answered as {"error": {"code", "message", "fields"?}}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        self.headers = headers or {}

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return orjson.dumps({"error": error})

    def response(self) -> Response:
        return Response(self.body(), self.status, self.headers, media_type="application/json")


def _invalid(exc: ValidationError) -> ApiError:
    fields = error_fields(exc)
    names = ", ".join(f["field"] for f in fields[:5])
    return ApiError(422, "invalid_input", f"invalid input: {names}", fields)


def _input_error(exc: InputError) -> ApiError:
    field = exc.field or "body"
    return ApiError(422, "invalid_input", f"{field}: {exc.message}",
                    [{"field": field, "message": exc.message}])


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


# ----------------------------------------------------------------- scoring
class Scorer:
    """What the scoring endpoints do, independent of how the request arrived
    (fast path or FastAPI route): bytes in, JSON bytes out, ApiError on
    failure."""

    def __init__(self, settings: Settings, manager: ModelManager, metrics: Metrics) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics
        self.single_limit = MAX_RECORD_BYTES
        self.batch_limit = settings.max_batch_size * MAX_RECORD_BYTES + 1024
        key = settings.api_key
        self._key = key.get_secret_value().encode() if key is not None else None

    def check_key(self, key: bytes | None) -> None:
        if self._key is None:
            return
        # Constant-time comparison: response timing must not leak the key.
        if key is None or not hmac.compare_digest(key, self._key):
            raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header",
                           headers={"WWW-Authenticate": "APIKey"})

    def served(self) -> ServedModel:
        try:
            return self.manager.require()
        except ModelNotReadyError as exc:
            raise ApiError(503, "model_not_ready", str(exc)) from None

    async def score_one(self, body: bytes) -> bytes:
        served = self.served()
        if len(body) > self.single_limit:
            raise ApiError(413, "payload_too_large", "one record is at most "
                           f"{self.single_limit} bytes; use /v1/score/batch for many")
        try:
            record = served.record_model.model_validate_json(body).model_dump(by_alias=True)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if served.online is None or served.online.runs_inline:
            decisions = self._score(served, [record])
        else:
            decisions = await asyncio.to_thread(self._score, served, [record])
        return orjson.dumps(decisions[0])

    async def score_batch(self, body: bytes) -> bytes:
        served = self.served()
        if len(body) > self.batch_limit:
            raise self._too_large()
        try:
            batch = served.batch_model.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "too_long" and e["loc"] == ("records",) for e in exc.errors()):
                raise self._too_large() from None
            raise _invalid(exc) from None
        records = [r.model_dump(by_alias=True) for r in batch.records]  # type: ignore[attr-defined]
        inline = len(records) <= INLINE_BATCH_MAX and (
            served.online is None or served.online.runs_inline
        )
        if inline:
            decisions = self._score(served, records)
        else:
            decisions = await asyncio.to_thread(self._score, served, records)
        return orjson.dumps({"results": decisions, "model": served.model_ref})

    def _too_large(self) -> ApiError:
        limit = self.settings.max_batch_size
        return ApiError(413, "batch_too_large", f"at most {limit} records per batch",
                        [{"field": "records", "message": f"more than {limit} records"}])

    def _score(self, served: ServedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            windows = served.online.compute(records) if served.online is not None else None
            decisions = served.bundle.score_records(records, windows)
        except InputError as exc:
            raise _input_error(exc) from None
        ref, id_field, flagged = served.model_ref, served.id_field, 0
        for decision, record in zip(decisions, records, strict=True):
            decision["model"] = ref
            if id_field is not None and record.get(id_field) is not None:
                decision["transaction_id"] = record[id_field]
            flagged += decision["is_fraud"]
        self.metrics.observe_scores(len(records), flagged)
        return decisions

    async def add_labels(self, body: bytes) -> bytes:
        online = self.served().online
        if online is None:
            raise ApiError(409, "labels_not_used",
                           "the served model has no behaviour features that use labels")
        many = body.lstrip()[:1] == b"["
        try:
            items = _LABELS.validate_json(body) if many else [_LABEL.validate_json(body)]
        except ValidationError as exc:
            raise _invalid(exc) from None
        now = datetime.now(UTC)

        def apply() -> list[int | str]:
            return [
                item.transaction_id
                for item in items
                if not online.add_label(item.transaction_id, bool(item.is_fraud),
                                        item.labelled_at or now)
            ]

        try:
            unknown = apply() if online.runs_inline else await asyncio.to_thread(apply)
        except InputError as exc:
            raise _input_error(exc) from None
        if not many and unknown:
            raise ApiError(404, "unknown_transaction",
                           "no scored transaction with this id in the online state",
                           [{"field": "transaction_id", "message": "unknown"}])
        return orjson.dumps({"accepted": len(items) - len(unknown), "unknown": unknown})


# ------------------------------------------------------------------- app
def create_app(settings: Settings | None = None, *, fast_path: bool = True) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    scorer = Scorer(settings, manager, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: the process answers /healthz at once and
        # /readyz says 503 until the model is in.
        tasks = [asyncio.create_task(manager.load_until_ready(), name="model-load"),
                 asyncio.create_task(_snapshot_loop(manager, settings), name="state-snapshot")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Final snapshot, so a restart continues every entity's history.
            await asyncio.to_thread(manager.close)

    app = FastAPI(
        title="gendetect scoring API",
        version=__version__,
        description="Fraud scores from generative models. Request fields follow the served "
        "model's schema; errors are JSON and name the offending field.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.manager = manager
    _add_error_handlers(app)
    app.add_middleware(ServingMiddleware, scorer=scorer, fast_path=fast_path)
    app.include_router(_health_router(manager, metrics))
    app.include_router(_v1_router(settings, manager, scorer))
    app.openapi = lambda: _openapi(app, manager)  # type: ignore[method-assign]
    return app


async def _snapshot_loop(manager: ModelManager, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.state_snapshot_seconds)
        served = manager.current
        if served is not None and served.online is not None:
            try:
                await asyncio.to_thread(served.online.snapshot)
            except Exception:
                log.exception("state snapshot failed")


def _health_router(manager: ModelManager, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get("/readyz", summary="A model is loaded and requests can be scored")
    async def readyz() -> Response:
        served = manager.current
        if served is None:
            reason = manager.last_error or "model not loaded yet"
            return json_response({"status": "loading", "reason": reason}, 503)
        return json_response({"status": "ready", "model": served.model_ref})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


def _v1_router(settings: Settings, manager: ModelManager, scorer: Scorer) -> APIRouter:
    dependencies = [Depends(_api_key_dependency(scorer))] if settings.api_key else []
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (401, 413, 422, 503)
    }
    router = APIRouter(prefix="/v1", dependencies=dependencies, responses=errors)

    @router.post("/score", summary="Score one record", tags=["scoring"],
                 responses={200: {"model": ScoreResponse}})
    async def score(request: Request) -> Response:
        return _json_bytes(await scorer.score_one(await request.body()))

    @router.post("/score/batch", summary="Score records in order (later ones see the "
                 "earlier ones in their behaviour features)", tags=["scoring"],
                 responses={200: {"model": BatchResponse}})
    async def score_batch(request: Request) -> Response:
        return _json_bytes(await scorer.score_batch(await request.body()))

    @router.get("/model", summary="The model being served", tags=["model"],
                response_model=ModelInfo)
    async def model_info() -> Response:
        return json_response(_model_info(scorer.served()))

    @router.post("/model/reload", summary="Load what the registry URI points at now "
                 "(e.g. after the champion alias moved); requests keep flowing", tags=["model"])
    async def reload(force: bool = False) -> Response:
        try:
            result = await manager.reload(force=force)
        except Exception as exc:
            # The previous model (if any) keeps serving.
            raise ApiError(503, "reload_failed", str(exc)) from None
        return json_response(
            {"changed": result.changed, "previous": result.previous, "current": result.current}
        )

    @router.post("/labels", summary="Report confirmed labels (one object or a list)",
                 tags=["feedback"], responses={200: {"model": LabelResult}, 404: {}, 409: {}})
    async def labels(request: Request) -> Response:
        return _json_bytes(await scorer.add_labels(await request.body()))

    return router


def _json_bytes(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _api_key_dependency(scorer: Scorer) -> Callable[[str | None], None]:
    header = APIKeyHeader(name="X-API-Key", auto_error=False,
                          description="required on /v1/* when the server has an API key")

    def check(key: str | None = Security(header)) -> None:
        scorer.check_key(key.encode() if key is not None else None)

    return check


def _model_info(served: ServedModel) -> dict[str, Any]:
    bundle = served.bundle
    return ModelInfo(
        name=served.ref.name,
        version=served.ref.version,
        alias=served.ref.alias,
        run_id=served.ref.run_id,
        kind=bundle.kind,
        threshold=float(bundle.threshold_ or 0.0),
        alert_rate=bundle.alert_rate,
        feature_names=bundle.feature_names,
        schema_name=bundle.schema.name,
        schema_fields=schema_fields(bundle.schema),
        window_features=served.online is not None,
        trained_at=served.trained_at,
        loaded_at=served.loaded_at.isoformat(),
    ).model_dump()


def _openapi(app: FastAPI, manager: ModelManager) -> dict[str, Any]:
    """FastAPI's document plus the request schemas of the model now served;
    rebuilt when the served version changes (the schema may have too)."""
    served = manager.current
    key = served.ref.version if served is not None else None
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    if served is not None:
        add_request_bodies(doc, served.record_model, served.batch_model)
    app.state.openapi_cache = (key, doc)
    return doc


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers).response()

    async def validation_error(request: Request, exc: Exception) -> Response:
        # Query parameters (request bodies are validated by the Scorer).
        assert isinstance(exc, RequestValidationError)
        fields = [{"field": str(e["loc"][-1]), "message": str(e["msg"])} for e in exc.errors()]
        return ApiError(422, "invalid_input", "invalid request", fields).response()

    # Anything else is answered by ServingMiddleware (500, logged without
    # the exception message).
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _log_unexpected(exc: Exception, route: str) -> None:
    """The traceback's frames but not the exception's message or arguments:
    those may quote record values (a KeyError on a customer id, say)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s\n%s", type(exc).__name__, route, frames)


# ------------------------------------------------------------ middleware
class ServingMiddleware:
    """Per request: metrics and one access log line (route template, status,
    latency, model version; never the body). Plain ASGI, not
    BaseHTTPMiddleware, which would add a task and a stream per request.

    With `fast_path`, it also answers the two scoring routes itself (see the
    module notes); everything else goes to FastAPI.
    """

    def __init__(self, app: ASGIApp, scorer: Scorer, fast_path: bool = True) -> None:
        self.app = app
        self.scorer = scorer
        self.metrics = scorer.metrics
        self.manager = scorer.manager
        self.fast: dict[str, tuple[Callable[[bytes], Any], int]] = {}
        if fast_path:
            self.fast = {
                "/v1/score": (scorer.score_one, scorer.single_limit),
                "/v1/score/batch": (scorer.score_batch, scorer.batch_limit),
            }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        route = "unmatched"
        fast = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            fast = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
            if fast is not None:
                route = scope["path"]
                await self._answer(scope, receive, send_status, *fast)
            else:
                await self.app(scope, receive, send_status)
                route = getattr(scope.get("route"), "path", None) or (
                    # Starlette routes (/docs, /openapi.json) have fixed paths.
                    scope["path"] if "endpoint" in scope else "unmatched"
                )
        except Exception as exc:
            # Answered here rather than by Starlette's ServerErrorMiddleware,
            # which re-raises to the server, which logs the exception message.
            _log_unexpected(exc, route if fast is not None else scope["path"])
            if status == 0:
                error = ApiError(500, "internal_error", "internal error")
                await _send_json(send_status, 500, error.body())
            status = 500
        finally:
            elapsed = time.perf_counter() - started
            status = status or 499  # the client left before an answer
            self.metrics.observe_request(route, scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                served = self.manager.current
                version = served.ref.version if served is not None else "-"
                access_log.info("%s %s %d %.2fms model=%s", scope["method"], route, status,
                                elapsed * 1000, version)

    async def _answer(self, scope: Scope, receive: Receive, send: Send,
                      handler: Callable[[bytes], Any], limit: int) -> None:
        headers: Sequence[tuple[bytes, bytes]] = scope["headers"]
        key = next((v for k, v in headers if k == b"x-api-key"), None)
        try:
            self.scorer.check_key(key)
            body = await _read_body(receive, limit)
            if body is None:  # the client went away
                return
            payload, status, extra = await handler(body), 200, []
        except ApiError as err:
            payload, status = err.body(), err.status
            extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await _send_json(send, status, payload, extra)


async def _send_json(send: Send, status: int, payload: bytes,
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    length = (b"content-length", str(len(payload)).encode())
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, length, *extra]})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body above {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
