"""Every registered model kind, and the ensemble, through the public API:
fit, score, predict, explain, save and load. The kinds come from the
registry, so a newly registered model is tested without touching this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.models import (
    DETECTOR_KINDS,
    ENSEMBLE,
    MODEL_KINDS,
    get_model,
    list_detector_kinds,
    list_models,
)
from gendetect.models.components import GenerativeNetwork
from gendetect.models.components.lightning import GenerativeModule
from gendetect.params import DetectorParams

N_FEATURES = 5
FIT = {"max_epochs": 2, "batch_size": 128, "accelerator": "cpu", "alert_rate": 0.05, "seed": 0}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(11).normal(size=(2, N_FEATURES))
    x = rng.normal(size=(n, 2)) @ mix + 0.1 * rng.normal(size=(n, N_FEATURES))
    return np.array([5.0, -1.0, 0.0, 50.0, 2.0]) + np.array([1.0, 0.2, 3.0, 10.0, 0.5]) * x


def test_registry_names_every_kind_once() -> None:
    assert list_models() == MODEL_KINDS
    assert list_detector_kinds() == DETECTOR_KINDS == (*MODEL_KINDS, ENSEMBLE)
    assert {"vae", "vae_mse", "gan"} <= set(MODEL_KINDS)
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*vae"):
        get_model("nope")


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_each_model_builds_a_lightning_module_around_a_torch_network(name: str) -> None:
    spec = get_model(name)
    assert spec.name == name and spec.description
    params = DetectorParams().model_params(name)
    assert isinstance(params, spec.params)
    module = spec.build_module(N_FEATURES, params)
    assert isinstance(module, GenerativeModule)
    assert isinstance(module.model, GenerativeNetwork)
    # Scoring builds the plain network alone, with the same state-dict keys.
    network = spec.build_network(N_FEATURES, params)
    assert not isinstance(network, GenerativeModule)
    assert network.state_dict().keys() == module.model.state_dict().keys()


def test_unknown_kinds_are_rejected_with_the_registered_choices() -> None:
    with pytest.raises(ValueError, match="unknown detector kind 'nope'"):
        make_detector("nope", **FIT).fit(_data(100, seed=0))
    with pytest.raises(ValueError, match="ensemble members must be distinct, from"):
        make_detector(ENSEMBLE, ensemble=["vae", "nope"], ensemble_weights=[1, 1])


@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    return _data(1500, seed=0)


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    x = _data(400, seed=1)
    x[:10] += np.array([6.0, -2.0, 9.0, 60.0, 3.0])  # a few clear outliers
    return x


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_kind_fits_scores_explains_and_round_trips(
    kind: str, train_x: np.ndarray, test_x: np.ndarray, tmp_path: Path
) -> None:
    bundle = make_detector(kind, **FIT).fit(train_x)
    scores = bundle.decision_function(test_x)
    assert scores.shape == (len(test_x),) and np.isfinite(scores).all()
    # The outliers rank high: the model learned something, whatever its kind.
    assert np.median(scores[:10]) > np.quantile(scores[10:], 0.9)
    labels = bundle.predict(test_x)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores >= bundle.threshold_).astype(int))
    proba = bundle.predict_proba(test_x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    explained = bundle.explain(test_x[:5], top_k=2)
    assert [len(row) for row in explained] == [2] * 5
    assert all(0.0 <= share <= 1.0 for row in explained for _, share in row)

    loaded = FraudModelBundle.load(bundle.save(tmp_path / kind))
    assert loaded.kind == kind
    np.testing.assert_array_equal(loaded.decision_function(test_x), scores)
    np.testing.assert_array_equal(loaded.predict(test_x), labels)
    assert loaded.explain(test_x[:5], top_k=2) == explained


def test_a_scoring_process_never_imports_lightning(tmp_path: Path) -> None:
    import subprocess
    import sys

    bundle = make_detector("ensemble", **FIT).fit(_data(300, seed=0))
    bundle.save(tmp_path / "b")
    code = (
        "import sys, numpy as np\n"
        "from gendetect.bundle import FraudModelBundle\n"
        f"b = FraudModelBundle.load({str(tmp_path / 'b')!r})\n"
        "b.score_records([{f'f{i}': 0.0 for i in range(5)}])\n"
        "b.decision_function(np.zeros((3, 5)))\n"
        "assert 'pytorch_lightning' not in sys.modules, 'lightning imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
