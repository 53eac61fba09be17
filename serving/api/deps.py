"""Dependencies, declared once: the settings, the model being served, the
services, and the key check with its scopes (the checks themselves are
serving.access, shared with the scoring fast path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.access import authenticate, authorize, served_model
from serving.auth import KeyRing, Principal
from serving.feedback import FeedbackService
from serving.model_manager import ModelManager, ServedModel
from serving.scoring import ScoringService
from serving.settings import Scope, ServingSettings
from serving.stores import Stores

# Every dependency is `async def` on purpose: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request
# (most of a request's cost, measured), and none of these ever blocks.
_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="required on /v1/* (unless the server runs with GENDETECT_AUTH=disabled); "
    "each route needs a scope",
)


async def _settings(request: Request) -> ServingSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _manager(request: Request) -> ModelManager:
    return request.app.state.manager  # type: ignore[no-any-return]


async def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring  # type: ignore[no-any-return]


async def _feedback(request: Request) -> FeedbackService:
    return request.app.state.feedback  # type: ignore[no-any-return]


async def _stores(request: Request) -> Stores:
    return request.app.state.stores  # type: ignore[no-any-return]


SettingsDep = Annotated[ServingSettings, Depends(_settings)]
ManagerDep = Annotated[ModelManager, Depends(_manager)]
ScoringDep = Annotated[ScoringService, Depends(_scoring)]
FeedbackDep = Annotated[FeedbackService, Depends(_feedback)]
StoresDep = Annotated[Stores, Depends(_stores)]


async def _served(manager: ManagerDep) -> ServedModel:
    return served_model(manager)


CurrentModel = Annotated[ServedModel, Depends(_served)]


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(_KEY_HEADER)] = None
) -> Principal:
    """Who calls (401 for a missing or wrong key); on every /v1 route."""
    ring: KeyRing = request.app.state.keys
    return authenticate(ring, key)


ApiKey = Depends(require_api_key)
Caller = Annotated[Principal, Depends(require_api_key)]


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's key must carry `scope` (403 otherwise)."""

    async def check(principal: Caller) -> Principal:
        return authorize(principal, scope)

    check.__name__ = f"require_{scope}_scope"
    return check


def scoped(scope: Scope) -> Any:
    """`Annotated[Principal, ...]` for a route parameter that needs `scope`."""
    return Annotated[Principal, Depends(require_scope(scope))]


ScoreKey = scoped("score")
FeedbackKey = scoped("feedback")
ReviewKey = scoped("review")
AdminKey = scoped("admin")
