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
beyond it (a step function, as the empirical one; point masses, such as a
binary column's, score 0 at the mass). Beyond the training extremes the
term grows further with log1p of the distance in robust units, so a new
extreme still ranks above the training's most extreme value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

GRID = 64


@dataclass
class MarginalTails:
    tail_probs_: np.ndarray | None = None  # (GRID,), increasing, 1/n .. 1/2
    lower_: np.ndarray | None = None  # (GRID, d): quantile at tail_probs_, non-decreasing
    upper_: np.ndarray | None = None  # (GRID, d): quantile at 1 - tail_probs_, non-increasing
    # Median and tail spread of the summed term on training rows (set by the
    # detector): its common scale beside the networks' scores.
    center_spread: tuple[float, float] = (0.0, 1.0)

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
        return self

    def contributions(self, z: np.ndarray) -> np.ndarray:
        """Per-feature tail terms (n, d), >= 0; 0 at a gap."""
        if self.tail_probs_ is None or self.lower_ is None or self.upper_ is None:
            raise RuntimeError("MarginalTails is not fitted")
        z = np.asarray(z, dtype=np.float64)
        log_p = np.log(2.0 * self.tail_probs_)  # <= 0, increasing
        out = np.zeros(z.shape)
        for j in range(z.shape[1]):
            col = z[:, j]
            # P(Z <= v) >= p exactly where the p-quantile is <= v: the lower
            # tail probability is the largest grid p whose quantile is <= v
            # (the smallest, 1/n, below the training minimum).
            low = np.searchsorted(self.lower_[:, j], col, side="right") - 1
            # Likewise above: the largest p whose (1 - p)-quantile is >= v
            # (upper_ is non-increasing: search its negation).
            up = np.searchsorted(-self.upper_[:, j], -col, side="right") - 1
            k = np.maximum(np.minimum(low, up), 0)  # the rarer side
            with np.errstate(invalid="ignore"):
                term = -log_p[k]
                beyond = np.maximum(self.lower_[0, j] - col, col - self.upper_[0, j])
                term = term + np.log1p(np.maximum(beyond, 0.0))
            out[:, j] = np.where(np.isnan(col), 0.0, term)
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
