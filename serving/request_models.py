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
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    model_validator,
)

from gendetect.schema import INT64_MAX, FieldSpec, Schema

# Transaction ids: non-negative integers that fit a signed 64-bit integer (the
# state stores order same-time transactions by them). Entity ids: such an
# integer or a string of bounded length. Never floats or booleans.
TransactionId = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]

# Timestamps may lie at most this far ahead of the server clock unless the
# caller says otherwise (ServingSettings.max_clock_skew_seconds).
DEFAULT_MAX_SKEW_SECONDS = 86_400.0


def _entity_id(spec: FieldSpec) -> Any:
    return TransactionId | Annotated[
        StrictStr, Field(min_length=1, max_length=spec.length_limit)
    ]


def time_bounds(spec: FieldSpec, max_skew_seconds: float) -> Callable[[datetime], datetime]:
    earliest = spec.earliest.to_pydatetime()
    skew = timedelta(seconds=max_skew_seconds)

    def check(value: datetime) -> datetime:
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if aware < earliest:
            raise ValueError(f"must not be before {earliest.isoformat()}")
        # The server clock bounds the future: a record cannot claim a time
        # the service has not reached yet (plus the configured skew).
        if aware > datetime.now(UTC) + skew:
            raise ValueError(f"more than {max_skew_seconds:g} s ahead of the server clock")
        return value

    return check


# pydantic reads a digits-only string ("0", "20180101") as seconds or
# milliseconds since 1970, even in strict mode, which the document (an RFC 3339
# date-time) does not promise: time text is parsed here instead. A missing UTC
# offset is accepted and means UTC, as for record timestamps.
_DATE_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?([Zz]|[+-]\d\d:?\d\d)?")


def date_time_text(value: Any) -> Any:
    """RFC 3339 / ISO 8601 date-time text -> datetime; other values pass on
    to pydantic (which refuses numbers in strict mode)."""
    if isinstance(value, str):
        if not _DATE_TIME.fullmatch(value):
            raise ValueError("must be an RFC 3339 date-time such as 2024-01-31T12:00:00Z")
        # Python reads microseconds: finer fractions are cut, not refused.
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper().replace(" ", "T"))
        try:
            return datetime.fromisoformat(text)
        except ValueError:  # e.g. month 13
            raise ValueError("must be an RFC 3339 date-time such as 2024-01-31T12:00:00Z"
                             ) from None
    return value


IsoTime = Annotated[datetime, BeforeValidator(date_time_text)]


def timestamp_type(spec: FieldSpec, max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS) -> Any:
    """The one request type of every time field: an RFC 3339 / ISO 8601
    string (no epoch numbers), within the spec's and the clock's bounds,
    which its JSON schema states too (see `time_schema`)."""
    return Annotated[
        datetime, Field(strict=True, json_schema_extra=time_schema(spec, max_skew_seconds)),
        BeforeValidator(date_time_text), AfterValidator(time_bounds(spec, max_skew_seconds)),
    ]


def time_schema(spec: FieldSpec, max_skew_seconds: float) -> Callable[[dict[str, Any]], None]:
    """The bounds `time_bounds` enforces, in the OpenAPI document: the
    earliest time as `formatMinimum` (the JSON Schema vocabulary for bounds
    on formatted strings), the skew as `x-maxClockSkewSeconds` (the latest
    moves with the clock: no fixed maximum can say it), and both in words in
    the description, which is what people and most tools read."""
    earliest = spec.earliest.to_pydatetime().isoformat().replace("+00:00", "Z")
    words = (f"RFC 3339 date-time (no epoch numbers; without an offset it means UTC), not "
             f"before {earliest} and at most {max_skew_seconds:g} s ahead of the server clock.")

    def extra(schema: dict[str, Any]) -> None:
        schema["formatMinimum"] = earliest
        schema["x-maxClockSkewSeconds"] = max_skew_seconds
        given = schema.get("description")
        schema["description"] = f"{given.rstrip()} {words}" if given else words

    return extra

_RECORD_CONFIG = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)


def _field_type(spec: FieldSpec, max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS) -> Any:
    if spec.kind == "numeric":
        return Annotated[
            float, Field(strict=True, allow_inf_nan=False, ge=spec.min, le=spec.max)
        ]
    if spec.kind == "boolean":
        return StrictBool
    if spec.kind == "timestamp":
        return timestamp_type(spec, max_skew_seconds)
    if spec.kind == "id":
        return TransactionId
    if spec.kind == "entity":
        return _entity_id(spec)
    if spec.kind == "categorical":
        if spec.categories:
            return Literal[spec.categories]  # type: ignore[valid-type]
        return Annotated[StrictStr, Field(max_length=spec.length_limit)]
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


def build_record_model(
    schema: Schema,
    name: str | None = None,
    *,
    max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS,
) -> type[BaseModel]:
    """One scoring record: the fields scoring reads (Schema.request_fields).

    The schema's file-only fields (Schema.file_only_fields: the simulator's
    `fraud_scenario`, the protected `customer_age_group`) are not in the
    model nor in the OpenAPI document, but a record that carries them is
    accepted and they are dropped unread: a client that sends whole rows of
    its data file keeps working, and a protected attribute never reaches the
    scoring path. Any other unknown field is still a 422 naming it (a typo
    must not pass silently)."""
    definitions: dict[str, Any] = {}
    for i, spec in enumerate(schema.request_fields):
        py_name, alias = _python_name(spec, i)
        annotation = _field_type(spec, max_skew_seconds)
        extra: dict[str, Any] = {"description": spec.description or None}
        if alias is not None:
            extra["alias"] = alias
        # `required`: the key must be present; `nullable`: null is a value
        # (a gap). An optional field left out is null, which the schema
        # allows for model inputs only when they are nullable.
        if spec.required and spec.nullable:
            definitions[py_name] = (annotation | None, Field(..., **extra))
        elif spec.required:
            definitions[py_name] = (annotation, Field(..., **extra))
        else:
            definitions[py_name] = (annotation | None, Field(None, **extra))
    model_name = name or f"{_camel(schema.name)}Record"
    ignored = frozenset(schema.file_only_fields)

    def drop_file_only(cls: type[BaseModel], data: Any) -> Any:
        if ignored and isinstance(data, dict) and not ignored.isdisjoint(data):
            return {k: v for k, v in data.items() if k not in ignored}
        return data

    return create_model(
        model_name, __config__=_RECORD_CONFIG,
        __doc__="A transaction to score. Other columns of a data file that scoring does "
        "not read (evaluation-only and protected attributes) may be sent; they are ignored.",
        __validators__={"drop_file_only": model_validator(mode="before")(drop_file_only)},
        **definitions)


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
