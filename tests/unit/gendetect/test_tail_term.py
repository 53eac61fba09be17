"""The detector's tail term in a saved bundle, and bundles saved before it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(300, 4))
    test = rng.normal(size=(40, 4))
    test[:5, 2] = 8.0  # one feature far beyond anything in training
    return train, test


def test_tail_term_saves_and_bundles_without_it_score_by_the_networks(tmp_path: Path) -> None:
    train, test = _data()
    with_tails = make_detector("vae", seed=0, max_epochs=1).fit(train)
    scores = with_tails.decision_function(test)
    path = with_tails.save(tmp_path / "b")
    np.testing.assert_array_equal(FraudModelBundle.load(path).decision_function(test), scores)
    # The tail term counts: the records with one extreme feature lead.
    assert set(np.argsort(-scores)[:5]) == set(range(5))

    # A bundle written before the term (no "tails" in its manifest, no
    # tail_weight in its parameters) scores by its networks alone: as a
    # detector fitted with the term off (the same networks: the term does
    # not touch training).
    manifest_path = path / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["tails"], manifest["params"]["tail_weight"]
    manifest_path.write_text(json.dumps(manifest))
    networks_only = make_detector("vae", seed=0, max_epochs=1, tail_weight=0.0).fit(train)
    np.testing.assert_allclose(
        FraudModelBundle.load(path).decision_function(test),
        networks_only.decision_function(test), rtol=1e-12,
    )
