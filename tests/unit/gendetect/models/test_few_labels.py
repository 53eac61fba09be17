"""Learning from the first confirmed fraud and from cleared transactions
(issue 21): the few-label head, its fraud-similarity term, and cleared
(genuine) rows counting more in the networks' training rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.detector import _weighted
from gendetect.label_aware import nearest_distance
from gendetect.metrics import average_precision

FIT = {"max_epochs": 2, "batch_size": 128, "accelerator": "cpu", "seed": 0}
KINDS = ("vae", "vae_mse", "gan", "ensemble")


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows, plus 5% frauds in one tight cluster away from them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    fraud = rng.random(n) < 0.05
    x[fraud] = rng.normal(loc=(1.5, -1.5, 0.0, 0.0, 0.0), scale=0.3, size=(int(fraud.sum()), 5))
    return x, fraud.astype(np.int8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("setting", ["clean_normal", "few_label"])
def test_every_kind_learns_from_a_single_confirmed_fraud(
    kind: str, setting: str, tmp_path: Path
) -> None:
    x, fraud = _data(500, seed=0)
    one = int(np.flatnonzero(fraud)[0])
    # clean-normal: every other row cleared; few-label: every other row unknown.
    y = np.where(fraud == 1, -1, 0) if setting == "clean_normal" else np.full(len(x), -1)
    y[one] = 1
    bundle = make_detector(kind, **FIT).fit(x, y)
    labels = bundle.metadata["labels"]
    assert labels["mode"] == "label-aware" and labels["frauds"] == 1
    assert labels["fraud_similarity"] and "few-label mode" in labels["reason"]
    assert bundle.label_head_.head_weight_ == pytest.approx(1 / 21)  # trees shrunk: 1 fraud
    scores = bundle.decision_function(x)
    assert np.isfinite(scores).all()
    # Stored as JSON arrays, scored the same after loading.
    loaded = FraudModelBundle.load(bundle.save(tmp_path / "b"))
    assert np.array_equal(loaded.decision_function(x), scores)
    assert loaded.explain(x[:3]) == bundle.explain(x[:3])


def test_five_labels_move_the_same_kind_of_fraud_up_in_a_fresh_draw() -> None:
    x, fraud = _data(2000, seed=1)
    x_new, fraud_new = _data(2000, seed=2)
    y = np.full(len(x), -1)
    y[np.flatnonzero(fraud)[:5]] = 1
    plain = make_detector("vae", **FIT).fit(x)
    aware = make_detector("vae", **FIT).fit(x, y)
    assert aware.label_head_.active and aware.label_head_.prototypes_.shape == (5, 5)
    ap_plain = average_precision(fraud_new, plain.decision_function(x_new))
    ap_aware = average_precision(fraud_new, aware.decision_function(x_new))
    assert ap_aware > ap_plain + 0.05
    # The labelled frauds' unlabelled twins rank above the normal rows.
    scores = aware.decision_function(x)
    assert np.median(scores[fraud == 1]) > np.quantile(scores[fraud == 0], 0.9)


def test_cleared_rows_count_more_deterministically() -> None:
    x, fraud = _data(600, seed=3)
    unknown = np.full(len(x), -1)
    cleared = unknown.copy()
    cleared[np.flatnonzero(fraud == 0)[:200]] = 0
    plain = make_detector("vae", **FIT).fit(x, unknown).decision_function(x)
    a = make_detector("vae", **FIT).fit(x, cleared).decision_function(x)
    b = make_detector("vae", **FIT).fit(x, cleared).decision_function(x)
    assert np.array_equal(a, b) and not np.array_equal(a, plain)
    # Weight 1 is "like any unlabelled row" in training: the unlabelled
    # detector exactly, once the cleared rows' neighbour term is off.
    same = make_detector("vae", label_genuine_weight=1, neighbour_weight=0.0, **FIT).fit(x, cleared)
    assert np.array_equal(same.decision_function(x), plain)
    # One cleared row fits too.
    single = unknown.copy()
    single[int(np.flatnonzero(fraud == 0)[0])] = 0
    assert np.isfinite(make_detector("vae", **FIT).fit(x, single).decision_function(x)).all()


def test_weighted_rows_repeat_cleared_rows_only_when_some_are_unlabelled() -> None:
    rows = np.array([0, 2, 3, 5])
    cleared = np.array([True, False, False, True, False, False])
    assert _weighted(rows, cleared, 3).tolist() == [0, 0, 0, 2, 3, 3, 3, 5]
    assert _weighted(rows, None, 3) is rows
    assert _weighted(rows, np.zeros(6, dtype=bool), 3) is rows
    assert _weighted(rows, np.ones(6, dtype=bool), 3) is rows  # all cleared: nothing to favour


def test_nearest_distance_matches_the_direct_computation() -> None:
    rng = np.random.default_rng(0)
    z, protos = rng.normal(size=(50, 7)), rng.normal(size=(4, 7))
    direct = np.sqrt(((z[:, None, :] - protos[None]) ** 2).sum(-1)).min(axis=1)
    assert np.allclose(nearest_distance(z, protos), direct)


def test_few_label_mode_weighs_the_unsupervised_score_at_least_one(tmp_path: Path) -> None:
    """Below 20 frauds the unsupervised score weighs FEW_LABEL_BLEND (1), not
    `label_blend` (0.5); a bundle saved before that (no weight stored) keeps
    `label_blend`."""
    from gendetect.label_aware import FEW_LABEL_BLEND

    x, fraud = _data(800, seed=4)
    y = np.full(len(x), -1)
    y[np.flatnonzero(fraud)[:5]] = 1
    bundle = make_detector("vae", **FIT).fit(x, y)
    head = bundle.label_head_
    assert head.unsupervised_blend == FEW_LABEL_BLEND and head.blend == 0.5
    ev = bundle.detector_.evidence(bundle.features(x))
    with_one = head.scores(ev)
    state = head.state()
    assert state is not None and state.pop("unsupervised_weight") == FEW_LABEL_BLEND
    old = type(head).from_state(state, min_frauds=1, blend=0.5, summary=head.summary_)
    center, spread = head.unsupervised_center_spread_
    unsupervised = (ev.score - center) / spread
    np.testing.assert_allclose(with_one - old.scores(ev), 0.5 * unsupervised, atol=1e-12)
    # Stored and read back: the loaded bundle scores the same.
    loaded = FraudModelBundle.load(bundle.save(tmp_path / "b"))
    assert np.array_equal(loaded.decision_function(x), bundle.decision_function(x))
    # From 20 frauds `label_blend` is the weight.
    many = np.where(fraud == 1, 1, -1)
    assert (many == 1).sum() >= 20
    assert make_detector("vae", **FIT).fit(x, many).label_head_.unsupervised_weight_ is None


def test_the_fraud_similarity_covers_up_to_a_hundred_frauds() -> None:
    """60 confirmed frauds (10% of a handbook week's) keep the similarity
    term; above PROTOTYPE_MAX_FRAUDS (100) the trees alone decide."""
    from gendetect.label_aware import PROTOTYPE_MAX_FRAUDS

    x, fraud = _data(3000, seed=5)
    frauds = np.flatnonzero(fraud)
    assert len(frauds) > PROTOTYPE_MAX_FRAUDS
    some = np.full(len(x), -1)
    some[frauds[:60]] = 1
    head = make_detector("vae", **FIT).fit(x, some).label_head_
    assert head.prototypes_ is not None and head.prototypes_.shape == (60, 5)
    assert head.unsupervised_weight_ is None  # 60 frauds: not the few-label mode
    every = np.where(fraud == 1, 1, -1)
    assert make_detector("vae", **FIT).fit(x, every).label_head_.prototypes_ is None
