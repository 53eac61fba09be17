"""What the feedback routes do: `POST /v1/feedback` (analyst verdicts) and
its alias `POST /v1/labels` (the earlier confirmed-label body), one intake
(gendetect.stores.verdicts): verdicts are stored with their history and
reach the online terminal risk through OnlineState.add_label.

`/v1/labels` stays for the clients that post confirmed outcomes (a
chargeback feed): `{"transaction_id", "is_fraud", "labelled_at"?}` becomes a
verdict `fraud`/`genuine` by the key's name (`labels` when the API is open),
and it answers as before (`accepted`, `unknown`; 404 for one unknown id).

Verdicts for transactions this service never scored are not stored (see
gendetect.stores.verdicts): 404 `unknown_transaction` for one, listed in
`unknown` for a list. Bad input (unknown label, missing id, oversize note,
wrong types, a `labelled_at` before the transaction's own time) is a 422
naming the field, and nothing of the request is written: the whole body is
validated first.

The whole write, from the request's arrival (a wait for a worker thread or
a pooled connection included), takes at most
`GENDETECT_DATABASE_TIMEOUT_SECONDS`; past it the answer is 503
`database_unavailable` and the verdicts are not stored, not even later.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from gendetect.errors import StoreUnavailableError
from gendetect.stores.verdicts import (
    ApplyLabel,
    Deadline,
    IntakeResult,
    NewVerdict,
    VerdictTimeError,
)
from serving.auth import Principal
from serving.errors import CORE_ERRORS, ApiError, from_core_error, invalid
from serving.feedback_models import VerdictIn
from serving.model_manager import ServedModel
from serving.responses import LabelIn
from serving.settings import ServingSettings
from serving.stores import Stores, unavailable

# Bounds on one JSON verdict (a 1,000-character note, every character
# escaped) and one label; times the batch limit for lists (413 beyond).
MAX_VERDICT_BYTES = 8192
MAX_LABEL_BYTES = 512


def feedback_body_limits(settings: ServingSettings) -> dict[str, int]:
    n = settings.max_batch_size
    return {"/v1/feedback": n * MAX_VERDICT_BYTES + 1024,
            "/v1/labels": n * MAX_LABEL_BYTES + 1024}


class FeedbackService:
    def __init__(self, settings: ServingSettings, stores: Stores) -> None:
        self.settings = settings
        self.stores = stores
        self.max_items = settings.max_batch_size
        self._verdict = TypeAdapter(VerdictIn)
        self._verdicts = TypeAdapter(list[VerdictIn])
        self._label = TypeAdapter(LabelIn)
        self._labels = TypeAdapter(list[LabelIn])

    async def feedback(self, served: ServedModel, body: bytes,
                       caller: Principal) -> dict[str, Any]:
        many, parsed = self._parse(body, self._verdict, self._verdicts)
        items = [NewVerdict(v.transaction_id, v.label, v.analyst, v.note, v.labelled_at)
                 for v in parsed]  # type: ignore[attr-defined]
        result = await self._intake(served, items, "feedback", caller, many)
        self._unknown_single(many, result)
        return {"accepted": result.accepted, "stored": result.stored,
                "duplicates": result.duplicates, "unknown": result.unknown}

    async def labels(self, served: ServedModel, body: bytes,
                     caller: Principal) -> dict[str, Any]:
        many, parsed = self._parse(body, self._label, self._labels)
        analyst = caller.name or "labels"
        items = [NewVerdict(x.transaction_id, "fraud" if x.is_fraud else "genuine", analyst,
                            None, x.labelled_at) for x in parsed]  # type: ignore[attr-defined]
        result = await self._intake(served, items, "labels", caller, many)
        self._unknown_single(many, result)
        return {"accepted": result.accepted, "unknown": result.unknown}

    # ------------------------------------------------------------- internals
    def _parse(self, body: bytes, one: TypeAdapter[Any], many: TypeAdapter[Any]
               ) -> tuple[bool, list[BaseModel]]:
        is_list = body.lstrip()[:1] == b"["
        try:
            items = many.validate_json(body) if is_list else [one.validate_json(body)]
        except ValidationError as exc:
            raise invalid(exc) from None
        if not items:
            raise ApiError(422, "invalid_input", "no verdicts in the list",
                           [{"field": "body", "message": "at least one item"}])
        if len(items) > self.max_items:
            raise ApiError(422, "batch_too_large", f"at most {self.max_items} items per request",
                           [{"field": "body", "message": f"more than {self.max_items} items"}])
        return is_list, items

    async def _intake(self, served: ServedModel, items: list[NewVerdict], source: str,
                      caller: Principal, many: bool) -> IntakeResult:
        self.stores.require_ready("database_unavailable")
        # Started before the thread hop: a wait for a free worker thread (or
        # later a pooled connection) is spent from the same budget; behind a
        # locked database they used to add up to several timeouts.
        deadline = Deadline(self.settings.database_timeout_seconds)
        online = served.online
        apply: ApplyLabel | None = online.add_label if online is not None else None
        now = datetime.now(UTC)

        def run() -> IntakeResult:
            return self.stores.verdicts.add(items, received_at=now, source=source,
                                            key_name=caller.name, apply=apply,
                                            deadline=deadline)

        try:
            return await asyncio.wait_for(asyncio.to_thread(run), deadline.remaining())
        except TimeoutError:
            # The thread may still be waiting on the database: it commits
            # nothing after this, unless its commit had already begun.
            message = ("the verdict database did not answer in time; nothing was stored"
                       if deadline.abandon() else
                       "the verdict database did not confirm the commit in time; the "
                       "verdicts may be stored: posting them again stores nothing twice")
            raise unavailable("database_unavailable", StoreUnavailableError(message)) from None
        except StoreUnavailableError as exc:
            raise unavailable("database_unavailable", exc) from None
        except VerdictTimeError as exc:
            fields = [{"field": f"[{i}].labelled_at" if many else "labelled_at",
                       "message": exc.message} for i in exc.items]
            raise ApiError(422, "invalid_input", f"labelled_at: {exc.message}",
                           fields) from None
        except CORE_ERRORS as exc:
            raise from_core_error(exc) from None

    @staticmethod
    def _unknown_single(many: bool, result: IntakeResult) -> None:
        if not many and result.unknown:
            raise ApiError(404, "unknown_transaction",
                           "this service never scored a transaction with this id; nothing "
                           "was stored", [{"field": "transaction_id", "message": "unknown"}])
