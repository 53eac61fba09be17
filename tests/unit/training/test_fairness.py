"""Protected fields: never a model input; group rates on held-out data; the
simulator's protected attribute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import AGE_GROUP_COLUMN, AGE_GROUPS, simulate_transactions
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import FieldSpec, Schema, load_schema
from training import fairness


def test_a_protected_field_is_never_a_feature_even_if_it_says_so() -> None:
    for kind in ("numeric", "boolean", "categorical"):
        spec = FieldSpec(name="age", kind=kind, protected=True, feature=True)  # type: ignore[arg-type]
        assert not spec.is_feature
        assert FieldSpec(name="age", kind=kind).is_feature  # type: ignore[arg-type]


def test_the_transactions_schema_protects_the_age_group() -> None:
    schema = load_schema("transactions")
    spec = schema[AGE_GROUP_COLUMN]
    assert spec.protected and not spec.is_feature and not spec.required
    df = simulate_transactions(n_customers=50, n_terminals=100, days=10, seed=0, age_groups=True)
    schema.validate_frame(df, source="sim")
    names = FeaturePipeline(schema).feature_names
    assert not any(AGE_GROUP_COLUMN in name for name in names)


def test_scores_do_not_depend_on_the_protected_column() -> None:
    """A trained bundle scores the same whatever the protected column holds:
    it is not read by the model at all."""
    schema = Schema.from_dict({
        "name": "t", "fields": [
            {"name": "x1", "kind": "numeric"}, {"name": "x2", "kind": "numeric"},
            {"name": "group", "kind": "categorical", "protected": True, "feature": True,
             "categories": ["a", "b"]},
        ]})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(size=400),
                       "group": rng.choice(["a", "b"], size=400)})
    bundle = FraudModelBundle("vae", schema=schema, max_epochs=1, seed=0).fit(df)
    assert bundle.feature_names == ["x1", "x2"]
    swapped = df.assign(group=np.where(df["group"] == "a", "b", "a"))
    np.testing.assert_array_equal(bundle.decision_function(df), bundle.decision_function(swapped))


def test_group_rates_by_hand() -> None:
    frame = pd.DataFrame({
        "g": ["a"] * 40 + ["b"] * 40,
        "is_fraud": [0] * 36 + [1] * 4 + [0] * 40,
    })
    flagged = np.zeros(80, dtype=bool)
    flagged[[0, 1, 36, 37, 38]] = True  # a: 2 genuine + 3 frauds flagged
    flagged[[40, 41, 42, 43]] = True  # b: 4 genuine flagged
    report = fairness.group_report(frame, flagged, "is_fraud", ["g", "missing"])
    assert set(report) == {"g"}
    a, b = report["g"]["a"], report["g"]["b"]
    assert (a["rows"], a["genuine"]) == (40, 36)
    assert a["flag_rate"] == pytest.approx(5 / 40)
    assert a["false_positive_rate"] == pytest.approx(2 / 36)
    assert b["flag_rate"] == pytest.approx(4 / 40) and b["false_positive_rate"] == 0.1
    metrics = fairness.as_metrics(report)
    assert metrics["fairness.g.a.false_positive_rate"] == pytest.approx(2 / 36)
    assert metrics["fairness.g.max_gap.false_positive_rate"] == pytest.approx(0.1 - 2 / 36)
    lines = "\n".join(fairness.card_lines(report))
    assert "| a | 40 | 12.50% | 36 | 5.56% |" in lines


def test_the_simulator_age_group_is_opt_in_and_changes_nothing_else() -> None:
    plain = simulate_transactions(n_customers=300, n_terminals=600, days=5, seed=4)
    with_age = simulate_transactions(n_customers=300, n_terminals=600, days=5, seed=4,
                                     age_groups=True)
    assert AGE_GROUP_COLUMN not in plain.columns
    pd.testing.assert_frame_equal(with_age.drop(columns=[AGE_GROUP_COLUMN]), plain)
    per_customer = with_age.groupby("customer_id")[AGE_GROUP_COLUMN].nunique()
    assert (per_customer == 1).all()  # one band per customer
    assert set(with_age[AGE_GROUP_COLUMN]) == set(AGE_GROUPS)
    again = simulate_transactions(n_customers=300, n_terminals=600, days=5, seed=4,
                                  age_groups=True)
    pd.testing.assert_frame_equal(with_age, again)
