"""Raw score -> 0-1 risk, and thresholds from an alert budget."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from gendetect.calibration import EmpiricalCalibrator, threshold_for_fpr


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    # Skewed like anomaly scores: most near the bottom, a long right tail.
    return np.random.default_rng(0).gamma(2.0, 1.5, size=20_000)


@pytest.fixture(scope="module")
def calibrator(reference: np.ndarray) -> EmpiricalCalibrator:
    return EmpiricalCalibrator().fit(reference)


def test_risk_is_monotone_and_in_unit_interval(
    calibrator: EmpiricalCalibrator, reference: np.ndarray
) -> None:
    grid = np.linspace(reference.min() - 5, reference.max() + 5, 10_001)
    risk = calibrator.risk(grid)
    assert risk.min() >= 0.0 and risk.max() <= 1.0
    assert (np.diff(risk) >= 0).all()
    assert risk[0] == 0.0 and risk[-1] == 1.0
    assert calibrator.risk(np.array([-1e12, 1e12])).tolist() == [0.0, 1.0]


def test_risk_is_the_share_of_reference_scoring_lower(
    calibrator: EmpiricalCalibrator, reference: np.ndarray
) -> None:
    probes = np.quantile(reference, [0.05, 0.25, 0.5, 0.9, 0.99])
    risk = calibrator.risk(probes)
    share_lower = (reference[None, :] < probes[:, None]).mean(axis=1)
    np.testing.assert_allclose(risk, share_lower, atol=2e-3)
    # On the reference itself the risk is ~uniform.
    r = calibrator.risk(reference)
    assert r.mean() == pytest.approx(0.5, abs=0.01)
    assert (r > 0.9).mean() == pytest.approx(0.1, abs=0.005)


@pytest.mark.parametrize("alert_rate", [0.001, 0.01, 0.05, 0.2])
def test_threshold_flags_the_alert_rate_on_the_reference(
    calibrator: EmpiricalCalibrator, reference: np.ndarray, alert_rate: float
) -> None:
    threshold = calibrator.threshold_for_alert_rate(alert_rate)
    flagged = (reference >= threshold).mean()
    assert flagged == pytest.approx(alert_rate, rel=0.1, abs=3e-4)
    # The risk at the threshold is 1 - alert rate.
    assert calibrator.risk(np.array([threshold]))[0] == pytest.approx(1 - alert_rate, abs=1e-3)


def test_thresholds_decrease_with_the_alert_rate(calibrator: EmpiricalCalibrator) -> None:
    rates = [0.001, 0.01, 0.1, 0.5, 0.9]
    thresholds = [calibrator.threshold_for_alert_rate(r) for r in rates]
    assert all(a > b for a, b in itertools.pairwise(thresholds))


def test_bad_alert_rates_and_unfitted_use() -> None:
    fitted = EmpiricalCalibrator().fit(np.arange(10.0))
    for rate in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            fitted.threshold_for_alert_rate(rate)
    with pytest.raises(RuntimeError):
        EmpiricalCalibrator().risk(np.zeros(3))
    with pytest.raises(ValueError):
        EmpiricalCalibrator().fit(np.array([np.nan, np.inf]))


def test_non_finite_reference_scores_are_ignored(reference: np.ndarray) -> None:
    dirty = np.concatenate([reference, [np.nan, np.inf, -np.inf]])
    a = EmpiricalCalibrator().fit(dirty)
    b = EmpiricalCalibrator().fit(reference)
    np.testing.assert_array_equal(a.quantiles_, b.quantiles_)


def test_round_trip(calibrator: EmpiricalCalibrator, reference: np.ndarray) -> None:
    again = EmpiricalCalibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    probes = np.concatenate([reference[:1000], [-1.0, 1e9]])
    np.testing.assert_array_equal(again.risk(probes), calibrator.risk(probes))
    assert again.threshold_for_alert_rate(0.01) == calibrator.threshold_for_alert_rate(0.01)
    assert again.n_points == calibrator.n_points


def test_small_grid_keeps_the_bundle_small(reference: np.ndarray) -> None:
    cal = EmpiricalCalibrator(n_points=101).fit(reference)
    assert len(cal.to_dict()["quantiles"]) == 101
    flagged = (reference >= cal.threshold_for_alert_rate(0.05)).mean()
    assert flagged == pytest.approx(0.05, rel=0.1)


def test_threshold_for_fpr(reference: np.ndarray) -> None:
    for fpr in (0.01, 0.1):
        assert (reference >= threshold_for_fpr(reference, fpr)).mean() == pytest.approx(
            fpr, rel=0.05
        )


def test_ties_at_the_floor() -> None:
    # Many records reconstructed perfectly score exactly 0: the threshold
    # for a 1% budget must still flag ~1%, not every tied record.
    reference = np.r_[np.zeros(9_900), np.linspace(1.0, 2.0, 100)]
    cal = EmpiricalCalibrator().fit(reference)
    assert (reference >= cal.threshold_for_alert_rate(0.01)).mean() == pytest.approx(0.01)
    risk = cal.risk(np.sort(reference))
    assert (np.diff(risk) >= 0).all()
    assert risk[0] <= 0.99 + 1e-3


def test_a_batch_gets_each_scores_own_risk() -> None:
    """Many scores are interpolated in sorted order: each risk is the one
    np.interp gives that score alone (the same bits), with ties in the
    reference, scores at its quantiles, beyond both ends and NaN."""
    rng = np.random.default_rng(4)
    reference = np.r_[rng.exponential(size=3000), np.zeros(500), np.full(200, 2.0)]
    cal = EmpiricalCalibrator().fit(reference)
    assert cal.quantiles_ is not None
    scores = np.r_[rng.normal(1.0, 2.0, size=20_000), cal.quantiles_, -5.0, 1e9, np.nan]
    rng.shuffle(scores)
    batch = cal.risk(scores)
    one_by_one = np.array([cal.risk(np.array([s]))[0] for s in scores])
    np.testing.assert_array_equal(batch, one_by_one)
    levels = np.linspace(0.0, 1.0, len(cal.quantiles_))
    np.testing.assert_array_equal(batch, np.interp(scores, cal.quantiles_, levels, 0.0, 1.0))
