"""How far out in its own training tail each feature of a record lies.

A generative network scores how a record's features fit together; a record
whose one feature is rarer than anything seen in training can still be
reconstructed well (the network puts it where the nearest training rows
are). The tail term keeps that extremity: per feature, the two-sided
empirical tail probability t of the value under the training distribution,
as -log(2 t) (0 in the bulk, log(n) / 2 at the training extremes); the
record's term is the sum over features, as in ECOD (Li et al., 2022), and
the detector adds it to the networks' score with `tail_weight` (measured:
gendetect/models/README.md "Tail term").

The empirical distribution is kept as quantiles at tail probabilities spaced
geometrically from 1/n to 1/2 on each side (GRID points per side): exact
enough where it matters, the far tails, and a few kilobytes in the manifest
whatever the row count. A value's tail probability is the grid's step at or
beyond it, interpolated linearly in log probability between grid points
(continuous: equal inputs to rounding give equal terms to rounding; point
masses, such as a binary column's, score 0 at the mass). Beyond the training extremes the
term grows further with log1p of the distance in robust units, so a new
extreme still ranks above the training's most extreme value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GRID = 64
_TIE = 1e-6  # robust units: grid quantiles closer than this are one point
# Up to this many rows the grid is compared by broadcasting (same result).
_SMALL_ROWS = 32


@dataclass
class MarginalTails:
    tail_probs_: np.ndarray | None = None  # (GRID,), increasing, 1/n .. 1/2
    lower_: np.ndarray | None = None  # (GRID, d): quantile at tail_probs_, non-decreasing
    upper_: np.ndarray | None = None  # (GRID, d): quantile at 1 - tail_probs_, non-increasing
    # Median and tail spread of the summed term on training rows (set by the
    # detector): its common scale beside the networks' scores.
    center_spread: tuple[float, float] = (0.0, 1.0)
    # Both sides as one curve and its log tail probabilities (_curve):
    # derived from the grid, built on first use.
    _curve_: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                           compare=False)

    def fit(self, z: np.ndarray) -> MarginalTails:
        """`z`: training rows in robust units (the scaler's standardised,
        uncompressed values); NaN (a gap) is left out."""
        z = np.asarray(z, dtype=np.float64)
        n = max(len(z), 2)
        probs = np.exp(np.linspace(math.log(1.0 / n), math.log(0.5), GRID))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column of gaps only
            lower = np.nanquantile(z, probs, axis=0, method="inverted_cdf")
            upper = np.nanquantile(z, 1.0 - probs, axis=0, method="inverted_cdf")
        self.tail_probs_ = probs
        # A column without observed values: every value sits at the median.
        self.lower_, self.upper_ = np.nan_to_num(lower), np.nan_to_num(upper)
        self._curve_ = None
        return self

    def contributions(self, z: np.ndarray) -> np.ndarray:
        """Per-feature tail terms (n, d), >= 0; 0 at a gap."""
        if self.tail_probs_ is None or self.lower_ is None or self.upper_ is None:
            raise RuntimeError("MarginalTails is not fitted")
        z = np.asarray(z, dtype=np.float64)
        xp, fp = self._curve()
        if len(z) <= _SMALL_ROWS:
            # A few rows (an API call): one broadcast comparison with every
            # grid point beats a search per column; the same formulas after.
            with np.errstate(invalid="ignore"):  # NaN compares False: a gap
                count = np.count_nonzero(xp[None] <= z[:, :, None], axis=2)
            cols = np.arange(z.shape[1])
            return _terms(count, z, lambda i: xp[cols, i], lambda i: fp[cols, i],
                          xp[:, 0], xp[:, -1])
        # Many rows: column by column, contiguous (a search and four takes
        # per column; 2-D fancy indexing over (n, d) cost three times more).
        zt = np.ascontiguousarray(z.T)
        out = np.empty_like(zt)
        for j in range(len(zt)):
            v, xj, fj = zt[j], xp[j], fp[j]
            count = np.searchsorted(xj, v, side="right")
            out[j] = _terms(count, v, xj.take, fj.take, xj[0], xj[-1])
        return out.T

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Both sides as one non-decreasing curve per column (d, 2 GRID):
        the lower quantiles up to the median, then the upper ones from the
        median out, with their log tail probabilities (ties merged,
        _run_log_probs). Below the median the lower side is the rarer one,
        above it the upper: one search per value instead of two."""
        if self._curve_ is None:
            assert self.lower_ is not None and self.upper_ is not None
            xp = np.concatenate([self.lower_, self.upper_[::-1]], axis=0).T
            fp = np.concatenate([self._run_log_probs(self.lower_),
                                 self._run_log_probs(self.upper_)[::-1]], axis=0).T
            self._curve_ = np.ascontiguousarray(xp), np.ascontiguousarray(fp)
        return self._curve_

    def _run_log_probs(self, grid: np.ndarray) -> np.ndarray:
        """log tail probability per grid point (G, d), one value per run of
        tied quantiles (closer than _TIE robust units: a point mass, or order
        statistics where the grid is finer than 1/n): the run's innermost
        probability, the mass at or beyond the tied value (a binary
        column's 10% minority scores as 10%, a mass at the median 0). One
        value per run keeps the interpolation continuous across a tie and
        beyond the outermost grid point, and flat inside a run (no steep
        slope over a near-tie)."""
        assert self.tail_probs_ is not None
        log_p = np.log(self.tail_probs_)
        g, d = grid.shape
        out = np.empty((g, d))
        for j in range(d):
            breaks = np.flatnonzero(np.abs(np.diff(grid[:, j])) > _TIE) + 1
            for start, stop in zip(np.r_[0, breaks], np.r_[breaks, g], strict=True):
                out[start:stop, j] = log_p[stop - 1]
        return out

    def to_dict(self) -> dict[str, Any]:
        assert self.tail_probs_ is not None and self.lower_ is not None
        assert self.upper_ is not None
        return {
            "tail_probs": self.tail_probs_.tolist(),
            "lower": self.lower_.tolist(),
            "upper": self.upper_.tolist(),
            "center_spread": list(self.center_spread),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MarginalTails:
        return cls(
            tail_probs_=np.asarray(raw["tail_probs"], dtype=np.float64),
            lower_=np.asarray(raw["lower"], dtype=np.float64),
            upper_=np.asarray(raw["upper"], dtype=np.float64),
            center_spread=(float(raw["center_spread"][0]), float(raw["center_spread"][1])),
        )



def _terms(count: np.ndarray, z: np.ndarray, grid_at: Any, log_p_at: Any,
           first: Any, last_point: Any) -> np.ndarray:
    """The tail term from each value's position on its column's curve
    (`count` = how many curve points lie at or before it): -log(2 t), with
    log t linear in the value between two curve points (continuous, so
    that values equal to 1e-12 score equal to 1e-12), the outermost curve
    point's probability beyond either end, plus log1p of the distance past
    the training extremes; 0 at a gap. Elementwise, so the broadcast and
    the column-by-column paths give the same bits."""
    last = 2 * GRID - 1
    at = np.clip(count - 1, 0, last)
    nxt = np.clip(count, 0, last)
    a = grid_at(at)
    # Inside the curve a <= z < b (count's definition), so b > a and the
    # fraction is in [0, 1); at either end (at == nxt) it is 0.
    inside = (count > 0) & (count <= last)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (z - a) / (grid_at(nxt) - a)
    frac[~inside] = 0.0
    lo = log_p_at(at)
    log_t = lo + frac * (log_p_at(nxt) - lo)
    term = np.fmax(-math.log(2.0) - log_t, 0.0)
    with np.errstate(invalid="ignore"):
        beyond = np.maximum(first - z, z - last_point)
    far = beyond > 0.0  # rare: past the training extremes
    if far.any():
        term[far] += np.log1p(beyond[far])
    return np.where(np.isnan(z), 0.0, term)
