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
    # fairlearn's differences, by hand: flag rates 5/40 vs 4/40; true-positive
    # rates 3/4 (a) vs none (b has no fraud: left out of equalized odds).
    differences = fairness.summary(frame, flagged, "is_fraud", ["g"])["g"]
    assert differences["demographic_parity_difference"] == pytest.approx(5 / 40 - 4 / 40)
    assert np.isnan(differences["equalized_odds_difference"])
    metrics = fairness.as_metrics(report, {"g": differences})
    assert metrics["fairness/g.a.false_positive_rate"] == pytest.approx(2 / 36)
    assert metrics["fairness/g.demographic_parity_difference"] == pytest.approx(1 / 40)
    assert "fairness/g.equalized_odds_difference" not in metrics  # nan is not logged
    lines = "\n".join(fairness.card_lines(report, {"g": differences}))
    assert "| a | 40 | 12.50% | 36 | 5.56% |" in lines
    assert "| demographic parity difference | 2.50% |" in lines
    table = fairness.table(report)
    assert table[["group", "rows", "genuine"]].to_dict("records") == [
        {"group": "a", "rows": 40, "genuine": 36}, {"group": "b", "rows": 40, "genuine": 40}]


def test_equalized_odds_by_hand() -> None:
    # Both groups with frauds and genuine rows: TPR a 2/4, b 1/4; FPR a 1/36, b 3/36.
    frame = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 40,
                          "is_fraud": ([0] * 36 + [1] * 4) * 2})
    flagged = np.zeros(80, dtype=bool)
    flagged[[0, 36, 37]] = True
    flagged[[40, 41, 42, 76]] = True
    differences = fairness.summary(frame, flagged, "is_fraud", ["g"])["g"]
    assert differences["equalized_odds_difference"] == pytest.approx(max(2 / 4 - 1 / 4,
                                                                         3 / 36 - 1 / 36))
    assert differences["false_positive_rate_difference"] == pytest.approx(2 / 36)
    # Groups under MIN_GROUP_ROWS are not compared.
    small = fairness.summary(frame.head(45), flagged[:45], "is_fraud", ["g"])["g"]
    assert all(np.isnan(v) for v in small.values())


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
