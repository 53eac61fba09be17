"""Input scaling fitted on training data, robust to heavy tails.

Transaction features are heavy-tailed (amounts, counts): a standard scaler
lets a handful of extreme rows set the scale, and an autoencoder then spends
its capacity on them. Here each column is centred on its median and divided
by a robust spread (IQR/1.349, falling back to the standard deviation, then
1), and values beyond a column's limit (`soft_limit` spreads, or further
where the column's own training tail is long: RobustScaler) are compressed
logarithmically: the order of extreme values is kept (an anomaly stays the
most anomalous) but one outlier cannot blow up the loss.

Values further than CLIP_ROBUST_UNITS (1e12) spreads from the median are
clipped there before the compression: a validated record is finite, but an
extreme one (1e308 in a column whose spread is below 1) overflows to
infinity in the division, and the network then returns NaN. 1e12 spreads is
beyond any real feature (the schema caps amounts at 1e6), so ordinary inputs
are untouched and extremes stay ordered far out; after compression the
network sees at most limit + log1p(1e12 - limit), about 32.6 with a limit
of 5 (a column's limit is finite: a quantile of finite values), and even
without compression (soft_limit=inf) the squared errors of such inputs stay
within float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

CLIP_ROBUST_UNITS = 1e12
# Below this a spread counts as zero (binary and near-constant columns).
_MIN_SPREAD = 1e-12


def robust_center_spread(values: np.ndarray, axis: int | None = 0) -> tuple[Any, Any]:
    """Median and robust spread (IQR / 1.349, the standard deviation for a
    normal distribution) along `axis`; where the IQR is zero, the standard
    deviation, and where that is zero too, 1. Arrays for axis=0 on a matrix,
    floats for a 1-D array with axis=None."""
    values = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.percentile(values, [25, 50, 75], axis=axis)
    return median, fallback_spread((q75 - q25) / 1.349, values, axis)


def fallback_spread(spread: Any, values: np.ndarray, axis: int | None = 0) -> Any:
    """`spread` where it is positive, else the standard deviation of
    `values`, else 1: a zero spread would divide by zero."""
    std = values.std(axis=axis)
    result = np.where(spread > _MIN_SPREAD, spread, np.where(std > _MIN_SPREAD, std, 1.0))
    return float(result) if np.ndim(result) == 0 else result


@dataclass
class RobustScaler:
    """Robust centring and scaling, then logarithmic compression of each
    column beyond its own limit.

    A column's limit is `soft_limit`, raised to the `limit_quantile` of the
    column's own training |z| where that is larger: a feature whose training
    tail is long (a lab value where one extreme decides, gendetect/models/
    README.md "Input tails") stays linear over the tail it showed in
    training, while a light-tailed column compresses beyond soft_limit as
    before. Networks that take the tails nearly linear (the NLL VAE, whose
    learned variance absorbs them, and the GAN: gendetect/models/README.md)
    read the input with `wide_quantile`'s wider limits
    (`transform(x, wide=True)`). None: soft_limit for every column (the
    behaviour, and the manifest format, before these limits).
    """

    soft_limit: float = 5.0
    limit_quantile: float | None = None
    wide_quantile: float | None = None
    center_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    limit_: np.ndarray | None = None
    wide_limit_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> RobustScaler:
        """Median, spread and limits per column. NaN marks a gap (nullable
        fields, gendetect.features.missing): the statistics are those of the
        observed values, and a column without any gets centre 0, spread 1
        and limit soft_limit. Gaps stay NaN through `transform`; the
        detector imputes them."""
        x = np.asarray(x, dtype=np.float64)
        if not np.isnan(x).any():
            self.center_, self.scale_ = robust_center_spread(x, axis=0)
        else:
            d = x.shape[1]
            center, scale = np.zeros(d), np.ones(d)
            for j in range(d):
                observed = x[:, j][~np.isnan(x[:, j])]
                if len(observed):
                    c, s = robust_center_spread(observed, axis=None)
                    center[j], scale[j] = float(c), float(s)
            self.center_, self.scale_ = center, scale
        z = np.abs(self.standardise(x))
        self.limit_ = self._tail_limits(z, self.limit_quantile)
        self.wide_limit_ = self._tail_limits(z, self.wide_quantile)
        return self

    def _tail_limits(self, abs_z: np.ndarray, quantile: float | None) -> np.ndarray:
        limit = np.full(abs_z.shape[1], float(self.soft_limit))
        if quantile is None or not len(abs_z):
            return limit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column of gaps only
            q = np.nanquantile(abs_z, quantile, axis=0)
        return np.fmax(limit, np.nan_to_num(q, nan=self.soft_limit))

    def limits(self, wide: bool = False) -> np.ndarray:
        """Each column's compression limit, in robust units."""
        if self.center_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        limit = self.wide_limit_ if wide else self.limit_
        if limit is None and wide:
            limit = self.limit_  # a scaler without wider limits: one input for all
        if limit is None:
            return np.full(len(self.center_), float(self.soft_limit))
        return limit

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Centred and divided by the spread, clipped, not compressed."""
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        # Overflow to inf is expected for absurd inputs and clipped right after.
        with np.errstate(over="ignore"):
            z = np.subtract(x, self.center_, dtype=np.float64)
            z /= self.scale_
        np.clip(z, -CLIP_ROBUST_UNITS, CLIP_ROBUST_UNITS, out=z)
        return z

    def transform(self, x: np.ndarray, wide: bool = False) -> np.ndarray:
        return self._compress(self.standardise(x), wide)

    def transforms(self, x: np.ndarray, wide: Iterable[bool]) -> dict[bool, np.ndarray]:
        """`transform(x, wide=w)` for each w, standardising once."""
        return self.compressed(self.standardise(x), wide)

    def compressed(self, z: np.ndarray, wide: Iterable[bool]) -> dict[bool, np.ndarray]:
        """`transforms` from standardised values `z`, which it consumes (the
        last variant is compressed in place): a caller that reads them too
        (the tail term) does so first, and standardises once."""
        wanted = sorted(set(wide))
        return {w: self._compress(z if i == len(wanted) - 1 else z.copy(), w)
                for i, w in enumerate(wanted)}

    def _compress(self, z: np.ndarray, wide: bool) -> np.ndarray:
        # In place, and the logarithm only where a value exceeds its limit
        # (a few percent of the entries): the same values as the whole-array
        # formula at a fraction of the cost on large batches.
        # The positions beyond are found once and the limits taken by
        # column: boolean masks of the block would be scanned three times
        # more. Flat positions on a row-major block: np.nonzero's two index
        # arrays cost ten times np.flatnonzero's one (the same elements).
        limit = self.limits(wide)
        with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
            beyond = np.abs(z) > limit
        if z.ndim == 2 and z.flags.c_contiguous:
            flat_at = np.flatnonzero(beyond)
            if len(flat_at):
                flat = z.reshape(-1)  # a view: written in place
                far, lim = flat[flat_at], limit[flat_at % z.shape[1]]
                flat[flat_at] = np.sign(far) * (lim + np.log1p(np.abs(far) - lim))
        elif beyond.any():
            at = np.nonzero(beyond)
            far, lim = z[at], limit[at[-1]]
            z[at] = np.sign(far) * (lim + np.log1p(np.abs(far) - lim))
        return z

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    # -------------------------------------------------- back to original units
    def inverse_transform(self, z: np.ndarray, wide: bool = False) -> np.ndarray:
        """Scaled values back in the columns' original units: what an
        explanation shows as the value a reconstruction expected. The exact
        inverse of `transform(x, wide)` within its range (expm1 undoes
        log1p beyond each column's limit, then the spread and centre);
        values beyond that range (a network output is unbounded) are first
        limited to the largest scaled value `transform` can give, so that
        the result stays finite. NaN stays NaN."""
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        limit = np.broadcast_to(self.limits(wide), np.shape(z))
        with np.errstate(invalid="ignore"):  # an infinite limit: no compression
            largest = np.where(np.isfinite(limit),
                               limit + np.log1p(CLIP_ROBUST_UNITS - np.fmin(limit, 1.0e12)),
                               CLIP_ROBUST_UNITS)
        u = np.clip(np.asarray(z, dtype=np.float64), -largest, largest)
        with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
            beyond = np.abs(u) > limit
        if beyond.any():
            far, lim = u[beyond], limit[beyond]
            u[beyond] = np.sign(far) * (lim + np.expm1(np.abs(far) - lim))
        return u * self.scale_ + self.center_

    def to_dict(self) -> dict[str, Any]:
        assert self.center_ is not None and self.scale_ is not None
        out: dict[str, Any] = {
            "soft_limit": self.soft_limit,
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
        }
        # Written only when set: a scaler without per-column limits keeps the
        # earlier manifest, byte for byte.
        if self.limit_quantile is not None or self.wide_quantile is not None:
            out["limit_quantile"] = self.limit_quantile
            out["wide_quantile"] = self.wide_quantile
            out["limit"] = self.limits().tolist()
            out["wide_limit"] = self.limits(wide=True).tolist()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RobustScaler:
        """Also the format written before per-column limits (no "limit"):
        every column's limit is then soft_limit, as it was."""

        def optional(key: str) -> float | None:
            return None if raw.get(key) is None else float(raw[key])

        def array(key: str) -> np.ndarray | None:
            return None if raw.get(key) is None else np.asarray(raw[key], dtype=np.float64)

        return cls(
            soft_limit=float(raw["soft_limit"]),
            limit_quantile=optional("limit_quantile"),
            wide_quantile=optional("wide_quantile"),
            center_=np.asarray(raw["center"], dtype=np.float64),
            scale_=np.asarray(raw["scale"], dtype=np.float64),
            limit_=array("limit"),
            wide_limit_=array("wide_limit"),
        )
