"""Late labels: confirmed outcomes that feed the terminals' delayed risk."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.api.deps import CurrentModel, ScoringDep
from serving.responses import ErrorResponse, LabelResult

router = APIRouter(tags=["feedback"])


@router.post("/labels", summary="Report confirmed labels (one object or a list)",
             responses={200: {"model": LabelResult}, 404: {"model": ErrorResponse},
                        409: {"model": ErrorResponse}})
async def labels(request: Request, served: CurrentModel, scoring: ScoringDep) -> Response:
    result = await scoring.add_labels(served, await request.body())
    return Response(orjson.dumps(result), media_type="application/json")
