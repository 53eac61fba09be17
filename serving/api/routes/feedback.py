"""Verdicts and confirmed labels: one intake (serving.feedback)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.api.deps import CurrentModel, FeedbackDep, FeedbackKey
from serving.feedback_models import FeedbackResult
from serving.responses import ErrorResponse, LabelResult

router = APIRouter(tags=["feedback"])
_NOT_FOUND = {404: {"model": ErrorResponse, "description": "one verdict, for a transaction "
                    "this service never scored (nothing stored)"}}


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("/feedback", operation_id="post_verdicts",
             summary="Analyst verdicts (one object or a list); scope feedback",
             responses={200: {"model": FeedbackResult}, **_NOT_FOUND})
async def feedback(request: Request, caller: FeedbackKey, served: CurrentModel,
                   service: FeedbackDep) -> Response:
    return _json(await service.feedback(served, await request.body(), caller))


@router.post("/labels", operation_id="post_labels",
             summary="Confirmed labels (alias of /v1/feedback with the label "
             "body); scope feedback", responses={200: {"model": LabelResult}, **_NOT_FOUND})
async def labels(request: Request, caller: FeedbackKey, served: CurrentModel,
                 service: FeedbackDep) -> Response:
    return _json(await service.labels(served, await request.body(), caller))
