"""Issue 21: the discriminator's last epochs against the frozen generator
(gendetect/models/gan/refine.py), the discriminator-scored GAN's step
budget, and the power mean that pools a network's per-feature terms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.member import top_mean
from gendetect.models.gan.params import DISC_MAX_STEPS, GANParams
from gendetect.models.gan.refine import refine_discriminator
from gendetect.models.gan.torch_model import build_gan_network
from gendetect.params import DetectorParams

FIT = {"max_epochs": 3, "batch_size": 128, "accelerator": "cpu", "seed": 0}


def _correlated(n: int, seed: int) -> np.ndarray:
    """Four features, the first two strongly tied together."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 1] = 0.95 * x[:, 0] + 0.3 * x[:, 1]
    return x


def _outliers(n: int, seed: int) -> np.ndarray:
    """Rows that break the tie between the first two features (each value
    alone stays within the bulk) or lie far out in one feature."""
    rng = np.random.default_rng(seed)
    x = _correlated(n, seed)
    half = n // 2
    x[:half, 0] = rng.choice([-2.0, 2.0], size=half)
    x[:half, 1] = -x[:half, 0]
    x[half:, 3] = rng.choice([-5.0, 5.0], size=n - half)
    return x


def test_refined_discriminator_ranks_injected_outliers_above_normal_rows() -> None:
    x = _correlated(2000, 0)
    test = np.vstack([_correlated(400, 1), _outliers(40, 2)])
    y = np.r_[np.zeros(400), np.ones(40)]
    bundle = make_detector(
        "gan", score="discriminator", tail_weight=0.0, gan_refine_epochs=5, **FIT
    ).fit(x)
    assert roc_auc_score(y, bundle.decision_function(test)) > 0.95


def test_refinement_trains_the_discriminator_only_and_is_deterministic() -> None:
    params = GANParams(reference_weight=1.0, refine_epochs=2)
    x = _correlated(300, 0)
    torch.manual_seed(0)
    net = build_gan_network(4, params)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    twin = build_gan_network(4, params)
    twin.load_state_dict(net.state_dict())
    refine_discriminator(net, x, params, seed=3)
    refine_discriminator(twin, x, params, seed=3)
    after = net.state_dict()
    moved = {key for key, value in after.items() if not torch.equal(value, before[key])}
    # The generator and the encoder are frozen; every discriminator layer moves.
    assert moved and all(key.startswith("disc_") for key in moved)
    assert all(key in moved for key in after if key.startswith("disc_") and "original" in key)
    for key, value in after.items():
        assert torch.equal(value, twin.state_dict()[key]), key
    assert all(p.requires_grad for p in net.generator_parameters())


def test_refinement_runs_only_where_the_score_reads_the_discriminator() -> None:
    x = _correlated(400, 0)
    plain = make_detector("gan", gan_refine_epochs=0, **FIT).fit(x)
    refined = make_detector("gan", gan_refine_epochs=3, **FIT).fit(x)
    # score="reconstruction" trains no reference, so nothing is refined.
    assert np.array_equal(plain.decision_function(x), refined.decision_function(x))
    disc = make_detector("gan", score="discriminator", gan_refine_epochs=0, **FIT).fit(x)
    disc_refined = make_detector("gan", score="discriminator", gan_refine_epochs=3, **FIT).fit(x)
    assert not np.array_equal(disc.decision_function(x), disc_refined.decision_function(x))


def test_a_bundle_saved_before_the_refinement_parameters_loads_and_scores_the_same(
    tmp_path: Path,
) -> None:
    x = _correlated(400, 0)
    bundle = make_detector("gan", score="discriminator", gan_refine_epochs=2, **FIT).fit(x)
    path = bundle.save(tmp_path / "b")
    manifest_path = path / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    # An older manifest has no gan_refine_* keys: the defaults fill them in
    # and the scores do not depend on them (they act during training only).
    for key in [k for k in manifest["params"] if k.startswith("gan_refine_")]:
        del manifest["params"][key]
    manifest_path.write_text(json.dumps(manifest))
    loaded = FraudModelBundle.load(path)
    assert np.array_equal(loaded.decision_function(x), bundle.decision_function(x))


def test_the_discriminator_scored_gan_trains_within_its_step_budget() -> None:
    x = _correlated(4000, 0)
    # Automatic schedule: 128-row batches, 29 steps per epoch (3,600 training rows).
    auto = {"batch_size": 128, "min_train_steps": 50, "patience_steps": 10_000, "seed": 0}
    disc = make_detector("gan", score="discriminator", gan_max_steps=100, **auto).fit(x)
    (result,) = disc.detector_.training_results().values()
    assert result.epochs_run == 4  # ceil(100 / 29)
    assert DetectorParams(score="discriminator").model_params("gan").max_steps == DISC_MAX_STEPS
    # The budget never goes below the schedule's minimum, and other scores have none.
    assert DetectorParams().model_params("gan").max_steps is None
    low = make_detector("gan", score="discriminator", gan_max_steps=10, **auto).fit(x)
    assert low.detector_.training_results()["gan"].epochs_run == 2  # ceil(50 / 29)


def test_power_mean_pools_features_and_old_bundles_keep_the_plain_mean(tmp_path: Path) -> None:
    c = np.array([[3.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(top_mean(c, 1.0, None, 2.0), [np.sqrt(2.5), 1.0])
    np.testing.assert_allclose(top_mean(c, 0.5, None, 2.0), [np.sqrt(5.0), 1.0])
    observed = np.array([[True, True, False, True], [True, True, True, True]])
    np.testing.assert_allclose(top_mean(c, 1.0, observed, 2.0), [np.sqrt(10 / 3), 1.0])
    x = _correlated(400, 0)
    plain = make_detector("vae", score_power=1.0, **FIT).fit(x)
    rms = make_detector("vae", score_power=2.0, **FIT).fit(x)
    assert not np.allclose(plain.decision_function(x), rms.decision_function(x))
    # A bundle from before score_power: neither its parameters nor its
    # members carry it; it loads with the plain mean whatever the default.
    path = plain.save(tmp_path / "old")
    manifest = json.loads((path / "bundle.json").read_text())
    del manifest["params"]["score_power"]
    for member in manifest["members"]:
        del member["score_power"]
    (path / "bundle.json").write_text(json.dumps(manifest))
    loaded = FraudModelBundle.load(path)
    assert np.array_equal(loaded.decision_function(x), plain.decision_function(x))
    again = FraudModelBundle.load(rms.save(tmp_path / "new"))
    assert np.array_equal(again.decision_function(x), rms.decision_function(x))


def test_the_discriminators_features_score_and_older_verdict_bundles_still_load(
    tmp_path: Path,
) -> None:
    x = _correlated(600, 0)
    test = np.vstack([_correlated(200, 1), _outliers(20, 2)])
    features = make_detector("gan", score="discriminator", **FIT).fit(x)
    scores = features.decision_function(test)
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(20)], scores) > 0.9
    path = features.save(tmp_path / "features")
    (member,) = json.loads((path / "bundle.json").read_text())["members"]
    assert len(member["extra_score"]["feature_center"]) == 32  # the last hidden layer
    assert np.array_equal(FraudModelBundle.load(path).decision_function(test), scores)
    # A bundle from before the feature distance scores by the verdict: its
    # parameters lack gan_disc_score (the default is now "features") and
    # its members carry no feature statistics.
    verdict = make_detector("gan", score="discriminator", gan_disc_score="verdict", **FIT).fit(x)
    path = verdict.save(tmp_path / "verdict")
    manifest = json.loads((path / "bundle.json").read_text())
    assert "extra_score" not in manifest["members"][0]
    del manifest["params"]["gan_disc_score"]
    (path / "bundle.json").write_text(json.dumps(manifest))
    loaded = FraudModelBundle.load(path)
    assert loaded.params.model_params("gan").disc_score == "features"
    assert np.array_equal(loaded.decision_function(test), verdict.decision_function(test))
    assert not np.allclose(verdict.decision_function(test), scores)
