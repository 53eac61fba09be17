"""Request examples: the README's requests, shown in the OpenAPI document
("Try it out" sends them) and checked against the README by
tests/integration/serving/test_openapi_examples.py, so that the two cannot
drift apart. The record is the built-in `transactions` schema's; a model
with another schema gets no record example rather than a wrong one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

RECORD: dict[str, Any] = {"transaction_id": 1, "timestamp": "2024-02-15T03:12:00",
                          "customer_id": 42, "terminal_id": 977, "amount": 1250.0}
SECOND_RECORD: dict[str, Any] = {"transaction_id": 2, "timestamp": "2024-02-15T03:14:30",
                                 "customer_id": 42, "terminal_id": 977, "amount": 1310.0}
VERDICT: dict[str, Any] = {"transaction_id": 1, "label": "fraud", "analyst": "a.smith",
                           "note": "card holder confirmed"}
LABEL: dict[str, Any] = {"transaction_id": 1, "is_fraud": True}


def record_examples(record_model: type[BaseModel]) -> dict[str, Any] | None:
    """The README's record, if the served model's request model takes it."""
    try:
        record_model.model_validate(RECORD)
    except ValidationError:
        return None
    return {"readme": {"summary": "one card transaction (the README's)", "value": RECORD}}


def batch_examples(record_model: type[BaseModel]) -> dict[str, Any] | None:
    if record_examples(record_model) is None:
        return None
    return {"two": {"summary": "two transactions of one card, scored in order",
                    "value": {"records": [RECORD, SECOND_RECORD]}}}


VERDICT_EXAMPLES = {"one": {"summary": "an analyst's verdict", "value": VERDICT},
                    "list": {"summary": "several verdicts at once",
                             "value": [VERDICT, {**VERDICT, "transaction_id": 2,
                                                 "label": "genuine", "note": None}]}}
LABEL_EXAMPLES = {"one": {"summary": "a confirmed label", "value": LABEL}}
