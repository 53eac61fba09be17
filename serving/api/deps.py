"""Dependencies, declared once: the settings, the model being served, the
scoring service, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from gendetect.config import Settings
from gendetect.errors import ModelNotReadyError
from serving.errors import ApiError
from serving.model_manager import ModelManager, ServedModel
from serving.scoring import ScoringService

_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="required on /v1/* when the server has an API key",
)


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _manager(request: Request) -> ModelManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]
ManagerDep = Annotated[ModelManager, Depends(_manager)]
ScoringDep = Annotated[ScoringService, Depends(_scoring)]


def _served(manager: ManagerDep) -> ServedModel:
    try:
        return manager.require()
    except ModelNotReadyError as exc:
        raise ApiError(503, "model_not_ready", str(exc), headers={"Retry-After": "2"}) from None


CurrentModel = Annotated[ServedModel, Depends(_served)]


def require_api_key(
    request: Request, key: Annotated[str | None, Security(_KEY_HEADER)] = None
) -> None:
    expected: bytes | None = request.app.state.api_key
    if expected is None:
        return
    # Constant-time comparison: response timing must not leak the key.
    if not key or not hmac.compare_digest(key.encode(), expected):
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header",
                       headers={"WWW-Authenticate": "APIKey"})


ApiKey = Depends(require_api_key)
