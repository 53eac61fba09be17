"""Request and response models of the feedback and review routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from gendetect.schema import FieldSpec
from serving.request_models import TransactionId, timestamp_type
from serving.responses import FeatureContribution, ModelRef, ReasonContribution

MAX_NOTE_CHARS = 1000
MAX_ANALYST_CHARS = 128
_VERDICT_TIME = FieldSpec("labelled_at", "timestamp")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return _no_nul(value)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL characters: refused here, as bad input.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


VerdictTime = timestamp_type(_VERDICT_TIME)
# Checked against the stored decision when the verdict is written
# (gendetect.stores.verdicts), so a schema cannot say it: the words can.
NOT_BEFORE = ("Not before the transaction's own timestamp when this service stored its "
              "decision (422 naming the field otherwise).")


class VerdictIn(BaseModel):
    """An analyst's verdict on a transaction this service scored."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: TransactionId
    label: Literal["fraud", "genuine"]
    analyst: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ANALYST_CHARS),
                       AfterValidator(_not_blank)] = Field(
        description="who decided (an analyst id or name); kept with the verdict; not blank, "
        "no NUL characters")
    note: Annotated[StrictStr, Field(max_length=MAX_NOTE_CHARS),
                    AfterValidator(_no_nul)] | None = Field(
        None, description="free text; no NUL characters")
    labelled_at: VerdictTime | None = Field(
        None, description=f"when the verdict was made; default: when it arrives. {NOT_BEFORE}")


class FeedbackResult(BaseModel):
    accepted: int = Field(description="verdicts for known transactions (stored + duplicates)")
    stored: int = Field(description="new verdict rows")
    duplicates: int = Field(description="verdicts equal to a stored one: nothing written")
    unknown: list[int] = Field(description="transaction ids this service never scored: "
                               "nothing stored for them")


class VerdictOut(BaseModel):
    label: Literal["fraud", "genuine"]
    analyst: str
    note: str | None
    labelled_at: str
    received_at: str
    source: Literal["feedback", "labels"]


class RecordContext(BaseModel):
    """What the audit keeps of a record for analysts: never an id, an entity,
    or a field the schema flags pii or protected."""

    record: dict[str, float | bool | str | None] = Field(
        description="the record's non-personal fields, as sent")
    behaviour: dict[str, float | None] = Field(
        description="behaviour (window) features, as the model got them")


class StoredDecision(BaseModel):
    transaction_id: int | None
    score: float
    risk: float
    is_fraud: bool
    threshold: float
    top_features: list[FeatureContribution]
    top_reasons: list[ReasonContribution]
    model: ModelRef
    decided_at: str = Field(description="when the API decided (UTC)")
    event_time: str | None = Field(description="the transaction's own timestamp (UTC)")
    context: RecordContext | None = Field(
        None, description="the record's non-personal fields and the behaviour features the "
        "model was given; null for decisions stored before the audit kept them")


class AlertPage(BaseModel):
    alerts: list[StoredDecision] = Field(description="in the requested order")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at "
                                    "the end")


class DecisionHistory(BaseModel):
    transaction_id: int
    decision: StoredDecision | None = Field(description="null when the audit was off")
    verdicts: list[VerdictOut] = Field(description="oldest first")
    label: Literal["fraud", "genuine"] | None = Field(description="the latest verdict's label")
