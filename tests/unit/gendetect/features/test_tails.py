"""The tail term: per-feature extremity under the training distribution."""

from __future__ import annotations

import json

import numpy as np
from scipy.stats import norm

from gendetect.features.tails import MarginalTails


def _train(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.normal(size=n),  # symmetric
        rng.exponential(size=n),  # one long side
        (rng.random(n) < 0.1).astype(float),  # binary, 10% ones
    ])


def test_bulk_scores_near_zero_and_tails_follow_the_tail_probability() -> None:
    x = _train()
    tails = MarginalTails().fit(x)
    v = np.array([0.0, 1.0, 2.0, 3.0])
    probe = np.column_stack([v, np.full(4, np.log(2.0)), np.zeros(4)])  # exp median: log 2
    terms = tails.contributions(probe)
    # -log(2 * the empirical upper tail probability), within the grid's
    # step (log(n / 2) / 63, 0.12 here), and close to the normal's own.
    empirical = np.array([(x[:, 0] >= t).mean() for t in v])
    step = np.log(len(x) / 2) / 63
    np.testing.assert_allclose(terms[1:, 0], -np.log(2 * empirical[1:]), atol=step + 1e-9)
    np.testing.assert_allclose(terms[:3, 0], -np.log(2 * norm.sf(v[:3])), atol=0.3)
    # At a median or at a point mass (the binary column's zeros): nothing.
    np.testing.assert_allclose(terms[:, 1:], 0.0, atol=step + 1e-9)


def test_both_sides_count_and_new_extremes_keep_their_order() -> None:
    x = _train()
    tails = MarginalTails().fit(x)
    grid = np.linspace(-60, 60, 241)
    terms = tails.contributions(np.column_stack([grid, grid, grid]))
    col = terms[:, 0]
    # Symmetric column: far on either side is far; non-decreasing away from the
    # centre, strictly beyond the training extremes (the log1p extension).
    centre = np.argmin(np.abs(grid))
    assert (np.diff(col[centre:]) >= 0).all() and (np.diff(col[: centre + 1]) <= 0).all()
    outside = grid > x[:, 0].max()
    assert (np.diff(col[outside]) > 0).all()
    assert col[0] > np.log(len(x) / 2) and col[-1] > np.log(len(x) / 2)
    # The binary column's minority value is as rare as its share (10%).
    one = tails.contributions(np.array([[0.0, np.log(2.0), 1.0]]))[0, 2]
    assert abs(one - (-np.log(2 * 0.1))) < 0.2


def test_gaps_score_zero_and_state_round_trips_through_json() -> None:
    x = _train()
    x[::50, 1] = np.nan
    tails = MarginalTails(center_spread=(1.0, 2.0)).fit(x)
    probe = np.array([[np.nan, 5.0, 1.0], [4.0, np.nan, 0.0]])
    terms = tails.contributions(probe)
    assert terms[0, 0] == 0.0 and terms[1, 1] == 0.0
    assert terms[0, 1] > 3 and terms[1, 0] > 5
    again = MarginalTails.from_dict(json.loads(json.dumps(tails.to_dict())))
    np.testing.assert_array_equal(again.contributions(probe), terms)
    assert again.center_spread == (1.0, 2.0)


def test_few_rows_and_many_rows_take_different_paths_to_the_same_terms() -> None:
    x = _train()
    x[::7, 0] = np.nan
    tails = MarginalTails().fit(x)
    probe = np.vstack([x[:200], [[40.0, -3.0, 1.0], [np.nan, 1e6, 0.0]]])
    many = tails.contributions(probe)
    few = np.vstack([tails.contributions(probe[i : i + 1]) for i in range(len(probe))])
    np.testing.assert_array_equal(few, many)


def test_the_term_is_continuous_at_grid_points_ties_and_extremes() -> None:
    """A feature computed two ways (online and offline, streamed and whole)
    agrees to ~1e-12, so its term must too: no step at a grid quantile, at a
    run of tied quantiles (the binary column's mass, the training extremes)
    or past the last grid point."""
    x = _train(n=300)
    tails = MarginalTails().fit(x)
    assert tails.lower_ is not None and tails.upper_ is not None
    points = np.unique(np.r_[tails.lower_.ravel(), tails.upper_.ravel(), x.max(0), x.min(0)])
    eps = 1e-12
    for shift in (-eps, eps):
        at = tails.contributions(np.repeat(points[:, None], 3, axis=1))
        near = tails.contributions(np.repeat(points[:, None] + shift, 3, axis=1))
        np.testing.assert_allclose(near, at, atol=1e-8)
    # The broadcast path (a few rows) and the search path (many) agree.
    few = tails.contributions(np.repeat(points[:20, None], 3, axis=1))
    np.testing.assert_allclose(few, tails.contributions(
        np.repeat(np.r_[points[:20], points][:, None], 3, axis=1))[:20], rtol=0, atol=0)


def _reference_terms(tails: MarginalTails, z: np.ndarray) -> np.ndarray:
    """The documented formula, value by value: the curve (lower quantiles,
    then upper ones reversed), log t linear between the two curve points
    around the value (the outermost point's beyond either end), -log(2 t)
    clipped at 0, plus log1p of the distance past the training extremes;
    0 at a gap."""
    assert tails.lower_ is not None and tails.upper_ is not None
    xp = np.concatenate([tails.lower_, tails.upper_[::-1]], axis=0).T
    fp = np.concatenate([tails._run_log_probs(tails.lower_),
                         tails._run_log_probs(tails.upper_)[::-1]], axis=0).T
    out = np.zeros(z.shape)
    for (i, j), value in np.ndenumerate(z):
        if np.isnan(value):
            continue
        x, f = xp[j], fp[j]
        below = np.flatnonzero(x <= value)
        if not len(below):
            log_t = f[0]
        elif below[-1] == len(x) - 1:
            log_t = f[-1]
        else:
            k = below[-1]
            log_t = f[k] + (value - x[k]) / (x[k + 1] - x[k]) * (f[k + 1] - f[k])
        beyond = max(x[0] - value, value - x[-1], 0.0)
        out[i, j] = max(-np.log(2.0) - log_t, 0.0) + np.log1p(beyond)
    return out


def test_the_segment_lookup_matches_the_documented_formula() -> None:
    """The per-segment table (one search, then c0 + c1 (z - a)) gives the
    formula's terms on data with ties, point masses, gaps and values past
    the extremes; one record at a time gives the batch's bits."""
    rng = np.random.default_rng(3)
    n = 400
    x = np.column_stack([
        rng.normal(size=n),
        np.round(rng.exponential(size=n), 1),  # many ties
        (rng.random(n) < 0.1).astype(float),  # two point masses
        np.where(rng.random(n) < 0.6, 0.0, rng.normal(size=n)),  # a mass in a spread
        np.full(n, 2.0),  # one value only
    ])
    x[::9, 0] = np.nan
    tails = MarginalTails().fit(x)
    assert tails.lower_ is not None and tails.upper_ is not None
    points = np.r_[tails.lower_.ravel(), tails.upper_.ravel()]
    probe = np.vstack([
        x,
        rng.normal(scale=4.0, size=(300, 5)),  # past the extremes on both sides
        np.repeat(points[:, None], 5, axis=1),  # exactly at curve points
        np.repeat(points[:, None], 5, axis=1) + 1e-9,
    ])
    probe[rng.random(probe.shape) < 0.05] = np.nan
    many = tails.contributions(probe)
    np.testing.assert_allclose(many, _reference_terms(tails, probe), rtol=1e-12, atol=1e-12)
    assert (many[np.isnan(probe)] == 0.0).all()
    one = np.vstack([tails.contributions(probe[i : i + 1]) for i in range(len(probe))])
    np.testing.assert_array_equal(one, many)


def test_the_bucket_lookup_finds_the_segment_searchsorted_finds() -> None:
    """The many-rows path's segment lookup is exact: the same segment as a
    binary search, inside the range (no clipping), past both ends, at
    every curve point and next to it, and where near-ties put
    several distinct points in one bucket (those values are searched)."""
    from gendetect.features.tails import _Buckets

    rng = np.random.default_rng(5)
    curves = [
        np.sort(rng.normal(size=128)),
        np.sort(np.r_[np.zeros(60), np.ones(60), rng.normal(size=8)]),  # point masses
        np.sort(np.r_[rng.normal(size=120), 1.0 + np.arange(8) * 1e-9]),  # near-ties
        np.full(128, 3.0),  # a single value
    ]
    for xp in curves:
        table = _Buckets.of(xp)
        at_points = np.r_[xp, np.nextafter(xp, np.inf), np.nextafter(xp, -np.inf)]
        inside = np.clip(np.r_[rng.uniform(xp[0], xp[-1], size=5000), at_points], xp[0], xp[-1])
        np.testing.assert_array_equal(table.segments(inside, True, xp),
                                      np.searchsorted(xp, inside, side="right"))
        anywhere = np.r_[rng.normal(scale=5.0, size=5000), at_points, -np.inf, np.inf]
        np.testing.assert_array_equal(table.segments(anywhere, False, xp),
                                      np.searchsorted(xp, anywhere, side="right"))
        # A gap gets some segment (its term is NaN -> 0 in every one).
        assert 0 <= table.segments(np.r_[np.nan, 0.0], False, xp)[0] <= len(xp)
    assert _Buckets.of(curves[2]).ambiguous is not None  # the search fallback ran
