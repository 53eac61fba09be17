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
from typing import Any, NamedTuple

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
    _curve_: _Curve | None = field(default=None, repr=False, compare=False)

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
        curve = self._curve()
        segments = curve.c0.shape[1]
        if len(z) <= _SMALL_ROWS:
            # A few rows (an API call): one broadcast comparison with every
            # curve point beats a search per column (NaN compares False:
            # segment 0, whose term is NaN -> 0 like segment 2 GRID's); the
            # same elementwise formula after.
            with np.errstate(invalid="ignore"):
                seg = np.count_nonzero(curve.xp[None] <= z[:, :, None], axis=2)
            flat = seg + np.arange(z.shape[1]) * segments
            out = _segment_terms(flat, z, curve.c0.ravel(), curve.c1.ravel(), curve.a.ravel())
            with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
                far = (z < curve.first) | (z > curve.last)
            if far.any():
                _add_beyond(out, far, z, np.broadcast_to(curve.first, z.shape),
                            np.broadcast_to(curve.last, z.shape))
            return out
        # Many rows: column by column, contiguous (a bucket lookup and three
        # takes per column; 2-D fancy indexing over (n, d) costs more).
        zt = np.ascontiguousarray(z.T)
        out = np.empty_like(zt)
        for j in range(len(zt)):
            v = zt[j]
            first, last = curve.first[j], curve.last[j]
            # Two reductions (NaN propagates through min) decide whether the
            # column needs the clipped lookup and the log1p past the
            # training extremes: both rare.
            low, high = v.min(), v.max()
            inside = bool(low >= first and high <= last)  # False with a NaN
            seg = curve.buckets[j].segments(v, inside, curve.xp[j])
            out[j] = _segment_terms(seg, v, curve.c0[j], curve.c1[j], curve.a[j])
            if not inside:
                with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
                    far = (v < first) | (v > last)
                if far.any():
                    _add_beyond(out[j], far, v, first, last)
        return out.T

    def _curve(self) -> _Curve:
        """Both sides as one non-decreasing curve per column (d, 2 GRID):
        the lower quantiles up to the median, then the upper ones from the
        median out, with their log tail probabilities (ties merged,
        _run_log_probs). Below the median the lower side is the rarer one,
        above it the upper: one search per value instead of two. From it,
        per segment between curve points, the term's linear piece
        (_segment_table). Derived from the grid, built on first use, not
        saved."""
        if self._curve_ is None:
            assert self.lower_ is not None and self.upper_ is not None
            xp = np.concatenate([self.lower_, self.upper_[::-1]], axis=0).T
            fp = np.concatenate([self._run_log_probs(self.lower_),
                                 self._run_log_probs(self.upper_)[::-1]], axis=0).T
            self._curve_ = _segment_table(np.ascontiguousarray(xp), np.ascontiguousarray(fp))
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


class _Curve(NamedTuple):
    """A fitted MarginalTails' curve (d columns, 2 GRID points each) and the
    term's linear piece on each of its 2 GRID + 1 segments (segment k: from
    curve point k - 1 to point k; 0 and 2 GRID are the open ends)."""

    xp: np.ndarray  # (d, 2 GRID) curve points, non-decreasing
    c0: np.ndarray  # (d, 2 GRID + 1) the term at the segment's start
    c1: np.ndarray  # (d, 2 GRID + 1) its slope along the segment
    a: np.ndarray  # (d, 2 GRID + 1) the segment's start
    first: np.ndarray  # (d,) the training extremes: the curve's ends
    last: np.ndarray
    buckets: list[_Buckets]  # per column: the many-rows path's segment lookup


def _segment_table(xp: np.ndarray, fp: np.ndarray) -> _Curve:
    """The tail term -log(2 t) with log t linear in the value between two
    curve points (continuous, so that values equal to 1e-12 score equal to
    1e-12) and the outermost point's probability beyond either end, as one
    linear piece per segment: c0 + c1 * (z - a), clipped at 0 by the
    caller. Inside a run of tied points (equal log probabilities) the slope
    is 0; an empty segment (two equal points) is never looked up."""
    d, g = xp.shape
    c0 = np.empty((d, g + 1))
    c1 = np.zeros((d, g + 1))
    a = np.empty((d, g + 1))
    c0[:, 1:] = -math.log(2.0) - fp
    c0[:, 0] = c0[:, 1]  # below the first point: its probability
    a[:, 1:] = xp
    a[:, 0] = xp[:, 0]
    dx, df = np.diff(xp, axis=1), np.diff(fp, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c1[:, 1:g] = np.where(dx > 0.0, -df / dx, 0.0)
    return _Curve(xp, c0, c1, a, xp[:, 0].copy(), xp[:, -1].copy(),
                  [_Buckets.of(row) for row in xp])


# Bucket counts tried for a column's lookup, smallest first: the first
# whose buckets hold at most one distinct curve point each is kept (small
# tables stay in the CPU's cache); else the last, with a search for the
# values that fall in a bucket holding several.
_BUCKETS = (256, 1024, 4096)


@dataclass
class _Buckets:
    """A column's segment lookup for many rows: np.searchsorted on the
    curve costs ~50 ns a value (a branchy binary search); here a value's
    bucket is its position on a uniform grid over the curve's range (two
    arithmetic passes), and one comparison with the bucket's curve point
    picks the segment. Exact, not approximate: the bucket is a monotone
    function of the value computed with the same operations for the curve
    points and the values, so points of lower buckets are <= every value
    in a bucket, points of higher ones > it; only a bucket's own point needs
    the comparison. A bucket with several distinct points is marked and
    its values searched."""

    count: int  # buckets 0 .. count (the last holds the curve's end)
    origin: float  # the curve's first point
    inv_width: float  # buckets per robust unit
    point: np.ndarray  # (count + 1,) the bucket's curve point; inf for none
    # (2 (count + 1),) the segment below / at or above the bucket's point
    segment: np.ndarray
    ambiguous: np.ndarray | None  # (count + 1,) bool: several distinct points

    @classmethod
    def of(cls, xp: np.ndarray) -> _Buckets:
        origin, span = float(xp[0]), float(xp[-1] - xp[0])
        for count in _BUCKETS:
            # A single-valued curve (or one too narrow to divide): every
            # point in bucket 0, values past it clipped to either end.
            inv_width = count / span if span > 0.0 else 1.0
            if not math.isfinite(inv_width):
                inv_width = 1.0
            table = cls(count, origin, inv_width, np.empty(0), np.empty(0), None)
            at = table.bucket(xp, inside=True)
            ids = np.arange(count + 1)
            start = np.searchsorted(at, ids, side="left")
            stop = np.searchsorted(at, ids, side="right")
            # Curve points are sorted: equal ones are neighbours, in one bucket.
            new_value = np.r_[True, xp[1:] != xp[:-1]]
            distinct = np.bincount(at, weights=new_value, minlength=count + 1)
            point = np.where(stop > start, xp[np.minimum(start, len(xp) - 1)], np.inf)
            ambiguous = distinct > 1
            point[ambiguous] = np.inf
            table.point = point
            table.segment = np.column_stack([start, stop]).ravel().astype(np.intp)
            table.ambiguous = ambiguous if ambiguous.any() else None
            if table.ambiguous is None:
                break
        return table

    def bucket(self, v: np.ndarray, inside: bool) -> np.ndarray:
        """Each value's bucket. `inside`: every value is within the curve's
        range (and none is NaN), so no clipping is needed; else values
        beyond go to the end buckets and NaN to the last (where it compares
        False and its term is NaN -> 0)."""
        u = np.subtract(v, self.origin)
        u *= self.inv_width
        if not inside:
            np.fmin(u, float(self.count), out=u)  # fmin/fmax: NaN -> count
            np.fmax(u, 0.0, out=u)
        return u.astype(np.intp)

    def segments(self, v: np.ndarray, inside: bool, xp: np.ndarray) -> np.ndarray:
        """The segment of each value on the curve `xp`, as
        np.searchsorted(xp, v, side="right") gives it; a NaN's is the last
        bucket's (any segment does: its term is NaN -> 0 in each)."""
        at = self.bucket(v, inside)
        half = v >= self.point.take(at)
        at += at
        at += half
        seg = self.segment.take(at)
        if self.ambiguous is not None:
            # `at` is 2 bucket + half: the bucket again by a shift.
            several = np.flatnonzero(self.ambiguous.take(at >> 1))
            if len(several):
                seg[several] = np.searchsorted(xp, v[several], side="right")
        return seg


def _segment_terms(seg: np.ndarray, z: np.ndarray, c0: np.ndarray, c1: np.ndarray,
                   a: np.ndarray) -> np.ndarray:
    """The term of each value `z` on its segment `seg` (an index into the
    flat tables): fmax(c0 + c1 * (z - a), 0); NaN (a gap) -> 0, as fmax
    drops NaN. Elementwise, so the broadcast and the column-by-column paths
    give the same bits."""
    start = a.take(seg)
    np.subtract(z, start, out=start)
    start *= c1.take(seg)
    start += c0.take(seg)
    return np.fmax(start, 0.0, out=start)


def _add_beyond(out: np.ndarray, far: np.ndarray, z: np.ndarray, first: Any,
                last: Any) -> None:
    """Beyond the training extremes (`far`): plus log1p of the distance past
    them, so a new extreme still ranks above the training's most extreme
    value. In place, on the marked elements only (rare): their positions
    found once (three boolean-mask scans of the block cost more)."""
    at = np.nonzero(far)
    v = z[at]
    lo = first if np.ndim(first) == 0 else first[at]
    hi = last if np.ndim(last) == 0 else last[at]
    out[at] += np.log1p(np.maximum(lo - v, v - hi))
