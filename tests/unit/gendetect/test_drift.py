"""Drift: PSI per model input and for the score against the training
reference the bundle keeps; shown on simulator runs with and without a
shift in spending."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendetect import drift
from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import simulate_transactions
from training.config import load_config
from training.data import prepare_data

AMOUNT_INPUTS = ("amount", "log_amount")


def test_psi_is_zero_on_the_same_shares_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    edges = drift._edges(reference, 10)
    expected = drift.shares(edges, reference)
    assert len(edges) == 9 and expected == pytest.approx(np.full(10, 0.1), abs=1e-3)
    same = drift.psi(expected, drift.shares(edges, rng.normal(size=5_000)))
    moved = drift.psi(expected, drift.shares(edges, rng.normal(0.5, 1.0, size=5_000)))
    far = drift.psi(expected, drift.shares(edges, rng.normal(2.0, 1.0, size=5_000)))
    assert same < 0.02 < 0.1 < moved < far
    # An empty bin is a large but finite term; non-finite values are ignored.
    assert np.isfinite(drift.psi(expected, drift.shares(edges, np.full(100, 50.0))))
    assert drift.shares(edges, np.array([np.nan, np.inf, 0.0])).sum() == pytest.approx(1.0)


def test_a_flag_gets_its_values_as_edges() -> None:
    values = np.r_[np.zeros(700), np.ones(300)]
    entry = drift._entry(values, 10)
    assert entry["edges"] == [0.0, 1.0]
    assert entry["expected"] == pytest.approx([0.0, 0.7, 0.3])


def _prepared(seed: int, amount_factor: float = 1.0):  # type: ignore[no-untyped-def]
    df = simulate_transactions(n_customers=200, n_terminals=400, days=30, seed=seed,
                               amount_factor=amount_factor)
    config = load_config(overrides={"evaluation": {"holdout_days": 0}})
    return prepare_data(df, config, source=f"sim-{seed}")


@pytest.fixture(scope="module")
def fitted() -> FraudModelBundle:
    data = _prepared(seed=0)
    return FraudModelBundle("vae", schema=data.schema, max_epochs=1, seed=0).fit(data.train)


def test_the_reference_is_kept_in_the_bundle(fitted: FraudModelBundle, tmp_path: Path) -> None:
    reference = fitted.metadata["drift_reference"]
    assert set(reference["features"]) == set(fitted.feature_names)
    assert len(reference["score"]["expected"]) == len(reference["score"]["edges"]) + 1
    loaded = FraudModelBundle.load(fitted.save(tmp_path / "bundle"))
    assert loaded.metadata["drift_reference"] == reference


def test_no_drift_on_the_same_spending_profile(fitted: FraudModelBundle) -> None:
    """Another simulator run (other customers, other seed), same profile."""
    report = drift.bundle_drift(fitted, _prepared(seed=1).train)
    assert report is not None
    assert not report.detected, report.as_dict()
    assert report.max_psi < drift.DEFAULT_LEVEL


def test_drift_when_the_spending_profile_shifts(fitted: FraudModelBundle) -> None:
    """Customers who spend 2.5x as much: the amount inputs and the score
    drift; the amount against the customer's own history does not."""
    report = drift.bundle_drift(fitted, _prepared(seed=1, amount_factor=2.5).train)
    assert report is not None and report.detected
    for name in AMOUNT_INPUTS:
        assert report.features[name] > 0.25, report.as_dict()
    assert drift.SCORE in report.drifted
    assert report.features["amount_vs_customer_30d"] < drift.DEFAULT_LEVEL
    metrics = report.as_metrics()
    assert metrics["drift.amount"] == report.features["amount"]
    assert metrics["drift.n_drifted"] == len(report.drifted)


def test_a_recent_window_reports_every_n_rows(fitted: FraudModelBundle) -> None:
    recent = _prepared(seed=1, amount_factor=2.5).train.head(1200)
    x = fitted.features(recent)
    scores = fitted.decision_function(recent)
    window = drift.RecentWindow(fitted.metadata["drift_reference"], fitted.feature_names,
                                size=1000, every=400, min_rows=600)
    reports = [window.add(x[i : i + 200], scores[i : i + 200]) for i in range(0, 1200, 200)]
    assert [r is not None for r in reports] == [False, False, True, False, True, False]
    assert window.last is not None and window.last.rows == 1000 and window.last.detected


def test_live_drift_of_scored_records_reaches_the_metrics(fitted: FraudModelBundle) -> None:
    """What the API does: records as validated (with their behaviour
    features) and their scores; a report every tenth of the window once it
    is half full, computed off the request path, sets the /metrics gauges."""
    import time

    from serving.metrics import Metrics

    data = _prepared(seed=1, amount_factor=2.5).train.iloc[::7].head(300)
    window_cols = list(fitted.pipeline.window_feature_names)
    records = data.drop(columns=window_cols).to_dict("records")
    windows = data[window_cols].to_dict("records")
    scores = fitted.decision_function(data)
    metrics = Metrics()
    live = drift.LiveDrift(fitted, size=200, on_report=metrics.drift_report)
    live.add(records[:50], windows[:50], scores[:50])
    assert live.last is None and not live._busy  # a quarter full: no report yet
    for i in range(50, 300, 50):
        live.add(records[i : i + 50], windows[i : i + 50], scores[i : i + 50])
        deadline = time.monotonic() + 30
        while live._busy and time.monotonic() < deadline:
            time.sleep(0.02)
    assert live.last is not None and live.last.rows == 200 and live.last.detected
    # The same model inputs as the batch path: the same PSI on the same rows.
    offline = drift.bundle_drift(fitted, data.iloc[-200:])
    assert offline is not None
    assert live.last.features == pytest.approx(offline.features)
    assert live.last.score == pytest.approx(offline.score)
    text = metrics.render().decode()
    assert f'gendetect_drift_psi{{input="amount"}} {live.last.features["amount"]}' in text
    assert "gendetect_drift_detected 1.0" in text and "gendetect_drift_level 0.2" in text
    assert "gendetect_drift_window_rows 200.0" in text


def test_live_drift_is_off_for_a_bundle_without_reference(fitted: FraudModelBundle) -> None:
    class Old:
        def __init__(self) -> None:
            self.metadata: dict[str, object] = {}

    live = drift.LiveDrift(Old(), size=100)
    assert not live.enabled
    live.add([{}] * 20, None, [0.0] * 20)  # nothing kept, nothing computed
    assert live.last is None
