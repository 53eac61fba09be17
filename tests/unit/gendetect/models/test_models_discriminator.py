"""The GAN scored by its discriminator (issue 11) and the step-based
training schedule that keeps tiny data from collapsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.models.gan.loss import broadened_reference
from gendetect.params import DetectorParams, training_schedule

FIT = {"max_epochs": 2, "batch_size": 128, "accelerator": "cpu", "seed": 0}


def _data(n: int = 800) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)) @ np.array(
        [[1, 0.5, 0, 0], [0, 1, 0.3, 0], [0, 0, 1, 0], [0, 0, 0, 2.0]]
    )


@pytest.mark.parametrize("score", ["discriminator", "combined"])
def test_discriminator_scores_round_trip_and_match_batch_scoring(
    score: str, tmp_path: Path
) -> None:
    x = _data()
    bundle = make_detector("gan", score=score, **FIT).fit(x)
    scores = bundle.decision_function(x)
    assert np.isfinite(scores).all()
    assert bundle.params.model_params("gan").reference_weight == 1.0
    loaded = FraudModelBundle.load(bundle.save(tmp_path / "b"))
    assert np.array_equal(loaded.decision_function(x), scores)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    batch = bundle.score_frame(frame)
    np.testing.assert_allclose(batch["score"].to_numpy(), scores, rtol=1e-5, atol=1e-5)
    again = make_detector("gan", score=score, **FIT).fit(x)
    assert np.array_equal(again.decision_function(x), scores)


def test_discriminator_ranks_far_records_as_anomalous() -> None:
    x = _data(2000)
    bundle = make_detector("gan", score="discriminator", **{**FIT, "max_epochs": 5}).fit(x)
    far = np.array([[6.0, -6.0, 6.0, 12.0], [0.0, 0.0, 0.0, 20.0]])
    assert (bundle.decision_function(far) > np.quantile(bundle.decision_function(x), 0.99)).all()


def test_discriminator_score_needs_a_discriminator() -> None:
    with pytest.raises(ValueError, match="discriminator"):
        make_detector("vae", score="discriminator", **FIT).fit(_data(200))
    with pytest.raises(ValueError, match="score must be one of"):
        DetectorParams.from_dict({"score": "nope"})


def test_reconstruction_gan_keeps_its_training() -> None:
    assert DetectorParams().model_params("gan").reference_weight == 0.0
    assert DetectorParams(score="combined").model_params("gan").reference_weight == 1.0
    explicit = DetectorParams(score="combined", gan_reference_weight=0.5)
    assert explicit.model_params("gan").reference_weight == 0.5


def test_the_gans_r1_and_reconstruction_weights_are_parameters() -> None:
    gan = make_detector("gan", gan_r1_weight=0.0, gan_recon_weight=2.0, gan_r1_every=2)
    got = gan.params.model_params("gan")
    assert (got.r1_weight, got.recon_weight, got.r1_every) == (0.0, 2.0, 2)
    with pytest.raises(ValueError, match="gan_r1_every"):
        make_detector("gan", gan_r1_every=0)


@pytest.mark.parametrize("kind", ["mix", "noise", "marginals", "gaussian"])
def test_broadened_reference_shapes(kind: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(33, 5)
    ref = broadened_reference(x, kind)
    assert ref.shape == x.shape and torch.isfinite(ref).all()
    if kind == "marginals":
        # Every value comes from the same column of some record.
        for j in range(5):
            assert set(ref[:, j].tolist()) <= set(x[:, j].tolist())


def test_training_schedule_counts_steps_on_small_data_only() -> None:
    params = DetectorParams()
    assert training_schedule(60_000, params) == (256, 20, 3)
    batch, epochs, patience = training_schedule(40, params)
    steps_per_epoch = -(-40 // batch)
    assert batch >= 16 and steps_per_epoch >= 3
    assert epochs * steps_per_epoch >= params.min_train_steps
    assert patience * steps_per_epoch >= params.patience_steps
    off = DetectorParams(min_train_steps=0, patience_steps=0)
    assert training_schedule(40, off)[1:] == (20, 3)
    # An explicit max_epochs is used as given, with batch size and patience.
    explicit = DetectorParams(max_epochs=2, batch_size=128, patience=5)
    assert training_schedule(40, explicit) == (128, 2, 5)
