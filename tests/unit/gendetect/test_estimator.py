"""The bundle as a scikit-learn estimator: the library's own estimator
checks, clone, get/set_params, a Pipeline, a grid search, and PyOD's
fitted attributes (decision_scores_, labels_, threshold_, contamination)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle

TINY = {"max_epochs": 1, "hidden": (4,), "latent_dim": 2, "batch_size": 16, "seed": 0}


class _UnsupervisedFace(FraudModelBundle):
    """The bundle with fit's labels left out. scikit-learn's generic checks
    pass class ids (0, 1, 2, 3) as `y`; the bundle reads `y` as fraud labels
    (1 / 0 / -1) and rejects the others, as it should (tests/unit/gendetect/models/test_labels.py).
    Every other method is the bundle's own."""

    def fit(self, X: Any, y: Any = None) -> _UnsupervisedFace:
        super().fit(X)
        return self


# Checks the bundle fails on purpose, and why.
EXPECTED_FAILED_CHECKS = {
    # PyOD's convention: predict / fit_predict give 1 = anomalous, 0 = normal
    # (scikit-learn's outlier detectors give -1 / +1), and decision_function
    # is higher for more anomalous records.
    "check_outliers_fit_predict": "PyOD's 0/1 verdicts, not scikit-learn's -1/+1",
    "check_outliers_train": "PyOD's 0/1 verdicts and 'higher = more anomalous' scores",
    # The networks score in float32; matrix products over a different number
    # of rows round differently (~1e-7 relative), beyond the check's 1e-7.
    "check_methods_subset_invariance": "float32 networks: ~1e-7 relative between batch sizes",
}


@parametrize_with_checks(
    [_UnsupervisedFace("vae", alert_rate=0.1, **TINY)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    logging.disable(logging.WARNING)
    try:
        check(estimator)
    finally:
        logging.disable(logging.NOTSET)


def _labelled(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 50.0, 1.0, -2.0]
    y = np.zeros(n, dtype=np.int64)
    y[:12] = 1
    x[:12] += [4.0, 60.0, 0.8, 15.0]
    return x, y


def test_constructor_arguments_are_stored_as_given_and_clone_works() -> None:
    det = make_detector("vae", latent_dim=4, max_epochs=3, alert_rate=0.05)
    params = det.get_params()
    assert params["latent_dim"] == 4 and params["max_epochs"] == 3 and params["kind"] == "vae"
    assert params["beta"] == 1.0  # a default
    twin = clone(det)
    assert twin.get_params() == params and twin is not det
    # Checked in fit, not in the constructor (scikit-learn's convention).
    odd = FraudModelBundle("vae", alert_rate=2.0)
    assert odd.get_params()["alert_rate"] == 2.0
    with pytest.raises(ValueError, match="alert_rate"):
        odd.fit(np.zeros((20, 2)))
    with pytest.raises(ValueError, match="invalid parameter 'nope'"):
        det.set_params(nope=1)


def test_contamination_is_the_alert_rate() -> None:
    det = make_detector("vae", alert_rate=0.05)
    assert det.contamination == 0.05
    det.contamination = 0.02
    assert det.alert_rate == 0.02 and det.get_params()["alert_rate"] == 0.02


def test_fitted_attributes_follow_pyod() -> None:
    x, _ = _labelled()
    det = make_detector("vae", alert_rate=0.05, **TINY)
    verdicts = det.fit_predict(x)
    np.testing.assert_array_equal(verdicts, det.labels_)
    np.testing.assert_allclose(det.decision_scores_, det.decision_function(x), rtol=1e-12)
    np.testing.assert_array_equal(det.labels_, (det.decision_scores_ >= det.threshold_))
    assert set(np.unique(det.labels_)) <= {0, 1}
    assert det.n_features_in_ == 4
    assert det.label_summary_["mode"] == "unsupervised"


def test_pipeline_with_a_scaler_fits_and_scores() -> None:
    x, _ = _labelled()
    pipe = make_pipeline(StandardScaler(), make_detector("vae", alert_rate=0.05, **TINY))
    pipe.fit(x)
    scores = pipe.decision_function(x)
    assert scores.shape == (len(x),) and np.isfinite(scores).all()
    assert set(np.unique(pipe.predict(x))) <= {0, 1}


def test_grid_search_over_a_parameter_with_roc_auc() -> None:
    x, y = _labelled()
    search = GridSearchCV(
        make_detector("vae", **TINY), {"latent_dim": [1, 2]}, scoring="roc_auc",
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    )
    search.fit(x, y)
    assert search.best_params_["latent_dim"] in (1, 2)
    assert 0.5 < search.best_score_ <= 1.0
    assert search.best_estimator_.get_params()["latent_dim"] == search.best_params_["latent_dim"]
