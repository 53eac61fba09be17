"""What a few confirmed labels add to the generative detector, as one
capability: the labels read once, the decision whether there are enough of
them, the boosted head on the detector's evidence, the blend with the
unsupervised score, and the explanations of the blended score.

Labels follow scikit-learn's semi-supervised convention (1 = confirmed
fraud, 0 = confirmed genuine, -1 / NaN = unknown; gendetect.models.labels).
The head's trees (BoostedHead) learn on the evidence columns: the scaled
features, the log of each feature's generative error and each network's own
score. The label-aware score is the head's log-odds plus `label_blend` times
the unsupervised score on its common scale (median 0, 99th training
percentile 1): the head ranks the top of the list, the generative score
orders the bulk the trees leave flat. Measurements behind the defaults:
gendetect/models/README.md.

Scores and explanations are separate calls: every row needs a score, but
only the rows that get an explanation (the flagged ones, by default) need
the head's path attributions, so `scores` never computes them and
`contributions` computes them for the rows asked for only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gendetect.detector import DetectorCore, Evidence
from gendetect.errors import InputError
from gendetect.member import center_tail_spread
from gendetect.models.labels import (
    EARLY_STOP_MIN_FRAUDS,
    FRAUD,
    GENUINE,
    UNKNOWN,
    BoostedHead,
    normalise_labels,
)
from gendetect.models.tree_codes import SMALL_ROWS, CodedTrees, Column

logger = logging.getLogger(__name__)


def prepare_labels(X: pd.DataFrame | np.ndarray, y: Any, n_rows: int) -> np.ndarray:
    """fit's `y` as int8 labels (1, 0, -1); a string names a column of X."""
    if isinstance(y, str):
        if not isinstance(X, pd.DataFrame) or y not in X.columns:
            raise InputError("label column is missing", field=y)
        try:
            return normalise_labels(X[y], n_rows, name=y)
        except ValueError as exc:
            raise InputError(str(exc).removeprefix(f"{y}: "), field=y) from None
    try:
        return normalise_labels(y, n_rows)
    except ValueError as exc:
        raise InputError(str(exc), field="y") from None


def known_frauds_only(X: Any, label_field: str | None) -> Any:
    """X with unknown labels (-1) in the label column read as 0, "not known
    as fraud": what the terminal-risk window features count (a -1 would
    subtract from the fraud count)."""
    if not isinstance(X, pd.DataFrame) or label_field is None or label_field not in X:
        return X
    column = X[label_field]
    if not pd.api.types.is_numeric_dtype(column) or not (column < 0).any():
        return X
    return X.assign(**{label_field: column.where(column >= 0, 0)})


def label_counts(labels: np.ndarray) -> dict[str, int]:
    return {
        "frauds": int((labels == FRAUD).sum()),
        "genuine": int((labels == GENUINE).sum()),
        "unknown": int((labels == UNKNOWN).sum()),
    }


def evidence_columns(ev: Evidence) -> np.ndarray:
    """The head's columns: scaled features, log generative error per feature
    (the log tames NLL tails for the trees' binning), and each member's
    score. Column order is what attributions map back by."""
    return np.column_stack(
        [ev.z, np.log1p(np.maximum(ev.contributions, 0.0)), *ev.member_scores]
    )


def _evidence(ev: Evidence, rows: np.ndarray | None) -> tuple[np.ndarray | Column, int]:
    """The head's input for `rows` of a block (all by default): for a few
    rows the evidence matrix (whole-matrix calls are cheapest), else its
    columns on demand, as the trees ask for them."""
    n = len(ev.score) if rows is None else len(rows)
    if n > SMALL_ROWS:
        return evidence_column(ev, rows), n
    if rows is not None:  # those rows' evidence only, not the block's
        ev = Evidence(z=ev.z[rows], score=ev.score[rows], contributions=ev.contributions[rows],
                      member_scores=[member[rows] for member in ev.member_scores])
    return evidence_columns(ev), n


def evidence_column(ev: Evidence, rows: np.ndarray | None = None, *,
                    log_errors: bool = True) -> Column:
    """Column j of `evidence_columns` (of `rows` only, if given), contiguous:
    the head's trees test a column at a time (the same values, bit for bit).
    The scaled features and the errors are transposed once per block, each
    in one whole-array pass: a contiguous copy per column gathered from the
    row-major block costs more. Without `log_errors`, the error columns are
    max(error, 0) before the log1p (for code tables built with
    CodedTrees.before_log1p: the same tests without a logarithm per value)."""
    d = ev.z.shape[1]
    z = ev.z if rows is None else ev.z[rows]
    errors = ev.contributions if rows is None else ev.contributions[rows]
    z_t = np.ascontiguousarray(z.T, dtype=np.float64)
    errors_t = np.maximum(errors.T, 0.0, order="C")
    if log_errors:
        np.log1p(errors_t, out=errors_t)
    errors_t = errors_t.astype(np.float64, copy=False)
    members: dict[int, np.ndarray] = {}

    def column(j: int) -> np.ndarray:
        if j < d:
            return z_t[j]
        if j < 2 * d:
            return errors_t[j - d]
        if j not in members:
            member = ev.member_scores[j - 2 * d]
            members[j] = np.ascontiguousarray(
                member if rows is None else member[rows], dtype=np.float64
            )
        return members[j]

    return column


# The few-label settings below were chosen on development data only (the
# handbook's development week, an ADBench validation part); what was tried
# and measured: gendetect/models/README.md, label sections.
#
# Up to this many confirmed frauds, rows near one of them (in the scaled
# feature space) score higher: with few labels the trees alone generalise
# little beyond the frauds they saw. Beyond it the trees have enough frauds
# and the similarity costs scoring speed for little gain.
PROTOTYPE_MAX_FRAUDS = 100
# The similarity's bandwidth: this quantile of the training rows' distance to
# the nearest confirmed fraud (the frauds' own neighbourhood), and its weight
# in the score (the unsupervised part's common scale: 99th percentile 1).
PROTOTYPE_QUANTILE = 0.05
PROTOTYPE_WEIGHT = 1.0
# Few-label mode: the trees' log-odds count n / (n + FEW_LABEL_SHRINK) for n
# confirmed frauds: a handful of frauds of many scenarios misleads
# full-weight trees.
FEW_LABEL_SHRINK = 20.0
# Few-label mode: the unsupervised score weighs at least this much (instead
# of `label_blend`): a handful of frauds says little about the bulk, which
# the generative score orders. From 20 frauds `label_blend` applies.
FEW_LABEL_BLEND = 1.0


def nearest_distance(z: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of `z` to its nearest prototype, in
    (rows x prototypes) memory whatever the width."""
    squared = (
        np.einsum("ij,ij->i", z, z)[:, None]
        - 2.0 * z @ prototypes.T
        + np.einsum("ij,ij->i", prototypes, prototypes)[None, :]
    )
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


@dataclass
class LabelAwareHead:
    min_frauds: int
    blend: float
    trees: BoostedHead | None = None
    unsupervised_center_spread_: tuple[float, float] = (0.0, 1.0)
    # Few labels: the confirmed frauds' scaled features and the similarity's
    # bandwidth (None above PROTOTYPE_MAX_FRAUDS).
    prototypes_: np.ndarray | None = None
    bandwidth_: float = 1.0
    # The weight of the trees' log-odds (below 1 in the few-label mode).
    head_weight_: float = 1.0
    # The unsupervised score's weight where it is not `blend` (the few-label
    # mode); None: `blend` (and every bundle saved before it).
    unsupervised_weight_: float | None = None
    # Which mode, from how many labels (the model card's "labels").
    summary_: dict[str, Any] = field(default_factory=dict)
    # The trees' code tables and their copy for error columns before log1p
    # (_head_input), built on first use, never stored.
    _raw_error_tables: tuple[CodedTrees, CodedTrees] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.trees is not None

    def fit(
        self, detector: DetectorCore, x: np.ndarray, labels: np.ndarray, seed: int
    ) -> LabelAwareHead:
        """Learn from the labels on top of a fitted detector, if there are at
        least `min_frauds` confirmed frauds; else stay inactive and say why."""
        counts = label_counts(labels)
        n_frauds = counts["frauds"]
        self.trees = None
        self.summary_ = {**counts, "min_frauds": self.min_frauds}
        if n_frauds < self.min_frauds:
            self.summary_["mode"] = "unsupervised"
            if n_frauds or counts["genuine"]:
                self.summary_["reason"] = (
                    f"{n_frauds} confirmed fraud(s), fewer than label_min_frauds="
                    f"{self.min_frauds}: the labels only kept those frauds out of the "
                    "normal training data"
                )
                logger.warning("label-aware mode off: %s", self.summary_["reason"])
            return self
        # The head learns on the networks' training rows (unknown and genuine
        # as negatives) plus every confirmed fraud. The validation rows stay
        # out: they calibrate the risk and the threshold, and a head that had
        # seen them would put the threshold too low.
        train_idx = detector.train_index_
        # (unique: a detector fitted without these labels has the frauds in
        # its training rows already; fit(X, y) never does.)
        rows = np.unique(np.concatenate([train_idx, np.flatnonzero(labels == FRAUD)]))
        target = (labels[rows] == FRAUD).astype(np.int8)
        trees = BoostedHead().fit(evidence_columns(detector.evidence(x[rows])), target, seed)
        self.trees = trees
        train_evidence = detector.evidence(x[train_idx])
        self.unsupervised_center_spread_ = center_tail_spread(train_evidence.score)
        self.prototypes_ = None
        self.head_weight_ = 1.0
        self.unsupervised_weight_ = None
        if n_frauds < EARLY_STOP_MIN_FRAUDS:
            self.head_weight_ = n_frauds / (n_frauds + FEW_LABEL_SHRINK)
            if self.blend < FEW_LABEL_BLEND:
                self.unsupervised_weight_ = FEW_LABEL_BLEND
        if n_frauds <= PROTOTYPE_MAX_FRAUDS:
            self.prototypes_ = detector.evidence(x[labels == FRAUD]).z
            distance = nearest_distance(train_evidence.z, self.prototypes_)
            # Zero distances (the frauds themselves, duplicates) say nothing
            # about the neighbourhood's size.
            positive = distance[distance > 0]
            self.bandwidth_ = (
                float(np.quantile(positive, PROTOTYPE_QUANTILE)) if len(positive) else 1.0
            )
        self.summary_.update({"mode": "label-aware", "head": "boosting", "trees": trees.n_trees,
                              "fraud_similarity": self.prototypes_ is not None})
        if n_frauds < EARLY_STOP_MIN_FRAUDS:
            self.summary_["reason"] = (
                f"few-label mode: {n_frauds} confirmed fraud(s), fewer than "
                f"{EARLY_STOP_MIN_FRAUDS}: a fixed {trees.n_trees}-round head without early "
                f"stopping at weight {self.head_weight_:.2f}, blended with the unsupervised "
                f"score (weight {self.unsupervised_blend:.2f}) and the similarity to the "
                "confirmed frauds"
            )
        logger.info(
            "label-aware mode: %d confirmed fraud(s), %d genuine, %d unknown; %d trees",
            n_frauds, counts["genuine"], counts["unknown"], trees.n_trees,
        )
        return self

    def score(self, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
        """(label-aware score, per-feature contributions) of every row of a
        block; the detector's own when the head is inactive. The trees'
        codes are computed once for both (`explain="all"`, the API's
        records)."""
        if self.trees is None:
            return ev.score, ev.contributions
        logits, attributions = self.trees.decision(*self._head_input(ev, None))
        return self._blended(ev, logits), self._explained(ev, None, attributions)

    def scores(self, ev: Evidence) -> np.ndarray:
        """The label-aware score of every row of a block (no attributions)."""
        if self.trees is None:
            return ev.score
        return self._blended(ev, self.trees.logits(*self._head_input(ev, None)))

    def contributions(self, ev: Evidence, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-feature contributions of `rows` of a block (all by default):
        the head's path attributions are computed for those rows only."""
        if rows is not None:
            rows = np.asarray(rows, dtype=np.intp)
        if self.trees is None:
            return ev.contributions if rows is None else ev.contributions[rows]
        attributions = self.trees.attributions(*self._head_input(ev, rows))
        return self._explained(ev, rows, attributions)

    def _blended(self, ev: Evidence, logits: np.ndarray) -> np.ndarray:
        """The label-aware score from the trees' log-odds of a block."""
        if self.head_weight_ != 1.0:
            logits = self.head_weight_ * logits
        score = logits + self.unsupervised_blend * self._unsupervised(ev.score)
        if self.prototypes_ is not None:
            score = score + PROTOTYPE_WEIGHT * self._similarity(ev.z)
        return score

    def _explained(
        self, ev: Evidence, rows: np.ndarray | None, attributions: np.ndarray
    ) -> np.ndarray:
        """Per-feature contributions of `rows` (all: None) from the trees'
        path attributions of those rows."""
        contributions = ev.contributions if rows is None else ev.contributions[rows]
        if self.head_weight_ != 1.0:
            attributions = self.head_weight_ * attributions
        unsupervised = self._unsupervised(ev.score if rows is None else ev.score[rows])
        # Per-feature explanations: the head's path attributions of a
        # feature's own columns (its value and its error), the member-score
        # columns and the blended unsupervised part shared out by the
        # generative contributions. Only the parts that push the score up
        # explain an alert; a tiny share of the generative contributions
        # keeps every row's total positive.
        d = ev.z.shape[1]
        share = contributions / np.maximum(contributions.sum(axis=1, keepdims=True), 1e-12)
        per_feature = attributions[:, :d] + attributions[:, d : 2 * d]
        per_feature = per_feature + attributions[:, 2 * d :].sum(axis=1, keepdims=True) * share
        pushed = self.unsupervised_blend * np.maximum(unsupervised, 0.0)[:, None] * share
        if self.prototypes_ is not None:
            # Nearness to a confirmed fraud, shared out like the generative part.
            z = ev.z if rows is None else ev.z[rows]
            pushed = pushed + PROTOTYPE_WEIGHT * self._similarity(z)[:, None] * share
        explained = np.maximum(per_feature, 0.0) + pushed
        return explained + 1e-6 * share

    def _head_input(
        self, ev: Evidence, rows: np.ndarray | None
    ) -> tuple[np.ndarray | Column, int, CodedTrees | None]:
        """(evidence, rows, code tables) for the trees: on big blocks the
        error columns before their log1p, with tables whose thresholds on
        those columns are moved back through it (the same tests, without a
        logarithm per value)."""
        assert self.trees is not None
        n = len(ev.score) if rows is None else len(rows)
        coded = self.trees.coded()
        # A few rows: the evidence matrix; the reference traversal (coded
        # None) reads the evidence as it is.
        if n <= SMALL_ROWS or coded is None:
            return (*_evidence(ev, rows), None)
        cached = self._raw_error_tables
        if cached is None or cached[0] is not coded:
            d = ev.z.shape[1]
            cached = self._raw_error_tables = (coded, coded.before_log1p(np.arange(d, 2 * d)))
        return evidence_column(ev, rows, log_errors=False), n, cached[1]

    @property
    def unsupervised_blend(self) -> float:
        """The unsupervised score's weight in the label-aware score."""
        return self.blend if self.unsupervised_weight_ is None else self.unsupervised_weight_

    def _similarity(self, z: np.ndarray) -> np.ndarray:
        """In (0, 1]: 1 at a confirmed fraud, falling with the distance to
        the nearest one on the scale of the frauds' neighbourhood."""
        assert self.prototypes_ is not None
        distance = nearest_distance(z, self.prototypes_) / self.bandwidth_
        return np.exp(-0.5 * distance**2)

    def _unsupervised(self, score: np.ndarray) -> np.ndarray:
        center, spread = self.unsupervised_center_spread_
        return (score - center) / spread

    def state(self) -> dict[str, Any] | None:
        """What a bundle stores (None when inactive)."""
        if self.trees is None:
            return None
        state: dict[str, Any] = {
            "head": self.trees.to_dict(),
            "unsupervised_center_spread": list(self.unsupervised_center_spread_),
            "labels": self.summary_,
        }
        if self.prototypes_ is not None:
            state["prototypes"] = self.prototypes_.tolist()
            state["bandwidth"] = self.bandwidth_
        if self.head_weight_ != 1.0:
            state["head_weight"] = self.head_weight_
        if self.unsupervised_weight_ is not None:
            state["unsupervised_weight"] = self.unsupervised_weight_
        return state

    @classmethod
    def from_state(
        cls, state: dict[str, Any] | None, *, min_frauds: int, blend: float,
        summary: dict[str, Any],
    ) -> LabelAwareHead:
        head = cls(min_frauds=min_frauds, blend=blend, summary_=dict(summary))
        if state:
            head.trees = BoostedHead.from_dict(state["head"])
            head.unsupervised_center_spread_ = tuple(state["unsupervised_center_spread"])  # type: ignore[assignment]
            head.summary_ = dict(state.get("labels", {}))
            if "prototypes" in state:  # bundles before the few-label mode have none
                head.prototypes_ = np.asarray(state["prototypes"], dtype=np.float64)
                head.bandwidth_ = float(state["bandwidth"])
            head.head_weight_ = float(state.get("head_weight", 1.0))
            # Bundles before FEW_LABEL_BLEND have none: they keep `blend`.
            weight = state.get("unsupervised_weight")
            head.unsupervised_weight_ = None if weight is None else float(weight)
        return head
