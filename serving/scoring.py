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
- Each record gets one identity, a keyed fingerprint of its canonical
  content (gendetect.keyed_hash.RecordFingerprint), computed once and stored
  by the behaviour state and the audit alike. A transaction id already
  decided is an idempotent retry when its content is the same, in whatever
  spelling (`Z` or `+00:00`, "42" or 42: the same decision comes back,
  counted once), and a 409 when it differs.
- Order with the audit on: validation, then the features (previewed: the
  state store is read, nothing is recorded), the decision, the audit commit
  (group commit in the writer process, gendetect.stores.audit_process),
  and only then the transaction is recorded in the behaviour state. A
  request that fails anywhere before the commit (invalid, 409, 503
  `audit_unavailable`, a crash) leaves the state as it was: a 503 leaves
  no trace, a 2xx means stored. Safe under kill -9:
  a process killed after the commit and before the state write has stored
  a decision its client never received; the client's retry gets that
  decision back from the audit and records the transaction then (recording
  is idempotent), and without a retry one event is missing from the window
  history, the same loss the journal's fsync period allows. Never the
  reverse (state without a stored decision). Concurrent requests of one
  customer still see each other: previewed events count in other previews
  until they are recorded or discarded (gendetect.features.online).
- With the audit off, the state is the only record: features are computed
  and recorded in one atomic step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from gendetect.drift import LiveDrift
from gendetect.features.online import Preview
from gendetect.keyed_hash import RecordFingerprint
from gendetect.schema import Schema
from serving.auth import Principal
from serving.errors import CORE_ERRORS, ApiError, from_core_error, invalid
from serving.metrics import Metrics
from serving.microbatch import MicroBatcher, Outcome
from serving.model_manager import ServedModel
from serving.settings import ServingSettings
from serving.stores import Stores
from serving.tracing import span, tracing_on

_T = TypeVar("_T")

# Batches up to this size are scored on the event loop (a few ms at most).
INLINE_BATCH_MAX = 32
# A generous bound on one JSON record: bodies beyond it (times the batch
# limit for batches) are refused with 413 before they are read.
MAX_RECORD_BYTES = 16_384


def body_limits(settings: ServingSettings) -> dict[str, int]:
    """Body limit per POST route (the RequestGuard middleware enforces them)."""
    from serving.feedback import feedback_body_limits

    return {
        "/v1/score": MAX_RECORD_BYTES,
        "/v1/score/batch": settings.max_batch_size * MAX_RECORD_BYTES + 1024,
        **feedback_body_limits(settings),
    }


class ScoringService:
    def __init__(self, settings: ServingSettings, metrics: Metrics, stores: Stores) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stores = stores
        self._hash_key = settings.resolved_hash_key()
        self._identity: tuple[Schema, RecordFingerprint] | None = None
        # Drift of what the served bundle scores (a new one per model swap).
        self._drift: LiveDrift | None = None
        # Single records scored on the event loop are scored in blocks
        # (serving.microbatch); off with micro_batch_max = 1.
        self.batcher = MicroBatcher(self._score_block, settings.micro_batch_max)

    async def score_one(self, served: ServedModel, body: bytes,
                        caller: Principal) -> dict[str, Any]:
        try:
            record = served.record_model.model_validate_json(body).model_dump(by_alias=True)
        except ValidationError as exc:
            raise invalid(exc) from None
        records = [record]
        inline = served.online is None or served.online.runs_inline
        # With tracing on, each request keeps its own feature and model spans.
        batched = inline and self.batcher.max_size > 1 and not tracing_on()
        stored = await self._decide(served, records, self._fingerprints(served, records),
                                    caller, inline, batched)
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
        fingerprints = self._fingerprints(served, records)
        _check_batch_ids(records, fingerprints, served.id_field)
        inline = len(records) <= INLINE_BATCH_MAX and (
            served.online is None or served.online.runs_inline
        )
        stored = await self._decide(served, records, fingerprints, caller, inline)
        return {"results": stored, "model": served.model_ref}

    async def _decide(self, served: ServedModel, records: list[dict[str, Any]],
                      fingerprints: list[str], caller: Principal,
                      inline: bool, batched: bool = False) -> list[dict[str, Any]]:
        """Validated records -> stored decisions. With the audit on: features
        previewed (nothing recorded), decisions scored, stored in the audit,
        and only then recorded in the behaviour state (see the module
        docstring for why this order). `batched`: one record, scored in the
        loop turn's block (serving.microbatch)."""
        decided_at = datetime.now(UTC)
        record_now = self.stores.writer is None  # the state is the only record
        if not record_now:
            # Refused before any work: a request that cannot be stored is not scored.
            self.stores.require_ready("audit_unavailable")
        if batched:
            decision, preview = await self.batcher.score(served, records[0], fingerprints[0],
                                                         record_now)
            decisions = [decision]
        else:
            decisions, preview = await self._run(inline, self._score, served, records,
                                                 fingerprints, record_now)
        if record_now:
            return decisions
        try:
            with span("audit"):
                stored = await self.stores.audit(
                    served.bundle.schema, records, decisions, fingerprints, decided_at,
                    caller.name, preview.features if preview is not None else None)
        except BaseException:
            if preview is not None:
                served.online.discard(preview)  # type: ignore[union-attr]
            raise
        if preview is not None:
            await self._run(inline, self._record, served, preview)
        return stored

    async def _run(self, inline: bool, work: Callable[..., _T], *args: Any) -> _T:
        if inline:
            return work(*args)
        return await asyncio.to_thread(work, *args)

    def _score(self, served: ServedModel, records: list[dict[str, Any]],
               fingerprints: list[str], record_now: bool,
               ) -> tuple[list[dict[str, Any]], Preview | None]:
        online, preview = served.online, None
        try:
            with span("features"):
                if online is None:
                    windows = None
                elif record_now:
                    windows = online.compute(records, fingerprints)
                else:
                    preview = online.preview(records, fingerprints)
                    windows = preview.features
            try:
                with span("model"):
                    decisions = served.bundle.score_records(records, windows)
            except BaseException:
                if preview is not None:
                    online.discard(preview)  # type: ignore[union-attr]
                raise
        except CORE_ERRORS as exc:
            raise from_core_error(exc) from None
        self._finish(served, records, windows, decisions)
        return decisions, preview

    def _score_block(self, served: ServedModel, records: list[dict[str, Any]],
                     fingerprints: list[str], record_now: bool) -> list[Outcome]:
        """`_score` for the micro-batcher: the records of several requests,
        one outcome each. Features one record at a time, in order (each
        request's own preview, as when they come one by one); the model once
        for all of them, or, if that fails, once per record so that a
        failure stays with its own request."""
        online = served.online
        outcomes: list[Outcome | None] = [None] * len(records)
        previews: list[Preview | None] = [None] * len(records)
        windows: list[dict[str, float]] = []
        ok: list[int] = []
        with span("features"):
            for i, (record, fingerprint) in enumerate(zip(records, fingerprints, strict=True)):
                try:
                    if online is not None:
                        if record_now:
                            windows.append(online.compute([record], [fingerprint])[0])
                        else:
                            previews[i] = preview = online.preview([record], [fingerprint])
                            windows.append(preview.features[0])
                    ok.append(i)
                except CORE_ERRORS as exc:
                    outcomes[i] = from_core_error(exc)
                except Exception as exc:
                    outcomes[i] = exc
        found = windows if online is not None else None
        decisions: list[dict[str, Any] | None]
        try:
            with span("model"):
                decisions = list(served.bundle.score_records(
                    [records[i] for i in ok], found)) if ok else []
        except Exception:
            decisions = [self._score_alone(served, records[i],
                                           None if found is None else found[j], outcomes, i)
                         for j, i in enumerate(ok)]
        # (record index, its window's index, decision) of the records scored
        done = [(i, j, d) for j, (i, d) in enumerate(zip(ok, decisions, strict=True))
                if d is not None]
        if done:
            self._finish(served, [records[i] for i, _, _ in done],
                         None if found is None else [found[j] for _, j, _ in done],
                         [d for _, _, d in done])
        for i, _, decision in done:
            outcomes[i] = (decision, previews[i])
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException) and previews[i] is not None:
                online.discard(previews[i])  # type: ignore[union-attr, arg-type]
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _score_alone(served: ServedModel, record: dict[str, Any],
                     window: dict[str, float] | None, outcomes: list[Outcome | None],
                     i: int) -> dict[str, Any] | None:
        try:
            return served.bundle.score_records([record], None if window is None else [window])[0]
        except CORE_ERRORS as exc:
            outcomes[i] = from_core_error(exc)
        except Exception as exc:
            outcomes[i] = exc
        return None

    def _finish(self, served: ServedModel, records: list[dict[str, Any]],
                windows: list[dict[str, float]] | None, decisions: list[dict[str, Any]]) -> None:
        """The request's own fields on each decision, the score metrics and
        the drift window."""
        ref, id_field, flagged = served.model_ref, served.id_field, 0
        for decision, record in zip(decisions, records, strict=True):
            decision["model"] = ref
            if id_field is not None:
                decision["transaction_id"] = record.get(id_field)
            flagged += decision["is_fraud"]
        self.metrics.observe_scores(len(records), flagged)
        self._live_drift(served).add(records, windows, [d["score"] for d in decisions])

    @staticmethod
    def _record(served: ServedModel, preview: Preview) -> None:
        """The stored decisions' transactions into the behaviour state. If the
        store fails here the decisions are stored but not yet counted: 503,
        and the client's retry gets its stored decision back and records it
        (recording is idempotent)."""
        assert served.online is not None
        try:
            served.online.record(preview)
        except CORE_ERRORS as exc:
            raise from_core_error(exc) from None

    def _fingerprints(self, served: ServedModel, records: list[dict[str, Any]]) -> list[str]:
        """One identity per record, for the state and the audit alike."""
        schema = served.bundle.schema
        cached = self._identity
        if cached is None or cached[0] is not schema:
            cached = self._identity = (schema, RecordFingerprint.for_schema(schema, self._hash_key))
        return cached[1].digests(records)

    def _live_drift(self, served: ServedModel) -> LiveDrift:
        live = self._drift
        if live is None or live.bundle is not served.bundle:
            live = self._drift = LiveDrift(served.bundle, size=self.settings.drift_window_rows,
                                           level=self.settings.drift_level,
                                           on_report=self.metrics.drift_report)
        return live


def _check_batch_ids(records: list[dict[str, Any]], fingerprints: list[str],
                     id_field: str | None) -> None:
    """One transaction id twice in a batch with different content is refused
    before anything is recorded (the same content twice, in any spelling, is
    a retry)."""
    if id_field is None:
        return
    seen: dict[Any, str] = {}
    for i, (record, fingerprint) in enumerate(zip(records, fingerprints, strict=True)):
        first = seen.setdefault(record.get(id_field), fingerprint)
        if first != fingerprint:
            raise ApiError(409, "duplicate_transaction",
                           "the same transaction id twice in one batch with different content",
                           [{"field": f"records[{i}].{id_field}",
                             "message": "already in this batch with different content"}])
