"""The error envelope: every error is `{"error": {"code", "message",
"fields"?}}` with a machine-readable code and, for bad input, the fields."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gendetect.errors import DuplicateTransactionError, InputError, StateUnavailableError
from serving.request_models import error_fields

log = logging.getLogger("gendetect.serving")


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


def invalid(exc: ValidationError, *, prefix: str = "") -> ApiError:
    fields = error_fields(exc, prefix=prefix)
    names = ", ".join(f["field"] for f in fields[:5])
    return ApiError(422, "invalid_input", f"invalid input: {names}", fields)


def from_core_error(exc: Exception) -> ApiError:
    """The core's user-facing errors as HTTP errors (never with record values)."""
    if isinstance(exc, InputError):
        field = exc.field or "body"
        return ApiError(422, "invalid_input", f"{field}: {exc.message}",
                        [{"field": field, "message": exc.message}])
    if isinstance(exc, DuplicateTransactionError):
        field = exc.field or "transaction_id"
        return ApiError(409, "duplicate_transaction", exc.message,
                        [{"field": field, "message": "already recorded with different content"}])
    if isinstance(exc, StateUnavailableError):
        return ApiError(503, "state_unavailable",
                        "the behaviour-state store did not answer in time; nothing was recorded",
                        headers={"Retry-After": "1"})
    raise TypeError(f"not a core error: {type(exc).__name__}")


CORE_ERRORS = (InputError, DuplicateTransactionError, StateUnavailableError)


def log_unexpected(exc: BaseException, route: str) -> None:
    """The traceback's frames but not the exception's message or arguments:
    those may quote record values (a KeyError on a customer id, say)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s\n%s", type(exc).__name__, route, frames)


def add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers).response()

    async def validation_error(request: Request, exc: Exception) -> Response:
        # Query and header parameters (bodies are validated by the service).
        assert isinstance(exc, RequestValidationError)
        fields = [{"field": str(e["loc"][-1]), "message": str(e["msg"])} for e in exc.errors()]
        return ApiError(422, "invalid_input", "invalid request", fields).response()

    # Anything else is answered by serving.middleware (500, logged without
    # the exception message).
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
