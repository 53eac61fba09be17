"""Generative detector on a numeric matrix: scaling, its networks, and the
one block scorer every scoring path uses.

A detector turns feature rows into a raw anomaly score (higher = more
anomalous), per-feature contributions and each network's own score on a
common scale: its `Evidence`. An ensemble takes a weighted mean of its
members' scores after putting each on that common scale (median 0, 99th
training percentile 1). Which members, and why: gendetect/models/README.md.

The detector learns "normal" only: rows marked in `exclude` (confirmed
frauds) stay out of the scaler, the networks and the validation rows. What
labels add on top is gendetect.label_aware's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from gendetect.features.scaling import RobustScaler
from gendetect.member import NeuralDetector, observed_cells
from gendetect.models.registry import ENSEMBLE, list_detector_kinds
from gendetect.models.settings import TrainingResult
from gendetect.params import DetectorParams


@dataclass
class Evidence:
    """What the detector says about a block of rows."""

    z: np.ndarray  # the scaled features (n, d), gaps imputed with the median (0)
    score: np.ndarray  # the raw anomaly score (n,)
    contributions: np.ndarray  # per-feature contributions to it (n, d)
    member_scores: list[np.ndarray]  # each network's score on its common scale


@dataclass
class DetectorCore:
    kind: str
    params: DetectorParams
    scaler: RobustScaler = field(default_factory=RobustScaler)
    members: list[NeuralDetector] = field(default_factory=list)
    train_index_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation_index_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def fit(
        self, x: np.ndarray, exclude: np.ndarray | None = None, cleared: np.ndarray | None = None
    ) -> DetectorCore:
        """Fit on the rows of `x` not marked in `exclude` (a boolean mask);
        rows marked in `cleared` (confirmed genuine) count
        `params.label_genuine_weight` times in the networks' training rows."""
        kinds = list_detector_kinds()
        if self.kind not in kinds:
            raise ValueError(f"unknown detector kind {self.kind!r}; choose from {kinds}")
        normal = np.arange(len(x)) if exclude is None else np.flatnonzero(~exclude)
        if len(normal) < 2:
            raise ValueError(
                "fit needs at least 2 rows that are not confirmed frauds, "
                f"got n_samples={len(normal)}"
            )
        self.scaler = RobustScaler(soft_limit=self.params.soft_limit).fit(x[normal])
        z = self.scaler.transform(x)
        train_rel, val_rel = _split(len(normal), self.params.validation_fraction, self.params.seed)
        self.train_index_, self.validation_index_ = normal[train_rel], normal[val_rel]
        members = list(self.params.ensemble) if self.kind == ENSEMBLE else [self.kind]
        fit_rows = _weighted(self.train_index_, cleared, self.params.label_genuine_weight)
        self.members = [
            NeuralDetector(kind=k, params=self.params, n_features=z.shape[1]).fit(
                z[fit_rows], z[self.validation_index_]
            )
            for k in members
        ]
        return self

    def evidence(self, x: np.ndarray) -> Evidence:
        """The block scorer: the networks run once on the block in float32;
        everything after them is float64. The discriminator runs only where
        its verdict has a weight (DetectorParams.uses_discriminator).

        Gaps (NaN, nullable fields) reach the networks as NaN, which they
        impute and leave out of the errors; the score averages over the
        observed cells, and the evidence's `z` holds the imputed values
        (finite: the label-aware head's trees read it)."""
        z = self.scaler.transform(x)
        t = torch.as_tensor(z, dtype=torch.float32)
        observed = observed_cells(z)
        if observed is not None:
            z = np.where(observed, z, 0.0)
        disc = self.params.uses_discriminator
        parts = [m.score_from(*m.raw_outputs(t, with_discriminator=disc), observed)
                 for m in self.members]
        if len(parts) == 1:
            (s, contrib), member = parts[0], self.members[0]
            center, spread = member.score_center_spread_
            return Evidence(z, s, contrib, [(s - center) / spread])
        score = np.zeros(len(z))
        contributions = np.zeros(z.shape)
        scaled = []
        for member, weight, (s, contrib) in zip(self.members, self.weights(), parts, strict=True):
            center, spread = member.score_center_spread_
            scaled.append((s - center) / spread)
            score += weight * scaled[-1]
            contributions += weight * contrib / spread
        return Evidence(z, score, contributions, scaled)

    def weights(self) -> np.ndarray:
        """The members' ensemble weights, normalised to sum to 1."""
        by_kind = dict(zip(self.params.ensemble, self.params.ensemble_weights, strict=True))
        weights = np.array([by_kind.get(m.kind, 1.0) for m in self.members], dtype=np.float64)
        return weights / weights.sum()

    def training_results(self) -> dict[str, TrainingResult]:
        return {m.kind: m.training_ for m in self.members}

    @property
    def is_global_zero(self) -> bool:
        """False in the other ranks of a distributed fit, whose copy of the
        detector should not be saved or registered (rank 0's is the result)."""
        return all(m.training_.is_global_zero for m in self.members)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split; validation holds at least one row."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * fraction)), n - 1) if n > 1 else 0
    if n_val == 0:
        return order, order
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _weighted(rows: np.ndarray, cleared: np.ndarray | None, weight: int) -> np.ndarray:
    """`rows` with each cleared one repeated `weight` times in all: an
    analyst's "genuine" is surer evidence of normal than an unlabelled row
    (which may be an undetected fraud). Repeats, not loss weights, so that
    every network kind takes them unchanged; sorted, so deterministic."""
    if cleared is None or weight <= 1:
        return rows
    extra = rows[cleared[rows]]
    if not len(extra) or len(extra) == len(rows):  # none cleared, or all: nothing to favour
        return rows
    return np.sort(np.concatenate([rows, *([extra] * (weight - 1))]))
