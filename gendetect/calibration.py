"""Raw anomaly score -> calibrated 0-1 risk, and thresholds from alert budgets.

Without labels, the honest calibration of an anomaly score is its rank
against normal traffic: risk = share of reference (held-out validation)
records scoring lower. A risk of 0.99 then means "more unusual than 99% of
traffic", and the threshold for a 1% alert rate is the 99th percentile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# From this many scores on, risk() interpolates them in sorted order.
_SORTED_ROWS = 4096


@dataclass
class EmpiricalCalibrator:
    n_points: int = 2001
    quantiles_: np.ndarray | None = None

    def fit(self, reference_scores: np.ndarray) -> EmpiricalCalibrator:
        scores = np.asarray(reference_scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise ValueError("calibration needs at least one finite reference score")
        # A fixed grid of quantiles keeps the bundle small whatever the data size.
        self.quantiles_ = np.quantile(scores, np.linspace(0.0, 1.0, self.n_points))
        return self

    def risk(self, scores: np.ndarray) -> np.ndarray:
        q = self._fitted()
        levels = self._levels()
        scores = np.asarray(scores, dtype=np.float64)
        # Ties in the reference (flat quantile runs) map to the highest level.
        if scores.ndim != 1 or len(scores) < _SORTED_ROWS:
            return np.interp(scores, q, levels, left=0.0, right=1.0)
        # Many scores (a batch): np.interp starts each search where the
        # previous value's ended, so in sorted order it barely searches; a
        # sort and back costs less than a full search per value over the
        # quantiles (each value's risk is the same: it depends on the value
        # alone).
        order = np.argsort(scores)
        risk = np.empty_like(scores)
        risk[order] = np.interp(scores[order], q, levels, left=0.0, right=1.0)
        return risk

    def threshold_for_alert_rate(self, alert_rate: float) -> float:
        if not 0.0 < alert_rate < 1.0:
            raise ValueError("alert_rate must be in (0, 1)")
        q = self._fitted()
        return float(np.interp(1.0 - alert_rate, np.linspace(0.0, 1.0, len(q)), q))

    def _levels(self) -> np.ndarray:
        # Cached: risk() is on the API's per-request path.
        levels = getattr(self, "_levels_cache", None)
        if levels is None or len(levels) != len(self._fitted()):
            levels = np.linspace(0.0, 1.0, len(self._fitted()))
            self._levels_cache = levels
        return levels

    def _fitted(self) -> np.ndarray:
        if self.quantiles_ is None:
            raise RuntimeError("calibrator is not fitted")
        return self.quantiles_

    def to_dict(self) -> dict[str, Any]:
        return {"n_points": self.n_points, "quantiles": self._fitted().tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EmpiricalCalibrator:
        return cls(n_points=int(raw["n_points"]), quantiles_=np.asarray(raw["quantiles"]))


def threshold_for_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """Threshold whose false-positive rate on known-normal scores is `fpr`."""
    return float(np.quantile(np.asarray(normal_scores, dtype=np.float64), 1.0 - fpr))
