"""RobustScaler.inverse_transform: the way back to original units that the
explanations' expected values take."""

from __future__ import annotations

import numpy as np

from gendetect.features.scaling import RobustScaler


def _heavy_tailed(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.lognormal(3.0, 1.5, size=n),  # amounts: far beyond soft_limit in the tail
        rng.normal(100.0, 30.0, size=n),
        rng.integers(0, 2, size=n).astype(np.float64),  # a flag (IQR 0 or 1)
        np.full(n, 7.0),  # a constant column (spread falls back to 1)
    ])


def test_round_trip_inside_and_beyond_the_soft_limit() -> None:
    x = _heavy_tailed(2000, 0)
    scaler = RobustScaler(soft_limit=5.0).fit(x[:1000])
    z = scaler.transform(x)
    assert (np.abs(z) > 5.0).any()  # the compressed tail is exercised
    np.testing.assert_allclose(scaler.inverse_transform(z), x, rtol=1e-9, atol=1e-9)


def test_round_trip_without_compression_and_with_gaps() -> None:
    x = _heavy_tailed(500, 1)
    x[::7, 1] = np.nan
    scaler = RobustScaler(soft_limit=np.inf).fit(x)
    back = scaler.inverse_transform(scaler.transform(x))
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)


def test_out_of_range_network_outputs_stay_finite() -> None:
    scaler = RobustScaler().fit(_heavy_tailed(500, 2))
    far = np.array([[1e6, -1e6, 1e30, -np.inf], [np.inf, 40.0, -40.0, 0.0]])
    back = scaler.inverse_transform(far)
    assert np.isfinite(back).all()
    # Order is kept: a larger scaled value never maps to a smaller original one.
    assert back[0, 0] > scaler.inverse_transform(np.array([[20.0, 0, 0, 0]]))[0, 0]
