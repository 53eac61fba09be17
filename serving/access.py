"""The checks before a /v1 route runs, written once for both ways in: the
FastAPI dependencies (serving.api.deps) and the scoring fast path
(serving.fastpath). Who calls (401), whether the key carries the route's
scope (403), whether a model is served (503): the same ApiError, status and
message whichever path answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gendetect.errors import ModelNotReadyError
from serving.errors import ApiError

if TYPE_CHECKING:
    from serving.auth import KeyRing, Principal
    from serving.model_manager import ModelManager, ServedModel
    from serving.settings import Scope


def authenticate(keys: KeyRing, presented: str | None) -> Principal:
    """The caller of the X-API-Key value `presented` (401 when missing or wrong)."""
    principal = keys.identify(presented)
    if principal is None:
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header",
                       headers={"WWW-Authenticate": "APIKey"})
    return principal


def authorize(principal: Principal, scope: Scope) -> Principal:
    """`principal`, when its key carries `scope` (403 otherwise)."""
    if not principal.may(scope):
        raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
    return principal


def served_model(manager: ModelManager) -> ServedModel:
    """The model being served (503 with Retry-After while there is none)."""
    try:
        return manager.require()
    except ModelNotReadyError as exc:
        raise ApiError(503, "model_not_ready", str(exc), headers={"Retry-After": "2"}) from None
