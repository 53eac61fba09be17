"""Fixed request and response models of the API (the scoring records are
generated from the served schema in serving.request_models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from gendetect.schema import FieldSpec, Schema
from serving.request_models import TransactionId, timestamp_type


class FeatureContribution(BaseModel):
    feature: str
    contribution: float
    value: float | None = Field(
        None, description="the record's value of this model input, in its original units "
        "(a log1p-derived input such as log_amount in its source's units: the amount); null "
        "for a gap, a `<field> missing` indicator or a categorical column")
    expected: float | None = Field(
        None, description="what the model expected this input to be for this record (its "
        "reconstruction: the VAE's decoder mean, the GAN's reconstruction, an ensemble's "
        "weighted mean of its members', asked with this value withheld), in the same units as "
        "`value`; null wherever `value` is, for a record that is not flagged, and for a model "
        "without a reconstruction")


class ReasonContribution(BaseModel):
    reason: str
    contribution: float


class ModelRef(BaseModel):
    name: str
    version: str


class ScoreResponse(BaseModel):
    score: float = Field(description="raw anomaly score; higher is more anomalous")
    risk: float = Field(description="the share of reference traffic (the model's held-out "
                        "validation records) that scores lower: 0.99 = more unusual than 99% "
                        "of traffic. A rank, not a probability of fraud")
    is_fraud: bool = Field(description="score >= threshold")
    threshold: float
    top_features: list[FeatureContribution]
    top_reasons: list[ReasonContribution] = Field(
        description="contributions summed per reason (schema-declared groups of features)"
    )
    model: ModelRef
    transaction_id: int | None = None


class BatchResponse(BaseModel):
    results: list[ScoreResponse]
    model: ModelRef


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SchemaField(BaseModel):
    name: str
    kind: str
    required: bool
    # null (or, when not required, leaving the field out) is a gap the model allows for.
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    pii: bool = False
    feature: bool = False


class ModelInfo(BaseModel):
    name: str
    version: str
    uri: str = Field(description="the registry URI the service follows")
    alias: str | None = Field(
        description="the alias of `uri`, if this version still held it at the last registry "
        "check; null when the alias has moved or was removed since"
    )
    alias_checked_at: str | None
    run_id: str | None
    kind: str
    threshold: float
    alert_rate: float
    feature_names: list[str]
    schema_name: str
    schema_fields: list[SchemaField]
    window_features: bool
    trained_at: str | None
    loaded_at: str


class ReloadResult(BaseModel):
    changed: bool
    previous: str | None
    current: str


class HealthStatus(BaseModel):
    status: Literal["ok"]


class ReadyStatus(BaseModel):
    status: Literal["ready", "loading", "unavailable"]
    reason: str | None = None
    model: ModelRef | None = None


# Label times: same bounds as record timestamps (a label cannot be known
# before 1970 or arrive from the future).
_LABEL_TIME = FieldSpec("labelled_at", "timestamp")


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: TransactionId
    # Strict, like every record field: JSON has booleans, and a 1 or "true"
    # is a client bug to name, not a label to guess (0/1 label files are
    # read by the training jobs' --labels, not posted here).
    is_fraud: StrictBool = Field(description="true: fraud, false: genuine (JSON booleans "
                                 "only)")
    labelled_at: timestamp_type(_LABEL_TIME) | None = Field(  # type: ignore[valid-type]
        None, description="when the label became known; default: now. Not before the "
        "transaction's own timestamp when this service stored its decision (422 otherwise).")


class LabelResult(BaseModel):
    accepted: int
    unknown: list[int]


def schema_fields(schema: Schema) -> list[SchemaField]:
    return [
        SchemaField(
            name=f.name,
            kind=f.kind,
            required=f.required,
            nullable=f.nullable,
            min=f.min,
            max=f.max,
            categories=list(f.categories) if f.categories else None,
            pii=f.pii,
            feature=f.is_feature,
        )
        for f in schema.fields
    ]
