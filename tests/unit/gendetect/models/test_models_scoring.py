"""An accepted record always gets a finite score (issue 8, item 1).

Validation lets through any finite number, and a finite number can still
overflow on the way to the network: (x - median) / spread is infinite for
x near the float64 maximum and a spread below 1, float32 holds at most
3.4e38, and a network fed infinity returns NaN. Before the inputs were
clipped (scaling.CLIP_ROBUST_UNITS) the extreme array below scored NaN for
every kind, with NaN explanations.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from gendetect import make_detector
from gendetect.features.scaling import CLIP_ROBUST_UNITS, RobustScaler
from tests.records import tx

FIT = {"max_epochs": 1, "batch_size": 128, "accelerator": "cpu", "seed": 0}
BIG = float(np.finfo(np.float64).max)


def _train(n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)) * np.array([1.0, 0.01, 10.0, 1.0])


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("vae", {}),
        ("gan", {"disc_weight": 0.5}),
        ("ensemble", {}),
        # Without the log compression, only the clip stands between the
        # network and float32 overflow.
        ("vae", {"soft_limit": float("inf")}),
    ],
)
def test_extreme_finite_values_get_finite_scores_and_explanations(
    kind: str, extra: dict[str, float]
) -> None:
    bundle = make_detector(kind, **FIT, **extra).fit(_train())
    extreme = np.array([[BIG, BIG, -BIG, 1e300], [1e300, 1e-300, 0.0, -1e300]])
    scores = bundle.decision_function(extreme)
    assert np.isfinite(scores).all()
    assert (bundle.predict(extreme) == 1).all()
    risk = bundle.risk(extreme)
    assert np.isfinite(risk).all() and (risk >= 0).all() and (risk <= 1).all()
    for row in bundle.explain(extreme, top_k=4):
        shares = [share for _, share in row]
        assert np.isfinite(shares).all() and sum(shares) == pytest.approx(1.0)


def test_huge_amount_with_extreme_window_features_is_scored_and_flagged(
    small_transactions: pd.DataFrame,
) -> None:
    bundle = make_detector("ensemble", schema="transactions", **FIT).fit(small_transactions)
    names = bundle.pipeline.window_feature_names  # type: ignore[union-attr]
    windows = {
        name: 1e12 if "nb_tx" in name else (1.0 if "risk" in name else 0.0) for name in names
    }
    record = tx(10**12, datetime(2024, 1, 31, 3, 0), amount=1e6)
    ordinary = tx(10**12 + 1, datetime(2024, 1, 31, 12, 0), amount=20.0)
    plain = {name: 1.0 if "nb_tx" in name else (0.0 if "risk" in name else 20.0) for name in names}
    extreme, normal = bundle.score_records([record, ordinary], [windows, plain])
    assert np.isfinite(extreme["score"]) and 0.0 <= extreme["risk"] <= 1.0
    assert extreme["is_fraud"] and extreme["score"] > normal["score"]
    contributions = [f["contribution"] for f in extreme["top_features"]]
    assert np.isfinite(contributions).all()


def test_clip_leaves_ordinary_values_alone_and_bounds_the_rest() -> None:
    x = _train()
    scaler = RobustScaler(soft_limit=5.0).fit(x)
    # Values within the clip go through the plain formula: scores of earlier
    # versions stay as they were.
    z = (x * 50 - scaler.center_) / scaler.scale_
    assert np.abs(z).max() < CLIP_ROBUST_UNITS
    excess = np.abs(z) - 5.0
    expected = np.where(excess > 0, np.sign(z) * (5.0 + np.log1p(np.maximum(excess, 0))), z)
    np.testing.assert_array_equal(scaler.transform(x * 50), expected)
    # Beyond it: finite, bounded, and still ordered up to the bound.
    column = np.array([1e3, 1e6, 1e9, 1e300, BIG, -BIG])
    out = scaler.transform(np.tile(column[:, None], (1, 4)))
    bound = 5.0 + np.log1p(CLIP_ROBUST_UNITS - 5.0)
    assert np.isfinite(out).all() and np.abs(out).max() <= bound
    assert (np.diff(out[:5, 0]) >= 0).all() and out[-1, 0] == -out[-2, 0]
