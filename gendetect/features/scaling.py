"""Input scaling fitted on training data, robust to heavy tails.

Transaction features are heavy-tailed (amounts, counts): a standard scaler
lets a handful of extreme rows set the scale, and an autoencoder then spends
its capacity on them. Here each column is centred on its median and divided
by a robust spread (IQR/1.349, falling back to the standard deviation, then
1), and values beyond `soft_limit` spreads are compressed logarithmically:
the order of extreme values is kept (an anomaly stays the most anomalous) but
one outlier cannot blow up the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RobustScaler:
    soft_limit: float = 5.0
    center_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> RobustScaler:
        x = np.asarray(x, dtype=np.float64)
        q25, median, q75 = np.percentile(x, [25, 50, 75], axis=0)
        spread = (q75 - q25) / 1.349
        std = x.std(axis=0)
        # Binary and near-constant columns have IQR 0: use their std instead.
        spread = np.where(spread > 1e-12, spread, np.where(std > 1e-12, std, 1.0))
        self.center_, self.scale_ = median, spread
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustScaler is not fitted")
        z = (np.asarray(x, dtype=np.float64) - self.center_) / self.scale_
        limit = self.soft_limit
        excess = np.abs(z) - limit
        return np.where(excess > 0, np.sign(z) * (limit + np.log1p(np.maximum(excess, 0))), z)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

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
