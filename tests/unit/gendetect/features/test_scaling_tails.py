"""Per-column tail limits of the input scaler, its inverse, and the manifest
format written before the limits existed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gendetect.features.scaling import RobustScaler


def _long_and_light(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Column 0: a long right tail (5% of rows far out, as a lab value whose
    extremes decide); column 1: light (normal); column 2: binary."""
    rng = np.random.default_rng(seed)
    long = rng.normal(size=n)
    far = rng.random(n) < 0.05
    long[far] += rng.uniform(10, 60, size=far.sum())
    return np.column_stack([long, rng.normal(size=n), rng.integers(0, 2, size=n).astype(float)])


def _robust_z(scaler: RobustScaler, x: np.ndarray) -> np.ndarray:
    assert scaler.center_ is not None and scaler.scale_ is not None
    return (x - scaler.center_) / scaler.scale_


def test_long_tailed_column_stays_linear_over_its_training_tail() -> None:
    x = _long_and_light()
    scaler = RobustScaler(soft_limit=5.0, limit_quantile=0.99, wide_quantile=0.999).fit(x)
    raw = _robust_z(scaler, x)
    limits, wide = scaler.limits(), scaler.limits(wide=True)
    # The long column's limit is its own 99th percentile of |z|, far beyond 5;
    # the light and binary columns keep soft_limit.
    assert limits[0] == pytest.approx(np.quantile(np.abs(raw[:, 0]), 0.99))
    assert limits[0] > 20
    np.testing.assert_array_equal(limits[1:], 5.0)
    assert wide[0] >= limits[0]
    # Within its limit a value is untouched; beyond, compressed, order kept.
    z = scaler.transform(x)
    inside = np.abs(raw[:, 0]) <= limits[0]
    np.testing.assert_allclose(z[inside, 0], raw[inside, 0], rtol=1e-12)
    assert (np.abs(z[~inside, 0]) < np.abs(raw[~inside, 0])).all()
    order = np.argsort(x[:, 0])
    assert (np.diff(z[order, 0]) >= 0).all()
    # Without quantiles the old behaviour: everything beyond 5 is compressed.
    old = RobustScaler(soft_limit=5.0).fit(x)
    assert old.transform(x)[:, 0].max() < 5 + np.log1p(raw[:, 0].max())
    assert z[:, 0].max() > old.transform(x)[:, 0].max() + 10


@pytest.mark.parametrize("wide", [False, True])
def test_inverse_transform_round_trip(wide: bool) -> None:
    x = _long_and_light()
    x[::97, 1] = np.nan  # a gap stays a gap
    x[5] = [1e6, -1e5, 1.0]  # far beyond every limit
    scaler = RobustScaler(limit_quantile=0.99, wide_quantile=0.999).fit(x)
    z = scaler.transform(x, wide=wide)
    back = scaler.inverse_transform(z, wide=wide)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    # And the other way: a scaled value maps back to one that scales to it
    # (within +-30: beyond soft_limit + log1p(CLIP_ROBUST_UNITS) nothing maps).
    grid = np.linspace(-30, 30, 601)[:, None] * np.ones((1, 3))
    np.testing.assert_allclose(
        scaler.transform(scaler.inverse_transform(grid, wide), wide),
        grid, rtol=1e-9, atol=1e-9,
    )


def test_transforms_standardises_once_for_both_limit_sets() -> None:
    x = _long_and_light()
    scaler = RobustScaler(limit_quantile=0.99, wide_quantile=0.999).fit(x)
    both = scaler.transforms(x, [True, False, True])
    assert set(both) == {False, True}
    for wide, z in both.items():
        np.testing.assert_array_equal(z, scaler.transform(x, wide=wide))


def test_new_format_round_trips_through_json() -> None:
    x = _long_and_light()
    scaler = RobustScaler(soft_limit=4.0, limit_quantile=0.99, wide_quantile=0.999).fit(x)
    again = RobustScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    for wide in (False, True):
        np.testing.assert_array_equal(
            again.transform(x, wide=wide), scaler.transform(x, wide=wide)
        )


def test_old_format_scaler_state_loads_and_scales_as_before() -> None:
    # A manifest's "scaler" as written before per-column limits: soft_limit,
    # center and scale only. Every column then compresses beyond soft_limit,
    # for every network (the wide input included).
    old = json.loads('{"soft_limit": 5.0, "center": [1.0, -2.0], "scale": [0.5, 4.0]}')
    scaler = RobustScaler.from_dict(old)
    x = np.array([[1.5, -2.0], [5.0, 30.0], [-100.0, -2.0 - 4.0 * 5.0]])
    raw = (x - np.array([1.0, -2.0])) / np.array([0.5, 4.0])
    expected = np.where(
        np.abs(raw) > 5.0, np.sign(raw) * (5.0 + np.log1p(np.maximum(np.abs(raw) - 5.0, 0))), raw
    )
    for wide in (False, True):
        np.testing.assert_allclose(scaler.transform(x, wide=wide), expected, rtol=1e-12)
    # Saved again, it keeps the old format (no limit keys).
    assert scaler.to_dict() == old
    np.testing.assert_allclose(scaler.inverse_transform(expected), x, rtol=1e-9)


@pytest.mark.parametrize("wide", [False, True])
def test_compression_in_place_equals_the_whole_array_formula(wide: bool) -> None:
    """The compression beyond each limit, written at the flat positions of a
    row-major block (issue 20) or through a strided view: the bits of the
    formula applied to every entry, gaps (NaN) untouched."""
    x = _long_and_light(3000, seed=4)
    scaler = RobustScaler(limit_quantile=0.9, wide_quantile=0.99).fit(x)
    fresh = _long_and_light(5000, seed=5)
    fresh[::7, 1] = np.nan
    fresh[3, 0] = 1e6
    z = scaler.standardise(fresh)
    limit = scaler.limits(wide)
    with np.errstate(invalid="ignore"):
        want = np.where(np.abs(z) > limit,
                        np.sign(z) * (limit + np.log1p(np.abs(z) - limit)), z)
    assert (np.abs(z[~np.isnan(z)]) > np.broadcast_to(limit, z.shape)[~np.isnan(z)]).any()
    got = scaler.transform(fresh, wide=wide)
    assert got.flags.c_contiguous and np.array_equal(got, want, equal_nan=True)
    strided = np.asfortranarray(z)
    assert np.array_equal(scaler._compress(strided, wide), want, equal_nan=True)
