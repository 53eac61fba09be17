"""fit(X, y): labels 1 / 0 / -1 (NaN), the label-aware head, and the rules
that keep confirmed frauds out of "normal" (issue 11)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.errors import InputError
from gendetect.models.labels import BoostedHead, normalise_labels
from gendetect.schema import Schema

FIT = {"max_epochs": 2, "batch_size": 128, "accelerator": "cpu", "seed": 0}
KINDS = ("vae", "vae_mse", "gan", "ensemble")


def _data(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows, plus 6% frauds shifted on two features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    fraud = rng.random(n) < 0.06
    x[fraud, 0] += 1.5
    x[fraud, 1] -= 1.0
    return x, fraud.astype(np.int8)


def test_normalise_labels_maps_missing_to_unknown_and_rejects_other_values() -> None:
    assert normalise_labels(None, 3).tolist() == [-1, -1, -1]
    got = normalise_labels(pd.Series([1, 0, None, -1, np.nan]), 5)
    assert got.tolist() == [1, 0, -1, -1, -1]
    with pytest.raises(ValueError, match=r"found \[2.0\]"):
        normalise_labels([1, 2, 0], 3)
    with pytest.raises(ValueError, match="labels for 4 rows"):
        normalise_labels([1, 0, 0], 4)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_labels_are_exactly_no_labels(kind: str) -> None:
    x, _ = _data(600)
    plain = make_detector(kind, **FIT).fit(x)
    for unknown in (np.full(len(x), -1), np.full(len(x), np.nan)):
        labelled = make_detector(kind, **FIT).fit(x, unknown)
        assert np.array_equal(plain.decision_function(x), labelled.decision_function(x))
        assert plain.threshold_ == labelled.threshold_
        assert labelled.metadata["labels"]["mode"] == "unsupervised"
        assert not labelled.label_head_.active


def test_confirmed_frauds_never_count_as_normal() -> None:
    """Too few frauds for the head: the detector stays unsupervised, says
    so, and is the detector trained on the other rows alone."""
    x, fraud = _data(800)
    # Nothing cleared: cleared rows would count twice in the networks' rows.
    y = np.full(len(x), -1)
    few = np.flatnonzero(fraud)[:5]
    y[few] = 1
    bundle = make_detector("vae", label_min_frauds=20, **FIT).fit(x, y)
    labels = bundle.metadata["labels"]
    assert labels["mode"] == "unsupervised" and "fewer than label_min_frauds=20" in labels["reason"]
    without = make_detector("vae", **FIT).fit(np.delete(x, few, axis=0))
    assert np.array_equal(bundle.decision_function(x), without.decision_function(x))


def test_too_few_labels_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    x, fraud = _data(600)
    y = np.full(len(x), -1)
    y[np.flatnonzero(fraud)[:3]] = 1
    with caplog.at_level(logging.WARNING, logger="gendetect.label_aware"):
        make_detector("vae", label_min_frauds=20, **FIT).fit(x, y)
    assert "label-aware mode off" in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_label_aware_mode_scores_explains_and_round_trips(kind: str, tmp_path: Path) -> None:
    x, fraud = _data()
    y = np.where(fraud == 1, 1, -1)
    bundle = make_detector(kind, **FIT).fit(x, y)
    assert bundle.metadata["labels"]["mode"] == "label-aware"
    assert bundle.metadata["labels"]["frauds"] == int(fraud.sum())
    scores = bundle.decision_function(x)
    risk = bundle.risk(x)
    assert np.isfinite(scores).all() and (risk >= 0).all() and (risk <= 1).all()
    # The threshold comes from the alert rate on held-out, non-fraud rows.
    assert 0.0 < bundle.predict(x[fraud == 0]).mean() < 0.05
    for row in bundle.explain(x[:20], top_k=5):
        assert sum(share for _, share in row) == pytest.approx(1.0)
    reasons = bundle.explain_reasons(x[:5])
    assert all(len(r) >= 1 for r in reasons)
    loaded = FraudModelBundle.load(bundle.save(tmp_path / "b"))
    assert np.array_equal(loaded.decision_function(x), scores)
    assert loaded.explain(x[:5]) == bundle.explain(x[:5])
    assert loaded.metadata["labels"] == bundle.metadata["labels"]
    # No pickle: the head is JSON in the manifest, the weights are state dicts.
    assert not list((tmp_path / "b").glob("*.pkl"))


def test_labels_move_frauds_up_the_list() -> None:
    """Same kind of fraud in a fresh draw: the label-aware score ranks it
    higher than the unsupervised one (AP)."""
    from gendetect.metrics import average_precision

    x, fraud = _data(3000, seed=0)
    x_new, fraud_new = _data(3000, seed=1)
    plain = make_detector("vae", **FIT).fit(x).decision_function(x_new)
    aware = make_detector("vae", **FIT).fit(x, np.where(fraud == 1, 1, 0))
    assert average_precision(fraud_new, aware.decision_function(x_new)) > average_precision(
        fraud_new, plain
    ) + 0.05


def test_label_aware_is_deterministic() -> None:
    x, fraud = _data(1000)
    y = np.where(fraud == 1, 1, -1)
    a = make_detector("gan", **FIT).fit(x, y).decision_function(x)
    b = make_detector("gan", **FIT).fit(x, y).decision_function(x)
    assert np.array_equal(a, b)


def test_boosted_head_matches_sklearn_and_survives_json() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    x[rng.random(x.shape) < 0.02] = np.nan
    y = (x[:, 0] + np.nan_to_num(x[:, 1]) + rng.normal(size=len(x)) > 2).astype(np.int8)
    head = BoostedHead().fit(x, y, seed=0)
    reference = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=20,
        l2_regularization=10.0, early_stopping=True, validation_fraction=0.1,
        n_iter_no_change=20, random_state=0,
    ).fit(x, y)
    logits, attributions = head.decision(x)
    np.testing.assert_allclose(logits, reference.decision_function(x), atol=1e-10)
    np.testing.assert_allclose(attributions.sum(axis=1) + head.baseline_, logits, atol=1e-10)
    again = BoostedHead.from_dict(head.to_dict())
    assert np.array_equal(again.decision(x)[0], logits)


def test_label_column_with_other_values_names_file_and_column() -> None:
    schema = Schema.from_dict(
        {
            "name": "t",
            "fields": [
                {"name": "amount", "kind": "numeric"},
                {"name": "is_fraud", "kind": "label", "required": False},
            ],
        }
    )
    ok = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "is_fraud": [1, 0, -1, None]})
    schema.validate_frame(ok, source="labels.csv")
    bad = ok.assign(is_fraud=[1, 0, 2, 0])
    with pytest.raises(InputError) as info:
        schema.validate_frame(bad, source="labels.csv")
    message = str(info.value)
    assert "labels.csv" in message and "is_fraud" in message and "2.0" in message
    assert info.value.field == "is_fraud"


def test_fit_takes_the_label_column_by_name() -> None:
    x, fraud = _data(900)
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(x.shape[1])])
    frame["verdict"] = np.where(fraud == 1, 1.0, np.nan)
    bundle = make_detector("vae", schema="numeric", **FIT).fit(frame, y="verdict")
    assert bundle.metadata["labels"]["mode"] == "label-aware"
    assert "verdict" not in bundle.feature_names
    with pytest.raises(InputError, match="verdict"):
        make_detector("vae", **FIT).fit(frame.assign(verdict=3.0), y="verdict")


def test_boosted_head_grows_smaller_trees_on_few_frauds() -> None:
    rng = np.random.default_rng(0)

    def leaves_per_tree(n_frauds: int) -> np.ndarray:
        x = rng.normal(size=(6000, 4))
        y = np.zeros(len(x), dtype=np.int8)
        y[np.argsort(-(x[:, 0] + rng.normal(scale=0.5, size=len(x))))[:n_frauds]] = 1
        head = BoostedHead().fit(x, y, seed=0)
        ends = np.append(head.roots_[1:], len(head.leaf_))
        # A packed leaf points at itself; count the real leaves per tree.
        return np.array([head.leaf_[a:b].sum() for a, b in zip(head.roots_, ends, strict=True)])

    few, many = leaves_per_tree(60), leaves_per_tree(600)
    assert few.max() <= 3
    assert many.max() > 3 and many.max() <= 8
