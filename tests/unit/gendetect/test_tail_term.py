"""The detector's tail term in a saved bundle, bundles saved before it, and
its default weight by score mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.params import DISC_TAIL_WEIGHT, TAIL_WEIGHT, DetectorParams


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
        networks_only.decision_function(test),
        rtol=1e-12,
    )


FIT = {"max_epochs": 1, "batch_size": 128, "accelerator": "cpu", "seed": 0}


def test_tail_weight_default_depends_on_the_score_mode() -> None:
    assert DetectorParams().effective_tail_weight == TAIL_WEIGHT == 0.5
    assert DetectorParams(score="combined").effective_tail_weight == TAIL_WEIGHT
    # The discriminator alone reads no tail term by default (models/README.md).
    assert DetectorParams(score="discriminator").effective_tail_weight == DISC_TAIL_WEIGHT == 0.0
    given = DetectorParams(score="discriminator", tail_weight=0.25)
    assert given.effective_tail_weight == 0.25
    with pytest.raises(ValueError, match="tail_weight"):
        DetectorParams.from_dict({"tail_weight": -1.0})


def test_discriminator_scored_gan_skips_the_tail_term_and_old_bundles_keep_it(
    tmp_path: Path,
) -> None:
    train, test = _data()
    default = make_detector("gan", score="discriminator", **FIT).fit(train)
    assert default.detector_.tails is None
    off = make_detector("gan", score="discriminator", tail_weight=0.0, **FIT).fit(train)
    np.testing.assert_array_equal(default.decision_function(test), off.decision_function(test))

    # Bundles saved before the mode-dependent default store tail_weight 0.5
    # (it was a number) and their tail state: they keep the term.
    old = make_detector("gan", score="discriminator", tail_weight=0.5, **FIT).fit(train)
    scores = old.decision_function(test)
    assert not np.allclose(scores, default.decision_function(test))
    path = old.save(tmp_path / "b")
    assert json.loads((path / "bundle.json").read_text())["params"]["tail_weight"] == 0.5
    loaded = FraudModelBundle.load(path)
    assert loaded.detector_.tails is not None
    np.testing.assert_array_equal(loaded.decision_function(test), scores)


@pytest.mark.parametrize(("kind", "score"), [("ensemble", "reconstruction"), ("gan", "combined")])
def test_reconstruction_and_combined_scores_keep_the_tail_term(kind: str, score: str) -> None:
    train, test = _data()
    default = make_detector(kind, score=score, **FIT).fit(train)
    given = make_detector(kind, score=score, tail_weight=0.5, **FIT).fit(train)
    assert default.detector_.tails is not None
    np.testing.assert_array_equal(default.decision_function(test), given.decision_function(test))
