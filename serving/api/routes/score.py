"""Scoring: one record, or a batch scored in order (scope score)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.api.deps import CurrentModel, ScoreKey, ScoringDep
from serving.responses import BatchResponse, ScoreResponse

router = APIRouter(tags=["scoring"])


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("/score", operation_id="score",
             summary="Score one record", responses={200: {"model": ScoreResponse}})
async def score(request: Request, caller: ScoreKey, served: CurrentModel,
                scoring: ScoringDep) -> Response:
    # The body is read as bytes and validated with the request model of the
    # model served now (it may change on a hot swap); see serving.openapi.
    return _json(await scoring.score_one(served, await request.body(), caller))


@router.post("/score/batch", operation_id="score_batch",
             summary="Score records in order (later ones see the earlier "
             "ones in their behaviour features)", responses={200: {"model": BatchResponse}})
async def score_batch(request: Request, caller: ScoreKey, served: CurrentModel,
                      scoring: ScoringDep) -> Response:
    return _json(await scoring.score_batch(served, await request.body(), caller))
