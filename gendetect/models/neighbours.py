"""Distance to the nearest known-normal rows: a score term for detectors
fitted on rows the caller declares normal (cleared, verdict "genuine").

A generative network scores how well a record fits the whole of normal
traffic; where the training rows are all known normal, how far a record
lies from the nearest of them is sharper evidence (kNN leads DTE's
clean-normal protocol, Livernoche et al. 2024). The term is the Euclidean
distance to the k-th nearest reference row, in the scaler's standardised
(robust, uncompressed) units, as PyOD's kNN ("largest"), against a fixed,
seeded sample of at most `max_rows` cleared rows. It is the symmetric idea
of the label-aware head's similarity to the nearest confirmed fraud
(gendetect.label_aware.nearest_distance).

Per-feature contributions: the squared difference to that k-th neighbour
divided by the distance, so they sum to the distance and name the features
that set the record apart from its nearest normal rows; the term is their
sum. A gap (NaN) sits at the median (0) for the search and contributes
nothing (the term of a gappy row is its observed features' part).

State: the reference rows, k and the term's common-scale centre and spread
(plain arrays; the bundle keeps the rows in a .npy file). The search is a
brute-force one over them (no index to save). Measured: gendetect/models/README.md "Cleared rows".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# PyOD's kNN default, DTE's kNN setting.
DEFAULT_K = 5
# At most this many reference rows: memory and per-record cost are linear in it.
DEFAULT_MAX_ROWS = 10_000
# Rows per block of the search: a (block x reference rows) float32 matrix,
# 80 MB at 10,000 reference rows.
_BLOCK_ROWS = 2048


@dataclass
class NormalNeighbours:
    k: int = DEFAULT_K
    reference_: np.ndarray | None = None  # (m, d) standardised known-normal rows
    # Median and tail spread of the term over the reference rows (each left
    # out of its own neighbours: `reference_terms`), set by the detector:
    # its common scale beside the networks'.
    center_spread: tuple[float, float] = (0.0, 1.0)
    _index: Any = field(default=None, repr=False, compare=False)

    def fit(
        self, z: np.ndarray, seed: int = 0, max_rows: int = DEFAULT_MAX_ROWS
    ) -> NormalNeighbours:
        """`z`: known-normal rows in the scaler's standardised units; at most
        `max_rows` of them, drawn with `seed`, become the reference."""
        z = _imputed(z)
        if len(z) > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(len(z), max_rows, replace=False))
            z = z[rows]
        self.reference_ = np.ascontiguousarray(z, dtype=np.float64)
        self._index = None
        return self

    def reference_terms(self) -> np.ndarray:
        """The term of each reference row with itself left out: its own
        distance 0 says nothing about a new normal record (so the k+1-th
        neighbour)."""
        assert self.reference_ is not None
        return self._kth(self.reference_, extra=1)[0]

    @property
    def effective_k(self) -> int:
        assert self.reference_ is not None
        return max(1, min(self.k, len(self.reference_) - 1))

    def _kth(self, z: np.ndarray, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(distance to, index of) each row's k-th nearest reference row.

        An exact brute-force search, block by block: float32 squared
        distances by one matrix product and torch's top-k pick the
        neighbours (sklearn's trees cost about 1 ms of call overhead per
        record, and numpy's argpartition 6x torch's top-k); the distance to
        the chosen one is then recomputed in float64."""
        if self.reference_ is None:
            raise RuntimeError("NormalNeighbours is not fitted")
        if self._index is None:
            reference = torch.as_tensor(self.reference_, dtype=torch.float32)
            self._index = (reference.T.contiguous(), (reference * reference).sum(dim=1))
        transposed, norms = self._index
        k = min(self.effective_k + extra, len(self.reference_))
        index = np.empty(len(z), dtype=np.int64)
        with torch.no_grad():
            for start in range(0, len(z), _BLOCK_ROWS):
                rows = torch.as_tensor(z[start : start + _BLOCK_ROWS], dtype=torch.float32)
                # |r|^2 - 2 z.r: the squared distance less |z|^2, which does
                # not change the order.
                squared = torch.addmm(norms, rows, transposed, alpha=-2.0)
                nearest = torch.topk(squared, k, dim=1, largest=False, sorted=True).indices
                index[start : start + len(rows)] = nearest[:, -1].numpy()
        distance = np.sqrt(((z - self.reference_[index]) ** 2).sum(axis=1))
        return distance, index

    def contributions(self, z: np.ndarray) -> np.ndarray:
        """Per-feature parts (n, d) of each row's term (the term is their
        sum: the k-th distance where the row has no gap)."""
        z = np.asarray(z, dtype=np.float64)
        gaps = np.isnan(z)
        has_gaps = bool(gaps.any())
        if has_gaps:
            z = np.where(gaps, 0.0, z)
        distance, index = self._kth(z)
        assert self.reference_ is not None
        diff = z - self.reference_[index]
        diff *= diff
        diff /= np.maximum(distance, 1e-12)[:, None]
        if has_gaps:
            diff[gaps] = 0.0
        return diff

    def to_state(self) -> tuple[dict[str, Any], np.ndarray]:
        """(JSON-able settings, the reference rows) for the bundle."""
        assert self.reference_ is not None
        return {"k": self.k, "center_spread": list(self.center_spread)}, self.reference_

    @classmethod
    def from_state(cls, raw: dict[str, Any], reference: np.ndarray) -> NormalNeighbours:
        return cls(
            k=int(raw["k"]),
            reference_=np.asarray(reference, dtype=np.float64),
            center_spread=(float(raw["center_spread"][0]), float(raw["center_spread"][1])),
        )


def _imputed(z: np.ndarray) -> np.ndarray:
    """Gaps (NaN) at the median, 0 in standardised units."""
    z = np.asarray(z, dtype=np.float64)
    gaps = np.isnan(z)
    return np.where(gaps, 0.0, z) if gaps.any() else z
