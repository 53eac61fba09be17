"""Input scaling fitted on training data, robust to heavy tails.

Transaction features are heavy-tailed (amounts, counts): a standard scaler
lets a handful of extreme rows set the scale, and an autoencoder then spends
its capacity on them. Here each column is centred on its median and divided
by a robust spread (IQR/1.349, falling back to the standard deviation, then
1), and values beyond `soft_limit` spreads are compressed logarithmically:
the order of extreme values is kept (an anomaly stays the most anomalous) but
one outlier cannot blow up the loss.

Values further than CLIP_ROBUST_UNITS (1e12) spreads from the median are
clipped there before the compression: a validated record is finite, but an
extreme one (1e308 in a column whose spread is below 1) overflows to
infinity in the division, and the network then returns NaN. 1e12 spreads is
beyond any real feature (the schema caps amounts at 1e6), so ordinary inputs
are untouched and extremes stay ordered far out; after compression the
network sees at most soft_limit + log1p(1e12 - soft_limit), about 32.6 with
the default limit of 5, and even without compression (soft_limit=inf) the
squared errors of such inputs stay within float32.
"""

from __future__ import annotations

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
    soft_limit: float = 5.0
    center_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> RobustScaler:
        """Median and spread per column. NaN marks a gap (nullable fields,
        gendetect.features.missing): the statistics are those of the observed
        values, and a column without any gets centre 0, spread 1. Gaps stay
        NaN through `transform`; the detector imputes them."""
        x = np.asarray(x, dtype=np.float64)
        if not np.isnan(x).any():
            self.center_, self.scale_ = robust_center_spread(x, axis=0)
            return self
        d = x.shape[1]
        center, scale = np.zeros(d), np.ones(d)
        for j in range(d):
            observed = x[:, j][~np.isnan(x[:, j])]
            if len(observed):
                c, s = robust_center_spread(observed, axis=None)
                center[j], scale[j] = float(c), float(s)
        self.center_, self.scale_ = center, scale
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        # Overflow to inf is expected for absurd inputs and clipped right after.
        # In place, and the logarithm only where a value exceeds the limit
        # (a few percent of the entries): the same values as the whole-array
        # formula at a fraction of the cost on large batches.
        with np.errstate(over="ignore"):
            z = np.subtract(x, self.center_, dtype=np.float64)
            z /= self.scale_
        np.clip(z, -CLIP_ROBUST_UNITS, CLIP_ROBUST_UNITS, out=z)
        limit = self.soft_limit
        with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
            beyond = np.abs(z) > limit
        if beyond.any():
            far = z[beyond]
            z[beyond] = np.sign(far) * (limit + np.log1p(np.abs(far) - limit))
        return z

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    # -------------------------------------------------- back to original units
    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Scaled values back in the columns' original units: what an
        explanation shows as the value a reconstruction expected. The exact
        inverse of `transform` within its range; values beyond it (a network
        output is unbounded) are first limited to the largest scaled value
        `transform` can give, so that the result stays finite. NaN stays NaN."""
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        limit = self.soft_limit
        largest = (limit + np.log1p(CLIP_ROBUST_UNITS - limit) if np.isfinite(limit)
                   else CLIP_ROBUST_UNITS)
        u = np.clip(np.asarray(z, dtype=np.float64), -largest, largest)
        with np.errstate(invalid="ignore"):  # NaN (a gap) is never beyond
            beyond = np.abs(u) > limit
        if beyond.any():
            far = u[beyond]
            u[beyond] = np.sign(far) * (limit + np.expm1(np.abs(far) - limit))
        return u * self.scale_ + self.center_

    def to_dict(self) -> dict[str, Any]:
        assert self.center_ is not None and self.scale_ is not None
        return {
            "soft_limit": self.soft_limit,
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RobustScaler:
        return cls(
            soft_limit=float(raw["soft_limit"]),
            center_=np.asarray(raw["center"], dtype=np.float64),
            scale_=np.asarray(raw["scale"], dtype=np.float64),
        )
