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
from gendetect.features.tails import MarginalTails
from gendetect.member import NeuralDetector, center_tail_spread, observed_cells
from gendetect.models.neighbours import NormalNeighbours
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
    # The tail term's state; None where its weight is 0 and in bundles
    # saved before it existed (their scores stay the networks' alone).
    tails: MarginalTails | None = None
    # The cleared rows' neighbour term (models/neighbours.py); None unless the
    # fit was given cleared rows and no confirmed fraud.
    neighbours: NormalNeighbours | None = None
    train_index_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation_index_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _wide_input: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

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
        p = self.params
        self.scaler = RobustScaler(
            soft_limit=p.soft_limit,
            limit_quantile=p.soft_limit_quantile,
            wide_quantile=p.wide_soft_limit_quantile,
        ).fit(x[normal])
        train_rel, val_rel = _split(len(normal), p.validation_fraction, p.seed)
        self.train_index_, self.validation_index_ = normal[train_rel], normal[val_rel]
        members = list(p.ensemble) if self.kind == ENSEMBLE else [self.kind]
        inputs = self.scaler.transforms(x, (self._reads_wide_input(k) for k in members))
        fit_rows = _weighted(self.train_index_, cleared, p.label_genuine_weight)
        self.members = []
        for k in members:
            z = inputs[self._reads_wide_input(k)]
            self.members.append(
                NeuralDetector(kind=k, params=p, n_features=z.shape[1]).fit(
                    z[fit_rows], z[self.validation_index_]
                )
            )
        self.tails = None
        if p.effective_tail_weight > 0:
            raw = self.scaler.standardise(x[normal])
            self.tails = MarginalTails().fit(raw)
            self.tails.center_spread = center_tail_spread(self.tails.contributions(raw).sum(axis=1))
        self.neighbours = self._fit_neighbours(x, exclude, cleared)
        return self

    def _fit_neighbours(
        self, x: np.ndarray, exclude: np.ndarray | None, cleared: np.ndarray | None
    ) -> NormalNeighbours | None:
        """The neighbour term on the cleared training rows (not the
        validation rows: they calibrate the threshold, and a row that is its
        own neighbour scores 0). Only when the caller gave cleared rows and
        no confirmed fraud: with frauds the label-aware head decides, and
        the term's effect under it is unmeasured."""
        p = self.params
        if cleared is None or p.neighbour_weight <= 0:
            return None
        if exclude is not None and exclude.any():
            return None
        rows = self.train_index_[cleared[self.train_index_]]
        if len(rows) < MIN_CLEARED_NEIGHBOURS:
            return None
        neighbours = NormalNeighbours().fit(self.scaler.standardise(x[rows]), seed=p.seed)
        neighbours.center_spread = center_tail_spread(neighbours.reference_terms())
        return neighbours

    def _reads_wide_input(self, kind: str) -> bool:
        """Whether member `kind` reads the input with the scaler's wider
        wide tail limits; looked up once per kind."""
        if kind not in self._wide_input:
            self._wide_input[kind] = self.params.model_params(kind).wide_input_tails
        return self._wide_input[kind]

    def evidence(self, x: np.ndarray) -> Evidence:
        """The block scorer: the networks run once on the block in float32;
        everything after them is float64. The discriminator runs only where
        its verdict has a weight (DetectorParams.uses_discriminator).

        Gaps (NaN, nullable fields) reach the networks as NaN, which they
        impute and leave out of the errors; the score averages over the
        observed cells, and the evidence's `z` holds the imputed values
        (finite: the label-aware head's trees read it)."""
        # Each member reads the input with its own tail limits (the NLL VAE
        # and the GAN the wide ones); the evidence's z is the default one.
        wide = [self._reads_wide_input(m.kind) for m in self.members]
        tails = self.tails if self.params.effective_tail_weight > 0 else None
        # The tail term reads the standardised, uncompressed values, before
        # the compression consumes them: one standardisation for both.
        standardised = self.scaler.standardise(x)
        terms = tails.contributions(standardised) if tails is not None else None
        scaled = self.scaler.compressed(standardised, [False, *wide])
        z = scaled[False]
        inputs = {w: torch.as_tensor(scaled[w], dtype=torch.float32) for w in set(wide)}
        observed = observed_cells(z)
        if observed is not None:
            z = np.where(observed, z, 0.0)
        disc = self.params.uses_discriminator
        parts = [
            m.score_from(*m.raw_outputs(inputs[w], with_discriminator=disc), observed)
            for m, w in zip(self.members, wide, strict=True)
        ]
        neighbours = self.neighbours
        if len(parts) == 1 and tails is None and neighbours is None:
            (s, contrib), member = parts[0], self.members[0]
            center, spread = member.score_center_spread_
            return Evidence(z, s, contrib, [(s - center) / spread])
        # On the common scale: the members' weighted mean, plus the tail term.
        # The first part is taken as it is, not added to zeros (0 + x is x:
        # the same values, two passes fewer per block).
        score: np.ndarray | None = None
        contributions: np.ndarray | None = None
        scaled = []
        for member, weight, (s, contrib) in zip(self.members, self.weights(), parts, strict=True):
            center, spread = member.score_center_spread_
            scaled.append((s - center) / spread)
            part = weight * contrib
            part /= spread
            if score is None or contributions is None:
                score, contributions = weight * scaled[-1], part
            else:
                score += weight * scaled[-1]
                contributions += part
        assert score is not None and contributions is not None
        if tails is not None:
            assert terms is not None
            center, spread = tails.center_spread
            weight = self.params.effective_tail_weight
            score += weight * (terms.sum(axis=1) - center) / spread
            # C order like the contributions (the terms come transposed).
            part = np.multiply(weight, terms, order="C")
            part /= spread
            contributions += part
        if neighbours is not None:
            terms = neighbours.contributions(standardised)
            center, spread = neighbours.center_spread
            weight = self.params.neighbour_weight
            score += weight * (terms.sum(axis=1) - center) / spread
            terms *= weight / spread
            contributions += terms
        return Evidence(z, score, contributions, scaled)

    def expected(self, x: np.ndarray, withheld: np.ndarray) -> np.ndarray | None:
        """What the networks expect rows `x` to be, in the model inputs' own
        units (the reconstruction mapped back through the scaler), with the
        cells marked in `withheld` (a boolean mask like x) hidden from them
        as gaps: the expectation of a value given the rest of the record.

        Withheld, because a reconstruction of the whole record follows what
        it is shown: an amount five times a card's usual one comes back
        inflated too. Hidden, the amount (and the columns derived from it)
        is inferred from the record's context (the card's averages, the
        time, the terminal), which is what an analyst compares it with.
        The VAE's is its decoder mean at the posterior mean, the GAN's its
        encoder -> generator reconstruction; an ensemble's is the members'
        weighted mean (the ensemble weights) in original units. None when
        no network has a reconstruction."""
        wide = [self._reads_wide_input(m.kind) for m in self.members]
        inputs = {}
        for w, z in self.scaler.transforms(x, wide).items():
            z[withheld] = np.nan
            inputs[w] = torch.as_tensor(z, dtype=torch.float32)
        total, weight_sum = None, 0.0
        for member, w, weight in zip(self.members, wide, self.weights(), strict=True):
            recon = member.expected(inputs[w])
            if recon is None:
                continue
            # Back through the same tail limits the member read its input with.
            values = weight * self.scaler.inverse_transform(recon, wide=w)
            total = values if total is None else total + values
            weight_sum += weight
        return None if total is None else total / weight_sum

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


# Fewer cleared training rows than this: no neighbour term (a k-th
# neighbour among a handful of rows says little).
MIN_CLEARED_NEIGHBOURS = 10


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
