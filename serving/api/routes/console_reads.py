"""The reads the analyst console needs beyond the review routes (scope
review, read-only): the period's alert figures and where one decision came
from (the key that asked, hashed entity ids)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from gendetect.errors import InputError
from gendetect.schema import INT64_MAX
from gendetect.stores.alert_stats import MAX_DAYS, AlertStats, period
from gendetect.stores.origin import decision_origin
from serving.api.deps import ReviewKey, StoresDep
from serving.api.routes.review import read_store
from serving.errors import ApiError, from_core_error
from serving.request_models import IsoTime
from serving.responses import ErrorResponse

router = APIRouter(tags=["review"])


class DayCount(BaseModel):
    day: str = Field(description="UTC date")
    alerts: int
    reviewed: int
    open: int


class VersionPrecision(BaseModel):
    model_version: str
    alerts: int
    reviewed: int
    fraud: int
    genuine: int
    precision: float | None = Field(description="fraud / reviewed; null before any verdict")


class Bucket(BaseModel):
    label: str
    count: int


class TimeToVerdict(BaseModel):
    reviewed: int
    median_seconds: float | None
    p90_seconds: float | None
    buckets: list[Bucket]


class Backlog(BaseModel):
    open: int = Field(description="alerts of the period without a verdict")
    oldest_decided_at: str | None


class AlertStatsOut(BaseModel):
    since: str
    until: str
    days: list[DayCount]
    versions: list[VersionPrecision]
    time_to_verdict: TimeToVerdict
    backlog: Backlog


class DecisionOrigin(BaseModel):
    transaction_id: int
    key_name: str | None = Field(description="the name of the API key that asked")
    request_id: str | None
    entities: dict[str, str] = Field(description="entity field -> keyed hash (as audited)")


@router.get("/alerts/stats", operation_id="alert_stats", response_model=AlertStatsOut,
            summary="How the period's alerts fared: per day, precision per model "
            f"version, time to verdict, backlog (at most {MAX_DAYS} days)")
async def alert_stats(
    stores: StoresDep,
    _caller: ReviewKey,
    since: Annotated[IsoTime | None, Query(description="decided at or after (ISO 8601); "
                                           "default: 7 days before until")] = None,
    until: Annotated[IsoTime | None, Query(description="decided before (ISO 8601); "
                                           "default: now")] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    try:
        start, end = period(since, until, datetime.now(UTC).replace(tzinfo=None))
    except (InputError, OverflowError) as exc:
        if isinstance(exc, OverflowError):
            exc = InputError("out of range", field="since")
        raise from_core_error(exc) from None
    stats = AlertStats(stores.engine)
    return await read_store(stores, stats.summary, start, end, model_version)  # type: ignore[no-any-return]


@router.get("/decisions/{transaction_id}/origin", operation_id="get_decision_origin",
            response_model=DecisionOrigin, responses={404: {"model": ErrorResponse}},
            summary="Where a stored decision came from: the key's name, the request "
            "id, the entity ids as keyed hashes")
async def origin(
    stores: StoresDep,
    _caller: ReviewKey,
    transaction_id: Annotated[int, Path(ge=0, le=INT64_MAX)],
) -> dict[str, Any]:
    found = await read_store(stores, decision_origin, stores.engine, transaction_id)
    if found is None:
        raise ApiError(404, "unknown_transaction", "no decision stored for this transaction id",
                       [{"field": "transaction_id", "message": "unknown"}])
    return found  # type: ignore[no-any-return]
