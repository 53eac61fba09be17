"""Reason maps: which features a reason claims, and the ranking of reasons."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from gendetect.bundle import FraudModelBundle
from gendetect.errors import InputError
from gendetect.reasons import ReasonMap, top_shares
from gendetect.schema import Schema, load_schema

NAMES = ["amount", "log_amount", "ratio_7d", "hour_sin", "risk_1d", "risk_7d"]


def test_features_go_to_the_first_matching_reason_and_the_rest_stand_alone() -> None:
    rm = ReasonMap.build(NAMES, [("amount", ("amount", "log_amount", "ratio_*")),
                                 ("terminal", ("risk_*", "amount"))])
    assert rm.reasons == ("amount", "hour_sin", "terminal")
    assert rm.members == (("amount", "log_amount", "ratio_7d"), ("hour_sin",),
                          ("risk_1d", "risk_7d"))
    assert (rm.matrix.sum(axis=1) == 1).all()


def test_reason_shares_sum_the_feature_shares() -> None:
    rm = ReasonMap.build(NAMES, [("amount", ("amount", "log_amount", "ratio_*")),
                                 ("terminal", ("risk_*",))])
    # The largest single feature is a terminal one, but the amount's three
    # columns carry more together.
    contributions = np.array([[1.0, 1.0, 1.5, 0.5, 2.0, 0.0]])
    assert top_shares(contributions, NAMES, 1)[0][0][0] == "risk_1d"
    top = rm.top(contributions, 3)[0]
    assert [name for name, _ in top] == ["amount", "terminal", "hour_sin"]
    assert [share for _, share in top] == pytest.approx([3.5 / 6, 2 / 6, 0.5 / 6])


def test_a_misspelt_feature_name_is_an_error_but_an_unmatched_pattern_is_not() -> None:
    with pytest.raises(InputError, match="amout"):
        ReasonMap.build(NAMES, [("amount", ("amout",))])
    assert ReasonMap.build(NAMES, [("customer", ("customer_*",))]).reasons == tuple(NAMES)


def test_reasons_survive_the_schema_round_trip() -> None:
    schema = load_schema("transactions")
    assert dict(schema.reasons)["terminal"] == ("terminal_*",)
    assert Schema.from_dict(schema.to_dict()).reasons == schema.reasons
    with pytest.raises(ValueError, match="reasons"):
        Schema.from_dict({**schema.to_dict(), "reasons": ["amount"]})


def test_a_bad_schema_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    raw = load_schema("transactions").to_dict()
    raw["reasons"] = ["amount"]
    path = tmp_path / "my_schema.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=r"my_schema\.yaml.*reasons"):
        load_schema(path)


def test_a_misspelt_reason_stops_fit_before_training() -> None:
    schema = replace(load_schema("numeric"), reasons=(("size", ("f0", "f9")),))
    bundle = FraudModelBundle("vae", schema=schema, max_epochs=1)
    with pytest.raises(InputError, match="'f9'"):
        bundle.fit(np.zeros((50, 3)))
    assert not bundle.is_fitted
