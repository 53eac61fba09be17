"""Request models generated from a gendetect Schema: field types, ranges,
required/optional, unknown fields and non-finite numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from gendetect.schema import FieldSpec, Schema, load_schema
from serving.request_models import (
    build_batch_model,
    build_record_model,
    error_fields,
    record_dict,
)

SCHEMA = Schema(
    name="cards",
    fields=(
        FieldSpec("transaction_id", "id"),
        FieldSpec("timestamp", "timestamp"),
        FieldSpec("customer_id", "entity", pii=True),
        FieldSpec("amount", "numeric", min=0.0, max=1000.0),
        FieldSpec("channel", "categorical", categories=("web", "pos")),
        FieldSpec("is_foreign", "boolean", required=False, nullable=True),
        FieldSpec("score_hint", "numeric", required=False, nullable=True),
        # A name that clashes with pydantic's own:
        FieldSpec("model_version", "numeric", required=False, nullable=True),
        FieldSpec("is_fraud", "label", required=False),
    ),
)
Record = build_record_model(SCHEMA)
VALID: dict[str, Any] = {
    "transaction_id": 7,
    "timestamp": "2024-05-01T12:30:00Z",
    "customer_id": "c-17",
    "amount": 12.5,
    "channel": "web",
}


def errors_for(body: str | dict[str, Any], model: Any = Record) -> dict[str, str]:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(text)
    return {e["field"]: e["message"] for e in error_fields(info.value)}


def test_valid_record_keeps_wire_names_and_types() -> None:
    out = record_dict(Record.model_validate_json(json.dumps({**VALID, "model_version": 3})))
    assert out["timestamp"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert out["customer_id"] == "c-17"
    assert out["transaction_id"] == 7
    assert out["model_version"] == 3.0  # aliased internally, wire name kept
    assert out["is_foreign"] is None and out["score_hint"] is None


def test_labels_are_not_request_fields() -> None:
    assert "is_fraud" in errors_for({**VALID, "is_fraud": 1})


@pytest.mark.parametrize("missing", ["transaction_id", "timestamp", "customer_id", "amount",
                                     "channel"])
def test_required_fields(missing: str) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}
    assert errors_for(body) == {missing: "Field required"}


def test_optional_fields_may_be_omitted_or_null() -> None:
    Record.model_validate_json(json.dumps({**VALID, "is_foreign": None, "score_hint": None}))


@pytest.mark.parametrize("value", [-0.01, 1000.5])
def test_numeric_range_from_schema(value: float) -> None:
    assert set(errors_for({**VALID, "amount": value})) == {"amount"}


def test_bounds_are_inclusive() -> None:
    for value in (0.0, 1000.0):
        Record.model_validate_json(json.dumps({**VALID, "amount": value}))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_rejected_naming_the_field(literal: str) -> None:
    body = json.dumps(VALID).replace('"amount": 12.5', f'"amount": {literal}')
    assert literal in body
    errors = errors_for(body)
    assert list(errors) == ["amount"]
    assert "finite" in errors["amount"]


def test_python_json_dumps_nan_is_rejected() -> None:
    # json.dumps writes NaN by default; unbounded numeric fields must refuse it too.
    assert list(errors_for({**VALID, "score_hint": float("nan")})) == ["score_hint"]


def test_unknown_fields_are_forbidden_and_named() -> None:
    errors = errors_for({**VALID, "merchant": "x"})
    assert list(errors) == ["merchant"]
    assert "unknown field" in errors["merchant"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "12.5"),  # no string-to-number guessing
        ("amount", True),
        ("customer_id", 1.5),
        ("customer_id", False),
        ("transaction_id", None),
        ("timestamp", 1714566600),  # epoch numbers are ambiguous (s? ms?)
        ("timestamp", "yesterday"),
        ("timestamp", "0"),  # pydantic alone reads digit strings as epoch seconds
        ("timestamp", "20240501"),
        ("timestamp", "2024-05-01"),  # a date is not a date-time
        ("timestamp", "2024-13-01T00:00:00"),
        ("channel", "phone"),
        ("is_foreign", "yes"),
        ("is_foreign", 1),
    ],
)
def test_wrong_types_name_the_field(field: str, value: Any) -> None:
    assert list(errors_for({**VALID, field: value})) == [field]


def test_union_member_tags_are_not_in_the_field_name() -> None:
    errors = errors_for({**VALID, "customer_id": [1]})
    assert list(errors) == ["customer_id"]


def test_batch_model_bounds_and_error_paths() -> None:
    Batch = build_batch_model(Record, max_batch_size=2)
    assert len(Batch.model_validate_json(json.dumps({"records": [VALID, VALID]})).records) == 2
    with pytest.raises(ValidationError) as info:
        Batch.model_validate_json(json.dumps({"records": [VALID] * 3}))
    assert info.value.errors()[0]["type"] == "too_long"
    assert list(errors_for({"records": []}, Batch)) == ["records"]
    bad = {**VALID, "amount": float("inf")}
    assert list(errors_for({"records": [VALID, bad]}, Batch)) == ["records[1].amount"]
    assert list(errors_for({"records": [VALID], "extra": 1}, Batch)) == ["extra"]


def test_invalid_json_is_reported_on_the_body() -> None:
    assert list(errors_for('{"amount": 1,')) == ["body"]


def test_error_messages_never_echo_the_input() -> None:
    secret = "customer-4242-secret"
    errors = errors_for({**VALID, "customer_id": [secret], "channel": secret})
    assert secret not in json.dumps(errors)


def test_builtin_transactions_schema() -> None:
    schema = load_schema("transactions")
    model = build_record_model(schema)
    fields = model.model_json_schema()["properties"]
    # Only what a client sends: not the simulator's fraud_scenario, not the
    # protected customer_age_group (fairness reports read it from files).
    assert set(fields) == {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount"}
    assert fields["amount"]["minimum"] == 0.0
    assert fields["amount"]["maximum"] == 1_000_000.0
    required = set(model.model_json_schema()["required"])
    assert required == {f.name for f in schema.request_fields if f.required}


def test_file_only_fields_are_accepted_and_dropped_unread() -> None:
    # A client sending whole rows of its data file keeps working; the values
    # (even out of range) never reach scoring. Unknown fields are still refused.
    schema = load_schema("transactions")
    model = build_record_model(schema)
    row = {"transaction_id": 1, "timestamp": "2024-02-15T03:12:00", "customer_id": 42,
           "terminal_id": 977, "amount": 12.5}
    whole = {**row, "fraud_scenario": 7, "customer_age_group": "not a band"}
    assert record_dict(model.model_validate(whole)) == record_dict(model.model_validate(row))
    assert "customer_age_group" not in record_dict(model.model_validate(whole))
    with pytest.raises(ValidationError) as info:
        model.model_validate({**row, "fraud_scenarios": 1})
    assert [e["field"] for e in error_fields(info.value)] == ["fraud_scenarios"]


def test_which_fields_are_file_only() -> None:
    assert load_schema("transactions").file_only_fields == (
        "fraud_scenario", "customer_age_group")
    rich = load_schema("rich")
    assert rich.file_only_fields == ("fraud_scenario",)
    # A field a derived feature or an aggregate reads is a request field
    # even when it is not a model feature itself.
    read = {d.source for d in rich.derived} | {
        c for g in rich.aggregates.groups for c in (*g.key, *g.value_columns)}
    assert read <= {f.name for f in rich.request_fields}
