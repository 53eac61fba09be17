"""Request and response models for the scoring API, generated from the
bundle's gendetect Schema so that the schema stays the single source of truth:
a field added to the YAML appears in validation, in the 422 errors and in the
OpenAPI docs without touching the API code.

All field types are strict: the API does not guess that "12.5" is a number or
that 1 is a boolean. Requests are parsed with pydantic's own JSON parser
(`model_validate_json`), which reads the NaN/Infinity literals some clients
write and hands them to the float validator, so they fail as a 422 that names
the field instead of slipping through or crashing the decoder.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from gendetect.schema import FieldSpec, Schema

# Entity and transaction ids: integers or strings, never floats or booleans.
EntityId = StrictInt | StrictStr

_RECORD_CONFIG = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)


def _field_type(spec: FieldSpec) -> Any:
    if spec.kind == "numeric":
        return Annotated[
            float, Field(strict=True, allow_inf_nan=False, ge=spec.min, le=spec.max)
        ]
    if spec.kind == "boolean":
        return StrictBool
    if spec.kind == "timestamp":
        # Strict in JSON mode: RFC 3339 / ISO 8601 strings only, no epoch numbers.
        return Annotated[datetime, Field(strict=True)]
    if spec.kind in ("entity", "id"):
        return EntityId
    if spec.kind == "categorical":
        if spec.categories:
            return Literal[spec.categories]  # type: ignore[valid-type]
        return StrictStr
    raise ValueError(f"field {spec.name!r}: kind {spec.kind!r} is not a request field")


def _python_name(spec: FieldSpec, index: int) -> tuple[str, str | None]:
    """A safe attribute name, plus the wire name as alias when they differ
    (a schema may use names like `model_id`, `json` or `2fa` that a pydantic
    model cannot hold as attributes)."""
    name = spec.name
    clash = hasattr(BaseModel, name) or name.startswith("_") or keyword.iskeyword(name)
    if name.isidentifier() and not clash:
        return name, None
    return f"field_{index}", name


def build_record_model(schema: Schema, name: str | None = None) -> type[BaseModel]:
    """One scoring record: the schema's input fields (labels excluded)."""
    definitions: dict[str, Any] = {}
    for i, spec in enumerate(schema.input_fields):
        py_name, alias = _python_name(spec, i)
        annotation = _field_type(spec)
        extra: dict[str, Any] = {"description": spec.description or None}
        if alias is not None:
            extra["alias"] = alias
        if spec.required:
            definitions[py_name] = (annotation, Field(..., **extra))
        else:
            definitions[py_name] = (annotation | None, Field(None, **extra))
    model_name = name or f"{_camel(schema.name)}Record"
    return create_model(model_name, __config__=_RECORD_CONFIG, **definitions)


def build_batch_model(record_model: type[BaseModel], max_batch_size: int) -> type[BaseModel]:
    return create_model(
        f"{record_model.__name__}Batch",
        __config__=ConfigDict(extra="forbid"),
        records=(
            list[record_model],  # type: ignore[valid-type]
            Field(..., min_length=1, max_length=max_batch_size),
        ),
    )


def record_dict(model: BaseModel) -> dict[str, Any]:
    """The validated record as the bundle expects it: wire names as keys."""
    return model.model_dump(by_alias=True)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or "Schema"


# ------------------------------------------------------------------ errors
def error_fields(exc: ValidationError, *, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors -> [{"field", "message"}], one entry per field.

    The field is the path to the offending request field (`amount`,
    `records[3].amount`); union member tags that pydantic appends to the
    location (`customer_id.int`) are dropped. Input values are never copied
    into the message: they may be personal data.
    """
    merged: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = _field_path(err["loc"], prefix)
        message = _message(err)
        messages = merged.setdefault(field, [])
        if message not in messages:
            messages.append(message)
    return [{"field": f, "message": "; ".join(m)} for f, m in merged.items()]


def _field_path(loc: Sequence[int | str], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        parts.append(f".{item}" if parts else item)
        # After `records`, a batch path continues with [i].<field>; a record
        # path ends at its field name (anything after is a union tag).
        if item != "records" or i != 0:
            break
    return "".join(parts) or "body"


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (not in the schema)"
    if err["type"] == "finite_number":
        return "must be a finite number (NaN and infinity are not allowed)"
    return str(err["msg"])


# --------------------------------------------------------------- responses
class FeatureContribution(BaseModel):
    feature: str
    contribution: float


class ReasonContribution(BaseModel):
    reason: str
    contribution: float


class ModelRef(BaseModel):
    name: str
    version: str


class ScoreResponse(BaseModel):
    score: float = Field(description="raw anomaly score; higher is more anomalous")
    risk: float = Field(description="calibrated 0-1 risk")
    is_fraud: bool = Field(description="score >= threshold")
    threshold: float
    top_features: list[FeatureContribution]
    top_reasons: list[ReasonContribution] = Field(
        description="contributions summed per reason (schema-declared groups of features)"
    )
    model: ModelRef
    transaction_id: int | str | None = None


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
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    pii: bool = False
    feature: bool = False


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str | None
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


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: EntityId
    # Label files carry 0/1; JSON clients send booleans. Both mean the same.
    is_fraud: StrictBool | Literal[0, 1]
    labelled_at: Annotated[datetime, Field(strict=True)] | None = Field(
        None, description="when the label became known; default: now"
    )


class LabelResult(BaseModel):
    accepted: int
    unknown: list[int | str]


def schema_fields(schema: Schema) -> list[SchemaField]:
    return [
        SchemaField(
            name=f.name,
            kind=f.kind,
            required=f.required,
            min=f.min,
            max=f.max,
            categories=list(f.categories) if f.categories else None,
            pii=f.pii,
            feature=f.is_feature,
        )
        for f in schema.fields
    ]


# ----------------------------------------------------------------- openapi
def add_request_bodies(
    doc: dict[str, Any], record_model: type[BaseModel], batch_model: type[BaseModel]
) -> dict[str, Any]:
    """Put the generated request models into an OpenAPI document: the score
    routes read raw bytes (see serving.app), so FastAPI cannot infer them."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    _set_body(doc, "/v1/score", _register(components, record_model))
    _set_body(doc, "/v1/score/batch", _register(components, batch_model))
    label = _register(components, LabelIn)
    _set_body(doc, "/v1/labels", {"anyOf": [label, {"type": "array", "items": label}]})
    return doc


def _register(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _set_body(doc: dict[str, Any], path: str, schema: dict[str, Any]) -> None:
    operation = doc.get("paths", {}).get(path, {}).get("post")
    if operation is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
