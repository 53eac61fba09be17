"""The model being served (any key), and swapping it (scope admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.api.deps import AdminKey, CurrentModel, ManagerDep
from serving.errors import ApiError
from serving.model_manager import ModelManager, ServedModel
from serving.responses import ModelInfo, ReloadResult, schema_fields

router = APIRouter(tags=["model"])


@router.get("/model", operation_id="get_model",
            summary="The model being served", response_model=ModelInfo)
async def model_info(served: CurrentModel, manager: ManagerDep) -> dict[str, Any]:
    return describe(served, manager)


@router.post("/model/reload", operation_id="reload_model",
             summary="Load what the registry URI points at now (e.g. after "
             "the champion alias moved); requests keep flowing", response_model=ReloadResult)
async def reload(manager: ManagerDep, _caller: AdminKey, force: bool = False) -> dict[str, Any]:
    try:
        result = await manager.reload(force=force)
    except Exception as exc:
        # The previous model (if any) keeps serving.
        raise ApiError(503, "reload_failed", str(exc)) from None
    return {"changed": result.changed, "previous": result.previous, "current": result.current}


def describe(served: ServedModel, manager: ModelManager) -> dict[str, Any]:
    bundle = served.bundle
    check = manager.alias_check
    holds = check is not None and check.holds
    return ModelInfo(
        name=served.ref.name,
        version=served.ref.version,
        uri=manager.settings.resolved_model_uri,
        alias=served.ref.alias if holds else None,
        alias_checked_at=check.checked_at.isoformat() if check is not None else None,
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
