"""The scoring service: what the scoring and label routes do, independent of
HTTP. Bytes in (validated with the request models generated from the served
schema), decisions out.

- The single-record path never builds a DataFrame: bytes -> validated dict ->
  online window features -> `bundle.score_records`. Decisions are assembled
  by the bundle (one source of truth); the service only adds the request's
  own fields (the model reference and the transaction id).
- Scoring runs on the event loop when the state store is in memory: it takes
  well under a millisecond and a thread hop would cost about as much. Large
  batches and network-backed stores (Redis) run in a worker thread so that
  health checks stay responsive.
- Nothing is recorded for a request that fails validation: the whole body is
  validated before the state store is touched. A transaction id that is
  already recorded is an idempotent retry when its content is the same (the
  same decision comes back, counted once) and a 409 when it differs.
- With the audit on (serving.stores), every decision is committed to the
  database before it is returned (group commit, gendetect.stores.audit), and
  a retried transaction gets the stored decision back exactly, even if
  another model version is served since. The database unreachable: 503
  `audit_unavailable`, and nothing is returned that was not stored. The
  behaviour state has recorded the transaction by then; a retry with the
  same content is recognised there and counted once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from gendetect import drift
from gendetect.config import Settings
from gendetect.drift import LiveDrift
from serving.auth import Principal
from serving.errors import CORE_ERRORS, ApiError, from_core_error, invalid
from serving.metrics import Metrics
from serving.model_manager import ServedModel
from serving.stores import Stores

# Batches up to this size are scored on the event loop (a few ms at most).
INLINE_BATCH_MAX = 32
# A generous bound on one JSON record: bodies beyond it (times the batch
# limit for batches) are refused with 413 before they are read.
MAX_RECORD_BYTES = 16_384


def body_limits(settings: Settings) -> dict[str, int]:
    """Body limit per POST route (the RequestGuard middleware enforces them)."""
    from serving.feedback import feedback_body_limits

    return {
        "/v1/score": MAX_RECORD_BYTES,
        "/v1/score/batch": settings.max_batch_size * MAX_RECORD_BYTES + 1024,
        **feedback_body_limits(settings),
    }


class ScoringService:
    def __init__(self, settings: Settings, metrics: Metrics, stores: Stores) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stores = stores
        # Drift of what the served bundle scores (a new one per model swap).
        self._drift: LiveDrift | None = None
        self._drift_level = drift.level_from_env()
        self._drift_rows = drift.window_rows_from_env()

    async def score_one(self, served: ServedModel, body: bytes,
                        caller: Principal) -> dict[str, Any]:
        try:
            record = served.record_model.model_validate_json(body).model_dump(by_alias=True)
        except ValidationError as exc:
            raise invalid(exc) from None
        decided_at = datetime.now(UTC)
        inline = served.online is None or served.online.runs_inline
        decisions = await self._run(inline, served, [record])
        stored = await self.stores.audit(served.bundle.schema, [record], decisions, decided_at,
                                         caller.name)
        return stored[0]

    async def score_batch(self, served: ServedModel, body: bytes,
                          caller: Principal) -> dict[str, Any]:
        try:
            batch = served.batch_model.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "too_long" and e["loc"] == ("records",) for e in exc.errors()):
                limit = self.settings.max_batch_size
                # 422, not 413: the document says maxItems, so this is a body
                # that violates the schema (413 is for bytes beyond the limit).
                raise ApiError(422, "batch_too_large", f"at most {limit} records per batch",
                               [{"field": "records", "message": f"more than {limit} records"}],
                               ) from None
            raise invalid(exc) from None
        records = [r.model_dump(by_alias=True) for r in batch.records]  # type: ignore[attr-defined]
        _check_batch_ids(records, served.id_field)
        decided_at = datetime.now(UTC)
        inline = len(records) <= INLINE_BATCH_MAX and (
            served.online is None or served.online.runs_inline
        )
        decisions = await self._run(inline, served, records)
        stored = await self.stores.audit(served.bundle.schema, records, decisions, decided_at,
                                         caller.name)
        return {"results": stored, "model": served.model_ref}

    async def _run(self, inline: bool, served: ServedModel,
                   records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if inline:
            return self._score(served, records)
        return await asyncio.to_thread(self._score, served, records)

    def _score(self, served: ServedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            windows = served.online.compute(records) if served.online is not None else None
            decisions = served.bundle.score_records(records, windows)
        except CORE_ERRORS as exc:
            raise from_core_error(exc) from None
        ref, id_field, flagged = served.model_ref, served.id_field, 0
        for decision, record in zip(decisions, records, strict=True):
            decision["model"] = ref
            if id_field is not None:
                decision["transaction_id"] = record.get(id_field)
            flagged += decision["is_fraud"]
        self.metrics.observe_scores(len(records), flagged)
        self._live_drift(served).add(records, windows, [d["score"] for d in decisions])
        return decisions

    def _live_drift(self, served: ServedModel) -> LiveDrift:
        live = self._drift
        if live is None or live.bundle is not served.bundle:
            live = self._drift = LiveDrift(served.bundle, size=self._drift_rows,
                                           level=self._drift_level,
                                           on_report=self.metrics.drift_report)
        return live


def _check_batch_ids(records: list[dict[str, Any]], id_field: str | None) -> None:
    """One transaction id twice in a batch with different content is refused
    before anything is recorded (the same content twice is a retry)."""
    if id_field is None:
        return
    seen: dict[Any, dict[str, Any]] = {}
    for i, record in enumerate(records):
        tid = record.get(id_field)
        first = seen.setdefault(tid, record)
        if first is not record and first != record:
            raise ApiError(409, "duplicate_transaction",
                           "the same transaction id twice in one batch with different content",
                           [{"field": f"records[{i}].{id_field}",
                             "message": "already in this batch with different content"}])
