"""Labels and the label-aware head's trees.

Labels follow scikit-learn's semi-supervised convention: 1 = confirmed
fraud, 0 = confirmed genuine, -1 (or NaN / missing) = unknown. Fraud teams
have millions of unlabelled transactions and a trickle of late verdicts, so
unknown is the normal case, and an all-unknown `y` must give exactly the
detector that `y=None` gives. Unknown rows count as negatives for the head
(positive-unlabelled learning: with labels missing at random the ranking is
preserved); confirmed frauds are positives and never count as normal data
for the generative networks. The capability as a whole (when the head is
used, its evidence, the blend, the explanations) is gendetect.label_aware.

The head is fitted with scikit-learn's HistGradientBoostingClassifier and
stored as plain arrays (node features, thresholds, children, values):
a bundle stays free of pickle. Scores come from the trees' code tables
(gendetect.models.tree_codes: each tree's tests computed column-wise, no
per-row walk); per-column path attributions (the change in the tree's value
at each split, credited to the split's column; Saabas), which the
explanations use in label-aware mode, come from the same codes and are
computed only for the rows that are explained. `reference_decision` is the
depth-stepped numpy traversal the tables replaced: the tests pin the tables
to it, and benchmarks measure "before" with it. Measurements behind the
sizes and the speed: gendetect/models/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gendetect.models.tree_codes import SMALL_ROWS, CodedTrees, Column

FRAUD, GENUINE, UNKNOWN = 1, 0, -1
# Rows scored per traversal chunk: bounds the (rows x trees) index arrays.
_CHUNK = 8192
_BIG = float(np.finfo(np.float64).max)
# Below this many confirmed frauds the head trains a fixed number of rounds
# (no early stopping): the few-label mode.
EARLY_STOP_MIN_FRAUDS = 20
FEW_LABEL_ITERATIONS = 100


def normalise_labels(y: Any, n_rows: int, *, name: str = "y") -> np.ndarray:
    """Labels as int8 in {1, 0, -1}; None, NaN and missing are -1 (unknown).

    Anything else (2, 0.5, "fraud") is a ValueError naming the values, so a
    mislabelled column never silently becomes "unknown"."""
    if y is None:
        return np.full(n_rows, UNKNOWN, dtype=np.int8)
    try:
        import pandas as pd

        if isinstance(y, pd.DataFrame):
            if y.shape[1] != 1:
                raise ValueError(f"{name} must be one column, got {y.shape[1]}")
            y = y.iloc[:, 0]
        if isinstance(y, pd.Series):
            y = pd.to_numeric(y, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: labels must be 1, 0, -1 or missing ({exc})") from None
    try:
        values = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{name}: labels must be 1, 0, -1 or missing") from None
    if len(values) != n_rows:
        raise ValueError(f"{name} has {len(values)} labels for {n_rows} rows")
    known = ~np.isnan(values)
    bad = known & ~np.isin(values, (FRAUD, GENUINE, UNKNOWN))
    if bad.any():
        shown = sorted({float(v) for v in values[bad]})[:5]
        raise ValueError(f"{name}: labels must be 1, 0, -1 or missing, found {shown}")
    out = np.full(n_rows, UNKNOWN, dtype=np.int8)
    out[known] = values[known].astype(np.int8)
    return out


@dataclass
class BoostedHead:
    """Gradient-boosted trees on the evidence columns, stored as arrays."""

    max_iter: int = 200
    learning_rate: float = 0.1
    # The most leaves per tree; fewer with few confirmed frauds (leaves_for).
    max_leaf_nodes: int = 8
    min_samples_leaf: int = 20
    l2_regularization: float = 10.0
    baseline_: float = 0.0
    # All trees' nodes in one table; roots_[t] is tree t's first node.
    feature_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    threshold_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    missing_left_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    left_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    right_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    leaf_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    value_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    roots_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    depth_: int = 0
    n_columns_: int = 0
    # Score with reference_decision instead of the code tables (benchmarks'
    # "before"; never stored).
    reference: bool = field(default=False, compare=False)
    _coded: CodedTrees | None = field(default=None, init=False, repr=False, compare=False)

    def fit(self, evidence: np.ndarray, target: np.ndarray, seed: int) -> BoostedHead:
        from sklearn.ensemble import HistGradientBoostingClassifier

        n_pos = int(target.sum())
        # Few labels (fewer than EARLY_STOP_MIN_FRAUDS): the stratified tenth
        # that early stopping watches holds zero to two frauds, so it stops on
        # noise; a fixed, short schedule instead (measured on ADBench with 5
        # labelled anomalies: mean ROC AUC 0.833 -> 0.852 on six files,
        # benchmarks/results/quality.md, few-label track).
        few = n_pos < EARLY_STOP_MIN_FRAUDS
        model = HistGradientBoostingClassifier(
            max_iter=min(self.max_iter, FEW_LABEL_ITERATIONS) if few else self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.leaves_for(n_pos),
            # A leaf needs some support, but on small data no more than a
            # fraction of the positives (else no split can isolate them); with
            # few labels one fraud may make a leaf.
            min_samples_leaf=1 if few else max(2, min(self.min_samples_leaf, n_pos // 4)),
            l2_regularization=self.l2_regularization,
            # Always early-stopped on a stratified tenth (sklearn's "auto"
            # turns it off below 10k rows, where overfitting is worst).
            early_stopping=not few,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=seed,
        )
        model.fit(evidence, target)
        self._pack(model)
        return self

    def leaves_for(self, n_frauds: int) -> int:
        """Leaves per tree for `n_frauds` positives: one per 20 frauds, from 3
        up to max_leaf_nodes (measurements: gendetect/models/README.md)."""
        return max(3, min(self.max_leaf_nodes, n_frauds // 20))

    def _pack(self, model: Any) -> None:
        tables, roots, offset = [], [], 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():  # never: every column is numeric
                raise ValueError("categorical splits are not supported")
            roots.append(offset)
            tables.append((nodes, offset))
            offset += len(nodes)
        cat = np.concatenate
        self.feature_ = cat([n["feature_idx"].astype(np.int32) for n, _ in tables])
        self.threshold_ = cat([n["num_threshold"].astype(np.float64) for n, _ in tables])
        self.missing_left_ = cat([n["missing_go_to_left"].astype(bool) for n, _ in tables])
        self.left_ = cat([n["left"].astype(np.int32) + o for n, o in tables])
        self.right_ = cat([n["right"].astype(np.int32) + o for n, o in tables])
        self.leaf_ = cat([n["is_leaf"].astype(bool) for n, _ in tables])
        self.value_ = cat([n["value"].astype(np.float64) for n, _ in tables])
        self.roots_ = np.asarray(roots, dtype=np.int32)
        self.depth_ = int(max(int(n["depth"].max()) for n, _ in tables))
        self.baseline_ = float(np.ravel(model._baseline_prediction)[0])
        self.n_columns_ = int(model.n_features_in_)
        # Leaves of the same record always sit at the same path: a leaf
        # points to itself, so every row can take depth_ steps.
        self.left_[self.leaf_] = np.flatnonzero(self.leaf_)
        self.right_[self.leaf_] = np.flatnonzero(self.leaf_)
        self._coded = None

    @property
    def n_trees(self) -> int:
        return len(self.roots_)

    def coded(self) -> CodedTrees | None:
        """The code tables (built on first use); None for trees too large
        for them, or when `reference` asks for the traversal."""
        if self.reference:
            return None
        if self._coded is None:
            self._coded = CodedTrees.build(
                feature=self.feature_, threshold=self.threshold_,
                missing_left=self.missing_left_, left=self.left_, right=self.right_,
                leaf=self.leaf_, value=self.value_, roots=self.roots_,
                baseline=self.baseline_, n_columns=self.n_columns_,
            )
        return self._coded

    def decision(
        self, evidence: np.ndarray | Column, n_rows: int | None = None,
        tables: CodedTrees | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log-odds (n,), per-column path attributions (n, columns)) from
        one set of codes (see `logits` for the arguments); the attributions
        of a row sum to its log-odds minus the baseline."""
        coded = tables if tables is not None else self.coded()
        if coded is None:
            return reference_decision(self, _matrix(evidence, n_rows, self.n_columns_))
        codes = self._codes(coded, evidence, n_rows)
        return coded.logits(codes), coded.attributions(codes)

    def logits(
        self, evidence: np.ndarray | Column, n_rows: int | None = None,
        tables: CodedTrees | None = None,
    ) -> np.ndarray:
        """Log-odds of rows, no attributions: `evidence` is an (n, columns)
        matrix, or a function giving column j of `n_rows` rows. `tables`:
        code tables derived from `coded()` for an input given in other terms
        (CodedTrees.before_log1p), used instead of it."""
        coded = tables if tables is not None else self.coded()
        if coded is None:
            return reference_decision(self, _matrix(evidence, n_rows, self.n_columns_))[0]
        return coded.logits(self._codes(coded, evidence, n_rows))

    def attributions(
        self, evidence: np.ndarray | Column, n_rows: int | None = None,
        tables: CodedTrees | None = None,
    ) -> np.ndarray:
        """Per-column path attributions (n, columns) of rows (see `logits`)."""
        coded = tables if tables is not None else self.coded()
        if coded is None:
            return reference_decision(self, _matrix(evidence, n_rows, self.n_columns_))[1]
        return coded.attributions(self._codes(coded, evidence, n_rows))

    @staticmethod
    def _codes(coded: CodedTrees, evidence: np.ndarray | Column, n_rows: int | None) -> np.ndarray:
        if callable(evidence):
            if n_rows is None:
                raise TypeError("n_rows is required with a column function")
            return coded.codes(evidence, n_rows)
        if len(evidence) <= SMALL_ROWS:
            return coded.codes_of_rows(evidence)
        return coded.codes(_matrix_columns(evidence), len(evidence))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
            "baseline": self.baseline_,
            "feature": self.feature_.tolist(),
            # JSON has no inf (a split can send everything but NaN left): the
            # largest float compares the same with every finite input.
            "threshold": np.clip(self.threshold_, -_BIG, _BIG).tolist(),
            "missing_left": self.missing_left_.astype(int).tolist(),
            "left": self.left_.tolist(),
            "right": self.right_.tolist(),
            "leaf": self.leaf_.astype(int).tolist(),
            "value": self.value_.tolist(),
            "roots": self.roots_.tolist(),
            "depth": self.depth_,
            "n_columns": self.n_columns_,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BoostedHead:
        return cls(
            max_iter=int(raw["max_iter"]),
            learning_rate=float(raw["learning_rate"]),
            max_leaf_nodes=int(raw["max_leaf_nodes"]),
            min_samples_leaf=int(raw["min_samples_leaf"]),
            l2_regularization=float(raw["l2_regularization"]),
            baseline_=float(raw["baseline"]),
            feature_=np.asarray(raw["feature"], dtype=np.int32),
            threshold_=np.asarray(raw["threshold"], dtype=np.float64),
            missing_left_=np.asarray(raw["missing_left"], dtype=bool),
            left_=np.asarray(raw["left"], dtype=np.int32),
            right_=np.asarray(raw["right"], dtype=np.int32),
            leaf_=np.asarray(raw["leaf"], dtype=bool),
            value_=np.asarray(raw["value"], dtype=np.float64),
            roots_=np.asarray(raw["roots"], dtype=np.int32),
            depth_=int(raw["depth"]),
            n_columns_=int(raw["n_columns"]),
        )


def _matrix_columns(evidence: np.ndarray) -> Column:
    # One contiguous copy per column the trees test (the comparisons run
    # along rows), made once even when two groups of tests share it.
    cache: dict[int, np.ndarray] = {}

    def column(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = np.ascontiguousarray(evidence[:, j], dtype=np.float64)
        return cache[j]

    return column


def _matrix(evidence: np.ndarray | Column, n_rows: int | None, n_columns: int) -> np.ndarray:
    if not callable(evidence):
        return evidence
    if n_rows is None:
        raise TypeError("n_rows is required with a column function")
    if not n_columns:
        return np.zeros((n_rows, 0))
    return np.column_stack([evidence(j) for j in range(n_columns)])


def reference_decision(head: BoostedHead, evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The depth-stepped numpy traversal of all trees at once: (log-odds,
    attributions) of every row. The reference the code tables are pinned to
    (1e-9), and the "before" of the benchmarks (tens of times slower)."""
    n = len(evidence)
    logits = np.full(n, head.baseline_)
    attributions = np.zeros((n, head.n_columns_))
    for start in range(0, n, _CHUNK):
        part = np.asarray(evidence[start : start + _CHUNK], dtype=np.float64)
        logits[start : start + len(part)] += _traverse(
            head, part, attributions[start : start + len(part)]
        )
    return logits, attributions


def _traverse(head: BoostedHead, x: np.ndarray, attributions: np.ndarray) -> np.ndarray:
    m, n_trees, n_columns = len(x), head.n_trees, head.n_columns_
    if n_trees == 0 or m == 0:
        return np.zeros(m)
    node = np.broadcast_to(head.roots_, (m, n_trees)).copy()
    rows = np.arange(m)[:, None]
    flat_base = np.arange(m)[:, None] * n_columns
    for _ in range(head.depth_):
        active = ~head.leaf_[node]
        if not active.any():
            break
        feature = head.feature_[node]
        values = x[rows, feature]
        go_left = np.where(
            np.isnan(values), head.missing_left_[node], values <= head.threshold_[node]
        )
        child = np.where(go_left, head.left_[node], head.right_[node])
        delta = np.where(active, head.value_[child] - head.value_[node], 0.0)
        attributions += np.bincount(
            (flat_base + feature).ravel(), weights=delta.ravel(), minlength=m * n_columns
        ).reshape(m, n_columns)
        node = child
    # The leaves' values; the roots' are 0 in sklearn's trees, so the
    # attributions (value changes along the path) sum to the same.
    return head.value_[node].sum(axis=1)
