"""The fraud model bundle: everything needed to turn a raw record into a
decision, in one scikit-learn estimator that training builds, MLflow stores,
and batch jobs and the API load.

It follows PyOD's detector conventions so users of that library can switch
without rewriting: `fit(X)`, `decision_function(X)` (raw score, higher = more
anomalous), `predict(X)` (0/1 at the threshold), `predict_proba(X)`,
`fit_predict`, `decision_scores_` / `labels_` (the training rows' scores and
verdicts), `contamination` (the alert rate), plus `risk(X)` (calibrated
0-1), `explain(X)` (top contributing features) and `explain_reasons(X)`
(the same contributions summed per reason, see gendetect.reasons). X is a
DataFrame with the schema's columns or a 2-D numeric array. Constructor
arguments are stored as given and checked in `fit` (scikit-learn's
convention: `clone`, pipelines and grid searches work).

A fit composes two stages: the generative detector learns normal traffic
(gendetect.detector), and the label-aware head learns from confirmed labels
on its evidence where there are enough (gendetect.label_aware). Every
scoring entry point runs the detector's block scorer and the head on blocks
of rows, then one decision assembly (gendetect.decisions).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.exceptions import NotFittedError

from gendetect import bundle_store, decisions, inputs
from gendetect.calibration import EmpiricalCalibrator
from gendetect.decisions import BatchDecisions
from gendetect.detector import DetectorCore, Evidence
from gendetect.errors import InputError
from gendetect.estimator_params import EstimatorParams, with_parameter_signature
from gendetect.features.pipeline import FeaturePipeline, WindowHistory
from gendetect.features.units import FeatureUnits
from gendetect.fit_record import fit_metadata
from gendetect.label_aware import LabelAwareHead, known_frauds_only, prepare_labels
from gendetect.models.labels import FRAUD, GENUINE
from gendetect.reasons import ReasonMap, top_shares
from gendetect.schema import Schema, load_schema

# Which rows of a batch get explanations: the flagged ones (what an analyst
# reviews, ~alert_rate of the rows), all, or none.
EXPLAIN_MODES = ("flagged", "all", "none")
# Rows per block of the block scorer: the activations of a block stay in the
# CPU's cache (measurement: benchmarks/results/tuning.md).
SCORE_BLOCK_ROWS = 8192
_NOT_FITTED = "the bundle is not fitted: call fit() or load()"


@with_parameter_signature
class FraudModelBundle(EstimatorParams, OutlierMixin, BaseEstimator):
    def __init__(
        self,
        kind: str = "vae",
        *,
        schema: str | Path | Schema = "numeric",
        alert_rate: float = 0.01,
        top_k: int = 3,
        **params: Any,
    ) -> None:
        self.kind = kind
        self._schema_arg = schema
        self.alert_rate = alert_rate
        self.top_k = top_k
        self._params = dict(params)
        self._schema: Schema | None = None
        self._pipeline: FeaturePipeline | None = None
        self._reason_map: ReasonMap | None = None
        self._feature_units: FeatureUnits | None = None
        self._metadata: dict[str, Any] = {}

    @property
    def schema(self) -> Schema:
        """The fitted (resolved) schema; before fit, the one given."""
        if self._schema is not None:
            return self._schema
        given = self._schema_arg
        return given if isinstance(given, Schema) else load_schema(given)

    @property
    def pipeline(self) -> FeaturePipeline | None:
        return self._pipeline

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    @property
    def label_summary_(self) -> dict[str, Any]:
        """Which mode the fit chose, from how many labels."""
        return self.label_head_.summary_

    # ------------------------------------------------------------- fitting
    def fit(self, X: pd.DataFrame | np.ndarray, y: Any = None) -> FraudModelBundle:
        """Learn normal behaviour from X, and from labels where there are some.

        `y` (scikit-learn style): per row 1 = confirmed fraud, 0 = confirmed
        genuine, -1 / NaN = unknown; or the name of a column of X holding
        them (e.g. the schema's label field); None = no labels (PyOD's
        unsupervised fit). Confirmed frauds never count as normal data; with
        at least `label_min_frauds` of them the score becomes label-aware
        (gendetect.label_aware). All-unknown labels give exactly the
        unsupervised detector."""
        params = self.check_params()
        started = time.perf_counter()
        X = inputs.string_columns(X)
        given = self._schema_arg
        schema = given if isinstance(given, Schema) else load_schema(given)
        label_column = y if isinstance(y, str) else schema.label_field
        columns = inputs.column_names(X)
        self._schema = schema.resolve_columns(
            [c for c in columns if c not in (schema.label_field, label_column)]
        )
        self._pipeline = FeaturePipeline(self._schema)
        if isinstance(X, pd.DataFrame):
            # Categorical levels learned from the rows that are not confirmed
            # frauds, as the detector learns normal behaviour from them only.
            self._pipeline.fit(X[prepare_labels(X, y, len(X)) != FRAUD])
        # Built now so that a schema naming a missing feature fails before training.
        self._reason_map = ReasonMap.build(self.feature_names, self._pipeline.reasons)
        self._feature_units = None
        x = self.features(known_frauds_only(X, self._schema.label_field))
        labels = prepare_labels(X, y, len(x))
        self.detector_ = DetectorCore(kind=self.kind, params=params).fit(
            x, labels == FRAUD, cleared=labels == GENUINE
        )
        self.label_head_ = LabelAwareHead(params.label_min_frauds, params.label_blend).fit(
            self.detector_, x, labels, params.seed
        )
        # Calibrate on the held-out validation rows: training rows score
        # optimistically low, which would put the threshold too low.
        val_scores = self._scores(x[self.detector_.validation_index_])
        self.calibrator_ = EmpiricalCalibrator().fit(val_scores)
        self.threshold_ = self.calibrator_.threshold_for_alert_rate(self.alert_rate)
        self.n_features_in_ = len(columns)
        self.decision_scores_ = self._scores(x)
        self.labels_ = (self.decision_scores_ >= self.threshold_).astype(np.int64)
        self._metadata = fit_metadata(
            kind=self.kind, x=x, feature_names=self.feature_names, validation_scores=val_scores,
            detector=self.detector_, label_summary=self.label_summary_, X=X, labels=labels,
            schema=self._schema, seconds=time.perf_counter() - started,
        )
        return self

    def fit_predict(self, X: pd.DataFrame | np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X, y).labels_  # type: ignore[no-any-return]

    @property
    def feature_names(self) -> list[str]:
        return self._fitted_pipeline().feature_names

    @property
    def is_fitted(self) -> bool:
        return "threshold_" in vars(self)

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

    # ------------------------------------------------------------- scoring
    def features(self, X: pd.DataFrame | np.ndarray, source: str | None = None) -> np.ndarray:
        """The model's input matrix for X (validated): what the detector scores."""
        pipeline = self._fitted_pipeline()
        X = inputs.string_columns(X)
        if isinstance(X, pd.DataFrame):
            self.schema.validate_frame(X, source=source)
            return pipeline.transform_frame(X)
        return inputs.plain_matrix(X, self.schema, pipeline, source=source)

    def score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw score, per-feature contributions) of a feature matrix."""
        scores, contributions = [], []
        for _, evidence in self._blocks(x):
            block_scores, block_contributions = self.label_head_.score(evidence)
            scores.append(block_scores)
            contributions.append(block_contributions)
        if len(scores) == 1:
            return scores[0], contributions[0]
        return np.concatenate(scores), np.concatenate(contributions)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """The raw scores of a feature matrix, without explanations."""
        parts = [self.label_head_.scores(evidence) for _, evidence in self._blocks(x)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _blocks(self, x: np.ndarray) -> Iterator[tuple[int, Evidence]]:
        """(first row, the detector's evidence) per block of SCORE_BLOCK_ROWS:
        the detector's block scorer; the label-aware head scores from it."""
        if "label_head_" not in vars(self):
            raise NotFittedError(_NOT_FITTED)
        for start in range(0, max(len(x), 1), SCORE_BLOCK_ROWS):
            yield start, self.detector_.evidence(x[start : start + SCORE_BLOCK_ROWS])

    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self._scores(self.features(X))

    def risk(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        return self.calibrator_.risk(scores)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return (self.decision_function(X) >= self._threshold()).astype(np.int64)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """PyOD's layout: column 0 = normal, column 1 = anomalous (the risk)."""
        r = self.risk(X)
        return np.column_stack([1.0 - r, r])

    def explain(
        self, X: pd.DataFrame | np.ndarray, top_k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per record, the features contributing most to its score, with their
        share of the reconstruction error (shares of all features sum to 1)."""
        _, contributions = self.score_parts(self.features(X))
        return top_shares(contributions, self.feature_names, top_k or self.top_k)

    def explain_reasons(
        self, X: pd.DataFrame | np.ndarray, top_k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per record, the reasons (schema-declared groups of features)
        contributing most to its score, with their share (sums to 1)."""
        _, contributions = self.score_parts(self.features(X))
        return self.reason_map.top(contributions, top_k or self.top_k)

    @property
    def reason_map(self) -> ReasonMap:
        if self._reason_map is None:
            raise NotFittedError(_NOT_FITTED)
        return self._reason_map

    @property
    def feature_units(self) -> FeatureUnits:
        """How explanations show each input's observed and expected value."""
        # vars(): bundles pickled before this attribute existed lack it.
        units = vars(self).get("_feature_units")
        if units is None:
            units = self._feature_units = FeatureUnits.of(self._fitted_pipeline())
        return units

    def score_frame(
        self, df: pd.DataFrame, *, source: str | None = None, explain: str = "all"
    ) -> pd.DataFrame:
        """Batch scoring: one output row per input row, in input order, with
        explanations as Arrow list columns whose elements read as lists of
        dicts (see `score_batch` for the columns)."""
        return self.score_batch(df, source=source, explain=explain).to_pandas(index=df.index)

    def score_batch(
        self,
        X: pd.DataFrame | np.ndarray,
        *,
        explain: str = "flagged",
        source: str | None = None,
        history: WindowHistory | None = None,
    ) -> BatchDecisions:
        """Column-wise batch scoring. Behaviour features: the frame's own
        columns when it carries all of them (precomputed over a longer
        history), else computed from the frame's rows, after `history` (the
        tail of earlier chunks of the same time-ordered stream) when given.
        `explain`: "flagged" (default), "all" or "none"."""
        if isinstance(X, pd.DataFrame):
            self.schema.validate_frame(X, source=source)
            pipeline = self._fitted_pipeline()
            cols, from_batch = pipeline.batch_columns(X, history)
            x = pipeline.transform(cols)
        else:
            x, from_batch = self.features(X, source=source), False
        return self.score_matrix(x, explain=explain, batch_history_only=from_batch)

    def score_matrix(
        self, x: np.ndarray, *, explain: str = "flagged", batch_history_only: bool = False
    ) -> BatchDecisions:
        """Decisions for a feature matrix (the pipeline's output), block by
        block, keeping the contributions of the explained rows only."""
        if explain not in EXPLAIN_MODES:
            raise InputError(f"explain must be one of {EXPLAIN_MODES}, got {explain!r}",
                             field="explain")
        threshold = self._threshold()
        n = len(x)
        scores = np.empty(n)
        kept_rows: list[np.ndarray] = []
        kept: list[np.ndarray] = []
        head = self.label_head_
        for start, evidence in self._blocks(x):
            # Contributions (for the head: path attributions) of the
            # explained rows only: ~alert_rate of them by default; with
            # every row's, the trees' codes serve both.
            if explain == "all":
                block_scores, block_contributions = head.score(evidence)
                kept.append(block_contributions)
            else:
                block_scores = head.scores(evidence)
            scores[start : start + len(block_scores)] = block_scores
            if explain == "flagged":
                rows = np.flatnonzero(block_scores >= threshold)
                if len(rows):
                    kept_rows.append(rows + start)
                    kept.append(head.contributions(evidence, rows))
        if explain == "all":
            explained = np.arange(n)
        else:
            explained = np.concatenate(kept_rows) if kept_rows else np.zeros(0, dtype=np.int64)
        names = tuple(self.feature_names)
        contributions = _stacked(kept, len(names))
        explained_x = x[explained]
        flagged = scores[explained] >= threshold
        return decisions.assemble(
            scores, self.calibrator_.risk(scores), threshold, explained, contributions,
            feature_names=names, reason_map=self.reason_map,
            top_k=self.top_k, batch_history_only=batch_history_only,
            values=lambda top: self._top_values(explained_x, top, flagged),
        )

    def _top_values(
        self, x: np.ndarray, top: np.ndarray, flagged: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(observed, expected) of the top features `top` (n, k) of rows `x`
        in the units an analyst reads, NaN for null; expected values for the
        `flagged` rows only (what an analyst reviews: the API explains every
        record, and an expectation costs a forward pass). The expectation
        comes from the generative detector whatever ranked the features (the
        label-aware head's attributions too): it is what knows what normal
        looks like. One model query per row and distinct withheld group
        among its top features (amount, log_amount and the amount's ratios
        share one), in one batch."""
        units = self.feature_units
        observed = np.take_along_axis(x, top, axis=1)
        groups = units.group[top]
        asked = (groups >= 0) & flagged[:, None]
        if not asked.any():
            return units.present(observed, None, top)
        n_groups = len(units.withheld)
        keys = (np.arange(len(x))[:, None] * n_groups + groups)[asked]
        queries, which = np.unique(keys, return_inverse=True)
        rows, query_groups = np.divmod(queries, n_groups)
        answers = self.detector_.expected(x[rows], units.withheld[query_groups])
        if answers is None:
            return units.present(observed, None, top)
        expected = np.full(top.shape, np.nan)
        expected[asked] = answers[which, top[asked]]
        return units.present(observed, expected, top)

    def score_records(
        self,
        records: Sequence[Mapping[str, Any]],
        window_features: Sequence[Mapping[str, float]] | None = None,
    ) -> list[dict[str, Any]]:
        """The online path: validated records (dicts) -> decisions, without pandas."""
        pipeline = self._fitted_pipeline()
        x = pipeline.transform(pipeline.columns_from_records(records, window_features))
        return self.score_matrix(x, explain="all").records()

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle to a directory (gendetect.bundle_store)."""
        return bundle_store.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> FraudModelBundle:
        return bundle_store.load(path, cls)

    def restore(
        self, *, schema: Schema, detector: DetectorCore, head: LabelAwareHead,
        calibrator: EmpiricalCalibrator, threshold: float, metadata: dict[str, Any],
        features: dict[str, Any] | None = None,
    ) -> FraudModelBundle:
        """Set the fitted state read back from storage (bundle_store.load);
        `features` is the pipeline's fitted state (learned categorical levels)."""
        self._schema = schema
        self._pipeline = FeaturePipeline(schema, features)
        self._reason_map = ReasonMap.build(self._pipeline.feature_names, self._pipeline.reasons)
        self._feature_units = None
        self.detector_, self.label_head_ = detector, head
        self.calibrator_, self.threshold_ = calibrator, threshold
        self._metadata = metadata
        return self

    # ------------------------------------------------------------ internals
    def _fitted_pipeline(self) -> FeaturePipeline:
        if self._pipeline is None:
            raise NotFittedError(_NOT_FITTED)
        return self._pipeline

    def _threshold(self) -> float:
        if not self.is_fitted:
            raise NotFittedError(_NOT_FITTED)
        return self.threshold_  # type: ignore[no-any-return]


def _stacked(parts: list[np.ndarray], width: int) -> np.ndarray:
    """Per-block arrays of the explained rows as one (n_explained, width)."""
    if not parts:
        return np.zeros((0, width))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def make_detector(kind: str, **params: Any) -> FraudModelBundle:
    """An unfitted detector, its parameters checked at once: `kind` is
    'vae', 'vae_mse', 'gan' or 'ensemble'; params include `seed`, `schema`
    (default 'numeric'), `alert_rate`, `max_epochs`, `score`
    ('reconstruction', or for the GAN 'discriminator' or 'combined'),
    `label_min_frauds` (confirmed frauds that turn on the label-aware score
    in `fit(X, y)`)..."""
    bundle = FraudModelBundle(kind, **params)
    bundle.check_params()
    return bundle
