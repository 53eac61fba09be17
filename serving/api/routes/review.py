"""What analysts read: the review queue and one transaction's decision with
its verdict history (scope review)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from gendetect.errors import InputError, StoreUnavailableError
from gendetect.schema import INT64_MAX
from gendetect.stores.review import AlertFilter, Order
from serving.api.deps import ReviewKey, StoresDep
from serving.errors import ApiError, from_core_error
from serving.feedback_models import AlertPage, DecisionHistory
from serving.request_models import IsoTime
from serving.responses import ErrorResponse
from serving.stores import Stores, unavailable

router = APIRouter(tags=["review"])


async def read_store(stores: Stores, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A read of the review store, answered within the database timeout
    (GENDETECT_DATABASE_TIMEOUT_SECONDS: the longest any request waits on the
    database). A read left running in its thread past it changes nothing."""
    stores.require_ready("database_unavailable")
    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args, **kwargs),
                                      stores.settings.database_timeout_seconds)
    except StoreUnavailableError as exc:
        raise unavailable("database_unavailable", exc) from None
    except TimeoutError:
        raise unavailable("database_unavailable",
                          StoreUnavailableError("the database did not answer in time")) from None
    except InputError as exc:
        raise from_core_error(exc) from None


@router.get("/alerts", operation_id="list_alerts",
            summary="The review queue: flagged decisions without a verdict, "
            "newest or riskiest first", response_model=AlertPage)
async def alerts(
    stores: StoresDep,
    _caller: ReviewKey,
    since: Annotated[IsoTime | None, Query(description="decided at or after (ISO 8601)")
                     ] = None,
    until: Annotated[IsoTime | None, Query(description="decided before (ISO 8601)")] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    reason: Annotated[str | None, Query(
        min_length=1, max_length=128, pattern=r"^[^|]+$",
        description="only alerts with this reason among their top reasons")] = None,
    order: Annotated[Order, Query(
        description="newest: decided_at, then id, descending. riskiest: risk (calibrated, so "
        "model versions compare), then decided_at and id, descending")] = "newest",
    cursor: Annotated[str | None, Query(
        max_length=200, description="next_cursor of the previous page, with the same order "
        "(a cursor of the other order is a 422 naming `cursor`)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    flt = AlertFilter(since=since, until=until, model_version=model_version, reason=reason)
    page, nxt = await read_store(stores, stores.review.alerts, flt, limit=limit, cursor=cursor,
                            order=order)
    return {"alerts": page, "next_cursor": nxt}


@router.get("/decisions/{transaction_id}", operation_id="get_decision",
            summary="A transaction's stored decision and its "
            "verdict history", response_model=DecisionHistory,
            responses={404: {"model": ErrorResponse}})
async def decision(
    stores: StoresDep,
    _caller: ReviewKey,
    transaction_id: Annotated[int, Path(ge=0, le=INT64_MAX)],
) -> dict[str, Any]:
    found, history = await read_store(stores, stores.review.decision, transaction_id)
    if found is None and not history:
        raise ApiError(404, "unknown_transaction", "no decision or verdict for this "
                       "transaction id", [{"field": "transaction_id", "message": "unknown"}])
    return {"transaction_id": transaction_id, "decision": found, "verdicts": history,
            "label": history[-1]["label"] if history else None}
