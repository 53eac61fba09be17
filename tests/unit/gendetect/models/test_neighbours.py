"""The cleared rows' neighbour term (gendetect/models/neighbours.py): when it
is fitted, that it scores rows far from every cleared row higher, and that
a bundle keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.metrics import roc_auc
from gendetect.models.neighbours import NormalNeighbours

FIT = {"seed": 0, "max_epochs": 1, "min_train_steps": 0}


def _two_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal rows in two tight clusters (every feature -3 or every feature
    +3); the anomalies sit between them, inside every feature's training
    range (no tail term can see them)."""
    rng = np.random.default_rng(seed)

    def cluster(n: int) -> np.ndarray:
        side = np.where(rng.random(n) < 0.5, -3.0, 3.0)
        return side[:, None] + rng.normal(scale=0.1, size=(n, 4))

    anomalies = rng.normal(scale=0.1, size=(20, 4))
    test = np.vstack([cluster(80), anomalies])
    y = np.r_[np.zeros(80), np.ones(20)]
    return cluster(400), test, y


def test_kth_distance_and_contributions_match_a_brute_force_search() -> None:
    rng = np.random.default_rng(1)
    reference, rows = rng.normal(size=(60, 3)), rng.normal(size=(7, 3))
    term = NormalNeighbours(k=5).fit(reference)
    parts = term.contributions(rows)
    distances = np.sqrt(((rows[:, None, :] - reference[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(parts.sum(axis=1), np.sort(distances, axis=1)[:, 4], rtol=1e-10)
    assert (parts >= 0).all()
    # A reference row is left out of its own neighbours.
    own = np.sqrt(((reference[:, None, :] - reference[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(term.reference_terms(), np.sort(own, axis=1)[:, 5], rtol=1e-10)
    # A gap sits at the median and adds nothing.
    gappy = rows.copy()
    gappy[0, 1] = np.nan
    assert term.contributions(gappy)[0, 1] == 0.0


def test_the_sample_is_capped_and_seeded() -> None:
    rows = np.random.default_rng(2).normal(size=(500, 2))
    a = NormalNeighbours().fit(rows, seed=3, max_rows=100).reference_
    b = NormalNeighbours().fit(rows, seed=3, max_rows=100).reference_
    assert a is not None and b is not None and a.shape == (100, 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["vae", "gan", "ensemble"])
def test_every_kind_fits_on_cleared_rows_and_the_term_finds_the_gap(kind: str) -> None:
    train, test, y = _two_clusters()
    cleared = make_detector(kind, **FIT).fit(train, np.zeros(len(train)))
    assert cleared.detector_.neighbours is not None
    # The same networks without the term: the term does not touch training.
    networks = make_detector(kind, neighbour_weight=0.0, **FIT).fit(train, np.zeros(len(train)))
    assert networks.detector_.neighbours is None
    with_term, without = cleared.decision_function(test), networks.decision_function(test)
    assert np.isfinite(with_term).all()
    assert roc_auc(y, with_term) > roc_auc(y, without)
    assert roc_auc(y, with_term) >= 0.95
    # The explanations carry the term: the contributions change with it.
    _, parts = cleared.score_parts(cleared.features(test[-1:]))
    _, parts_without = networks.score_parts(networks.features(test[-1:]))
    assert not np.allclose(parts, parts_without)


def test_no_term_without_cleared_rows_or_with_a_confirmed_fraud() -> None:
    train, test, _ = _two_clusters()
    plain = make_detector("vae", **FIT).fit(train)
    assert plain.detector_.neighbours is None
    unknown = make_detector("vae", **FIT).fit(train, np.full(len(train), -1))
    assert unknown.detector_.neighbours is None
    np.testing.assert_array_equal(unknown.decision_function(test), plain.decision_function(test))
    labels = np.zeros(len(train))
    labels[0] = 1
    assert make_detector("vae", **FIT).fit(train, labels).detector_.neighbours is None


def test_the_term_round_trips_through_a_bundle_as_a_plain_array(tmp_path: Path) -> None:
    train, test, _ = _two_clusters()
    bundle = make_detector("ensemble", **FIT).fit(train, np.zeros(len(train)))
    path = bundle.save(tmp_path / "b")
    assert (path / "neighbours.npy").is_file()
    np.load(path / "neighbours.npy", allow_pickle=False)  # no pickled objects
    assert "neighbours" in json.loads((path / "bundle.json").read_text())
    loaded = FraudModelBundle.load(path)
    saved, back = bundle.detector_.neighbours, loaded.detector_.neighbours
    assert saved is not None and back is not None
    assert (back.k, back.center_spread) == (saved.k, saved.center_spread)
    np.testing.assert_array_equal(back.reference_, saved.reference_)
    np.testing.assert_array_equal(loaded.decision_function(test), bundle.decision_function(test))
    np.testing.assert_array_equal(
        loaded.score_parts(loaded.features(test))[1], bundle.score_parts(bundle.features(test))[1]
    )
