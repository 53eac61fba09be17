"""Each model declares its parameters once (a dataclass in its folder); the
detector's flat names, make_detector's keywords and the training config's
model section are derived from them."""

from __future__ import annotations

import dataclasses

import pytest

from gendetect import make_detector
from gendetect.models import MODEL_KINDS, get_model
from gendetect.models.gan.params import GANParams
from gendetect.models.vae.params import VAEParams
from gendetect.params import DetectorParams, DetectorSettings, validate_params


def test_flat_parameters_are_the_settings_plus_every_models_own() -> None:
    names = {f.name for f in dataclasses.fields(DetectorParams)}
    settings = {f.name for f in dataclasses.fields(DetectorSettings)}
    for kind in MODEL_KINDS:
        assert set(get_model(kind).params.flat_fields()) <= names
    assert names == settings | set(VAEParams.flat_fields()) | set(GANParams.flat_fields())
    # Defaults come from the models: declared once.
    assert DetectorParams().latent_dim == VAEParams().latent_dim == GANParams().latent_dim
    assert DetectorParams().gan_latent_noise == GANParams().latent_noise
    assert DetectorParams().beta == VAEParams().beta


def test_make_detector_keeps_the_flat_keywords() -> None:
    det = make_detector("vae", latent_dim=4, max_epochs=3, label_min_frauds=5)
    vae = det.params.model_params("vae")
    assert isinstance(vae, VAEParams) and vae.latent_dim == 4
    assert det.params.max_epochs == 3 and det.params.label_min_frauds == 5
    mse = det.params.model_params("vae_mse")
    assert mse.learned_variance is False  # the registered variant fixes it
    gan = make_detector("gan", score="discriminator").params
    assert gan.model_params("gan").reference_weight == 1.0
    assert gan.disc_weight == 0.0  # no longer rewritten: the scorer asks uses_discriminator
    assert gan.uses_discriminator


def test_validate_params_names_the_key() -> None:
    validate_params("vae", {"latent_dim": 4, "max_epochs": 2, "beta": 0.5})
    validate_params(None, {"gan_r1_weight": 0.5, "latent_dim": 4})
    validate_params("ensemble", {"ensemble": ["vae", "gan"], "ensemble_weights": [1, 1],
                                 "gan_recon_weight": 2.0})
    with pytest.raises(ValueError, match=r"^gan_r1_weight is not a parameter of a 'vae'"):
        validate_params("vae", {"gan_r1_weight": 0.5})
    with pytest.raises(ValueError, match="gan_r1_every"):
        validate_params("gan", {"gan_r1_every": 0})
    with pytest.raises(ValueError, match="latent_dim"):
        validate_params(None, {"latent_dim": 0})
    with pytest.raises(ValueError, match="unknown detector parameter"):
        validate_params(None, {"latnet_dim": 3})


def test_a_model_section_with_a_bad_model_value_fails_in_the_training_config() -> None:
    from training.config import ConfigError, validate_config

    with pytest.raises(ConfigError) as info:
        validate_config({"model": {"gan_r1_every": 0}})
    assert info.value.field == "model.gan_r1_every"
