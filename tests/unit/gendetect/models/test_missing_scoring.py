"""Gaps through the generative models: imputed at the input, left out of the
errors, the losses and the score (which averages over observed cells only),
so that a gap by itself is evidence of neither fraud nor normality, while a
gap where gaps are rare is what the explanation names.

Before: a record without a value in an optional field scored 3.4e38 (the
float32 maximum standing in for the network's NaN), risk 1.0, flagged, with
every feature's share equal."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.label_aware import evidence_columns
from gendetect.member import top_mean
from gendetect.models.registry import get_model
from gendetect.params import DetectorParams
from tests.gappy import gappy_frame, gappy_schema

FIT = {"max_epochs": 3, "batch_size": 128, "accelerator": "cpu", "seed": 0, "alert_rate": 0.02}


def _fit(kind: str, df: pd.DataFrame, y: str | None = None, **extra: object) -> FraudModelBundle:
    return make_detector(kind, schema=gappy_schema(), **{**FIT, **extra}).fit(df, y)


@pytest.fixture(scope="module")
def fitted() -> dict[str, FraudModelBundle]:
    """Trained on a table with 20% empty balances and 20% missing domains."""
    df = gappy_frame(2000, 0, balance_gaps=0.2)
    return {kind: _fit(kind, df) for kind in ("vae", "gan")}


def _complete(n: int, seed: int) -> pd.DataFrame:
    return gappy_frame(n, seed, balance_gaps=0.0, domain_gaps=0.0)


# ------------------------------------------------------------ the pieces
def test_the_score_averages_over_observed_cells_only() -> None:
    rng = np.random.default_rng(0)
    contributions = rng.exponential(size=(50, 7))
    observed = rng.random((50, 7)) > 0.3
    observed[:, 0] = True
    masked = np.where(observed, contributions, 0.0)
    for fraction in (1.0, 0.5, 0.2):
        expected = []
        for row, seen in zip(contributions, observed, strict=True):
            values = np.sort(row[seen])[::-1]
            k = max(1, math.ceil(fraction * len(values) - 1e-9))
            expected.append(values[:k].mean())
        np.testing.assert_allclose(top_mean(masked, fraction, observed), expected, rtol=1e-12)
    # Nothing missing: the plain top mean, bit for bit.
    everything = np.ones_like(observed)
    np.testing.assert_array_equal(top_mean(contributions, 0.5, everything),
                                  top_mean(contributions, 0.5))


@pytest.mark.parametrize("kind", ["vae", "vae_mse", "gan"])
def test_networks_give_gaps_no_error_and_impute_the_median(kind: str) -> None:
    torch.manual_seed(0)
    params = DetectorParams()
    network = get_model(kind).build_network(5, params.model_params(kind)).eval()
    x = torch.randn(64, 5)
    gaps = torch.rand(64, 5) < 0.3
    with_gaps = torch.where(gaps, torch.full_like(x, float("nan")), x)
    errors = network.feature_errors(with_gaps)
    assert torch.isfinite(errors).all()
    assert (errors[gaps] == 0).all()
    # Elsewhere: the errors of the record with the gap at 0, the scaled median.
    imputed = network.feature_errors(torch.where(gaps, torch.zeros_like(x), x))
    torch.testing.assert_close(errors[~gaps], imputed[~gaps])
    extra = network.extra_score(with_gaps)
    if extra is not None:
        assert torch.isfinite(extra).all()


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_a_record_with_a_gap_never_reaches_the_network_as_nan(
    kind: str, fitted: dict[str, FraudModelBundle]
) -> None:
    """The evidence the label-aware head reads is finite, gaps imputed."""
    detector = fitted[kind].detector_
    x = fitted[kind].features(gappy_frame(200, 3))
    assert np.isnan(x).any()
    evidence = detector.evidence(x)
    assert np.isfinite(evidence_columns(evidence)).all()
    assert np.isfinite(evidence.score).all()


# ------------------------------------------------------------ end to end
@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_training_on_a_table_with_20_percent_gaps(
    kind: str, fitted: dict[str, FraudModelBundle]
) -> None:
    bundle = fitted[kind]
    names = bundle.feature_names
    assert {"balance missing", "is_foreign missing", "email_domain missing"} <= set(names)
    assert np.isfinite(bundle.decision_scores_).all()
    assert np.isfinite(bundle.threshold_)


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_a_record_missing_a_nullable_field_scores_among_complete_records(
    kind: str, fitted: dict[str, FraudModelBundle]
) -> None:
    bundle = fitted[kind]
    complete = _complete(400, 1)
    complete_scores = bundle.decision_function(complete)
    records = complete.drop(columns=["balance"]).to_dict("records")
    for r in records:
        r["email_domain"] = None  # null in the other nullable field too
    decisions = bundle.score_records(records)
    scores = np.array([d["score"] for d in decisions])
    low, high = complete_scores.min(), complete_scores.max()
    assert np.isfinite(scores).all()
    assert (scores >= low).all()
    assert np.quantile(scores, 0.99) <= high  # was 3.4e38 for every one of them
    assert np.mean([d["is_fraud"] for d in decisions]) <= 3 * FIT["alert_rate"]  # type: ignore[operator]


def test_common_gaps_are_neither_fraud_nor_normal_and_are_not_named() -> None:
    """Balances missing in half the rows: a record's gap changes its score
    little, stays within the complete records' range, and is not what the
    explanation names."""
    bundle = _fit("vae", gappy_frame(2000, 0, balance_gaps=0.5))
    complete = _complete(400, 1)
    gap = complete.assign(balance=np.nan)
    with_value, without = bundle.decision_function(complete), bundle.decision_function(gap)
    assert without.max() <= with_value.max()
    # Neither more nor less anomalous by more than a fifth of the spread
    # between records (a rare gap moves the median past the upper quartile:
    # test_a_rare_gap_is_the_reason_and_says_so).
    spread = np.std(with_value)
    assert abs(np.median(without) - np.median(with_value)) < 0.2 * spread
    assert np.quantile(without, 0.01) >= with_value.min() - 0.2 * spread
    tops = [e[0][0] for e in bundle.explain(gap, top_k=1)]
    assert tops.count("balance missing") <= 0.05 * len(tops)
    # The missing value itself is never blamed: it has no error.
    named = {name for e in bundle.explain(gap, top_k=3) for name, _ in e}
    assert "balance" not in named


def test_a_rare_gap_is_the_reason_and_says_so() -> None:
    """Balances missing in 2% of the rows: a gap is unusual, raises the
    score, and the explanation (top feature and top reason) names it as a gap."""
    bundle = _fit("vae", gappy_frame(2000, 0, balance_gaps=0.02))
    complete = _complete(400, 1)
    gap = complete.assign(balance=np.nan)
    assert np.median(bundle.decision_function(gap)) > np.quantile(
        bundle.decision_function(complete), 0.75)
    tops = [e[0][0] for e in bundle.explain(gap, top_k=1)]
    reasons = [e[0][0] for e in bundle.explain_reasons(gap, top_k=1)]
    assert tops.count("balance missing") >= 0.75 * len(tops)
    assert reasons.count("balance missing") >= 0.75 * len(reasons)


def test_same_scores_from_frames_records_and_a_saved_bundle(
    fitted: dict[str, FraudModelBundle], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    bundle = fitted["gan"]
    test = gappy_frame(150, 4).drop(columns=["balance"])
    expected = bundle.decision_function(test)
    bundle.save(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert manifest["features"]["categorical"]["email_domain"]["levels"]  # learned, as JSON
    loaded = FraudModelBundle.load(tmp_path / "b")
    assert loaded.feature_names == bundle.feature_names
    records = [{k: (None if v is None or v is pd.NA or v != v else v) for k, v in r.items()}
               for r in test.to_dict("records")]
    from_records = [d["score"] for d in loaded.score_records(records)]
    np.testing.assert_allclose(loaded.decision_function(test), expected, rtol=1e-6)
    np.testing.assert_allclose(from_records, expected, rtol=1e-6)


def test_unseen_levels_score_as_other_and_are_counted(
    fitted: dict[str, FraudModelBundle]
) -> None:
    bundle = fitted["vae"]
    test = _complete(50, 5)
    test["email_domain"] = [f"brand-new-{k}.example" for k in range(50)]
    before = bundle.pipeline.unseen_levels().get("email_domain", 0)  # type: ignore[union-attr]
    scores = bundle.decision_function(test)
    assert np.isfinite(scores).all()
    assert bundle.pipeline.unseen_levels()["email_domain"] == before + 50  # type: ignore[union-attr]


def test_the_label_aware_head_learns_with_gaps() -> None:
    df = gappy_frame(2000, 0)
    rng = np.random.default_rng(5)
    labels = np.full(len(df), -1.0)
    labels[rng.choice(len(df), 800, replace=False)] = 0
    frauds = rng.choice(len(df), 40, replace=False)
    labels[frauds] = 1
    df.loc[frauds, "amount"] *= 5
    df.loc[frauds[:20], "balance"] = np.nan  # fraud with and without the value
    bundle = _fit("vae", df.assign(is_fraud=labels), "is_fraud", label_min_frauds=10,
                  max_epochs=2)
    assert bundle.label_summary_["mode"] == "label-aware"
    scores = bundle.decision_function(gappy_frame(300, 1))
    assert np.isfinite(scores).all()
