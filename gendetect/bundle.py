"""The fraud model bundle: everything needed to turn a raw record into a
decision, in one object that training builds, MLflow stores, and batch jobs
and the API load.

It follows PyOD's detector conventions so users of that library can switch
without rewriting: `fit(X)`, `decision_function(X)` (raw score, higher = more
anomalous), `predict(X)` (0/1 at the threshold), `predict_proba(X)`, plus
`risk(X)` (calibrated 0-1), `explain(X)` (top contributing features) and
`explain_reasons(X)` (the same contributions summed per reason, see
gendetect.reasons). X is a DataFrame with the schema's columns or a 2-D
numeric array.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gendetect import drift
from gendetect.calibration import EmpiricalCalibrator
from gendetect.decisions import BatchDecisions
from gendetect.detector import DetectorCore, DetectorParams, NeuralDetector, _finite
from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline, WindowHistory
from gendetect.features.scaling import RobustScaler
from gendetect.reasons import ReasonMap, top_share_indices, top_shares
from gendetect.schema import Schema, load_schema

BUNDLE_FORMAT = 1
_MANIFEST = "bundle.json"
# Which rows of a batch get explanations: the flagged ones (what an analyst
# reviews, ~alert_rate of the rows), all, or none.
EXPLAIN_MODES = ("flagged", "all", "none")
# Rows per network call in batch scoring: the activations of a block stay in
# the CPU's cache (measured on the 20-feature GAN: 4k-8k rows per call is
# ~2x faster than one call over 300k rows, whose intermediates spill to RAM).
SCORE_BLOCK_ROWS = 8192


class FraudModelBundle:
    def __init__(
        self,
        kind: str = "vae",
        *,
        schema: str | Path | Schema = "numeric",
        alert_rate: float = 0.01,
        top_k: int = 3,
        **params: Any,
    ) -> None:
        if not 0.0 < alert_rate < 1.0:
            raise ValueError("alert_rate must be in (0, 1)")
        self.kind = kind
        self.schema = schema if isinstance(schema, Schema) else load_schema(schema)
        self.alert_rate = alert_rate
        self.top_k = top_k
        self.params = DetectorParams.from_dict(params)
        self.pipeline: FeaturePipeline | None = None
        self.core: DetectorCore | None = None
        self.calibrator = EmpiricalCalibrator()
        self.threshold_: float | None = None
        self.metadata: dict[str, Any] = {}
        self._reason_map: ReasonMap | None = None

    # ------------------------------------------------------------- fitting
    def fit(self, X: pd.DataFrame | np.ndarray, y: Any = None) -> FraudModelBundle:
        """Learn normal behaviour from X, and from labels where there are some.

        `y` (scikit-learn style): per row 1 = confirmed fraud, 0 = confirmed
        genuine, -1 / NaN = unknown; or the name of a column of X holding
        them (e.g. the schema's label field); None = no labels (PyOD's
        unsupervised fit). Confirmed frauds never count as normal data; with
        at least `label_min_frauds` of them the score becomes label-aware
        (see gendetect.models.labels). All-unknown labels give exactly the
        unsupervised detector."""
        started = time.perf_counter()
        columns = _column_names(X)
        label_column = y if isinstance(y, str) else self.schema.label_field
        self.schema = self.schema.resolve_columns(
            [c for c in columns if c not in (self.schema.label_field, label_column)]
        )
        self.pipeline = FeaturePipeline(self.schema)
        # Built now so that a schema naming a missing feature fails before training.
        self._reason_map = ReasonMap.build(self.feature_names, self.schema.reasons)
        x = self._features(_known_frauds_only(X, self.schema.label_field), source=None)
        labels = _labels(X, y, len(x))
        self.core = DetectorCore(kind=self.kind, params=self.params).fit(x, labels)
        # Calibrate on the held-out validation rows: training rows score
        # optimistically low, which would put the threshold too low.
        val_scores, _ = self.core.score_parts(x[self.core.validation_index_])
        self.calibrator.fit(val_scores)
        self.threshold_ = self.calibrator.threshold_for_alert_rate(self.alert_rate)
        # What live traffic is compared with for drift (gendetect.drift): the
        # training inputs, and the scores the threshold was set on.
        self.metadata["drift_reference"] = drift.make_reference(x, self.feature_names, val_scores)
        self.metadata.update(
            {
                "kind": self.kind,
                "n_train_rows": len(x),
                "feature_names": self.feature_names,
                "fit_seconds": round(time.perf_counter() - started, 3),
                "training": {
                    k: {
                        "best_epoch": r.best_epoch,
                        "epochs_run": r.epochs_run,
                        "best_val_loss": r.best_val_loss,
                        "seconds": round(r.seconds, 3),
                    }
                    for k, r in self.core.training_results().items()
                },
                "versions": _versions(),
                # Which mode, from how many labels of which period (model card).
                "labels": {**self.core.labels_, **_label_period(X, labels, self.schema)},
            }
        )
        return self

    @property
    def feature_names(self) -> list[str]:
        return self._pipeline().feature_names

    @property
    def is_fitted(self) -> bool:
        return self.core is not None and self.threshold_ is not None

    # ------------------------------------------------------------- scoring
    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self._score_parts(self._features(X))[0]

    def risk(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.calibrator.risk(self.decision_function(X))

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
        _, contributions = self._score_parts(self._features(X))
        return top_shares(contributions, self.feature_names, top_k or self.top_k)

    def explain_reasons(
        self, X: pd.DataFrame | np.ndarray, top_k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per record, the reasons (schema-declared groups of features)
        contributing most to its score, with their share (sums to 1)."""
        _, contributions = self._score_parts(self._features(X))
        return self.reason_map.top(contributions, top_k or self.top_k)

    @property
    def reason_map(self) -> ReasonMap:
        if self._reason_map is None:
            self._reason_map = ReasonMap.build(self.feature_names, self.schema.reasons)
        return self._reason_map

    def score_frame(
        self, df: pd.DataFrame, *, source: str | None = None, explain: str = "all"
    ) -> pd.DataFrame:
        """Batch scoring: one output row per input row, in input order, with
        explanations as lists of dicts (see `score_batch` for the columns)."""
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
            pipeline = self._pipeline()
            cols, from_batch = pipeline.batch_columns(X, history)
            x = pipeline.transform(cols)
        else:
            x, from_batch = self._features(X, source=source), False
        return self.score_matrix(x, explain=explain, batch_history_only=from_batch)

    def score_matrix(
        self, x: np.ndarray, *, explain: str = "flagged", batch_history_only: bool = False
    ) -> BatchDecisions:
        """Decisions for a feature matrix (the pipeline's output).

        The networks run on blocks of SCORE_BLOCK_ROWS rows in float32 (as
        on the API's path); everything after them is the detector's float64
        arithmetic, so scores equal `score_records` up to the float32
        rounding that a different batch size gives the matrix products
        (~1e-7 relative) and are the same on every run for the same input.
        """
        if explain not in EXPLAIN_MODES:
            raise InputError(f"explain must be one of {EXPLAIN_MODES}, got {explain!r}",
                             field="explain")
        threshold = self._threshold()
        n = len(x)
        scores = np.empty(n)
        kept_rows: list[np.ndarray] = []
        kept: list[np.ndarray] = []
        for start in range(0, n, SCORE_BLOCK_ROWS):
            block_scores, contributions = self._block_parts(x[start : start + SCORE_BLOCK_ROWS])
            scores[start : start + len(block_scores)] = block_scores
            if explain == "all":
                kept.append(contributions)
            elif explain == "flagged":
                rows = np.flatnonzero(block_scores >= threshold)
                if len(rows):
                    kept_rows.append(rows + start)
                    kept.append(contributions[rows])
        if explain == "all":
            explained = np.arange(n)
        else:
            explained = np.concatenate(kept_rows) if kept_rows else np.zeros(0, dtype=np.int64)
        d = len(self.feature_names)
        contributions = np.concatenate(kept) if kept else np.zeros((0, d))
        feature_idx, feature_share = top_share_indices(contributions, self.top_k)
        reason_idx, reason_share = top_share_indices(
            self.reason_map.sums(contributions), self.top_k
        )
        return BatchDecisions(
            score=scores,
            risk=self.calibrator.risk(scores),
            is_fraud=scores >= threshold,
            threshold=threshold,
            explained=explained.astype(np.int64),
            feature_names=tuple(self.feature_names),
            feature_idx=feature_idx,
            feature_share=feature_share,
            reason_names=tuple(self.reason_map.reasons),
            reason_idx=reason_idx,
            reason_share=reason_share,
            batch_history_only=batch_history_only,
        )

    def score_records(
        self,
        records: Sequence[Mapping[str, Any]],
        window_features: Sequence[Mapping[str, float]] | None = None,
    ) -> list[dict[str, Any]]:
        """The online path: validated records (dicts) -> decisions, without pandas."""
        pipeline = self._pipeline()
        x = pipeline.transform(pipeline.columns_from_records(records, window_features))
        return self._decisions(*self._score_parts(x))

    # ------------------------------------------------------------ internals
    def _pipeline(self) -> FeaturePipeline:
        if self.pipeline is None:
            raise RuntimeError("the bundle is not fitted: call fit() or load()")
        return self.pipeline

    def _threshold(self) -> float:
        if self.threshold_ is None:
            raise RuntimeError("the bundle is not fitted: call fit() or load()")
        return self.threshold_

    def _features(self, X: pd.DataFrame | np.ndarray, source: str | None = None) -> np.ndarray:
        pipeline = self._pipeline()
        if isinstance(X, pd.DataFrame):
            self.schema.validate_frame(X, source=source)
            return pipeline.transform_frame(X)
        array = np.asarray(X, dtype=np.float64)
        if array.ndim != 2:
            raise InputError(f"expected a 2-D array, got {array.ndim} dimension(s)", source=source)
        names = [f.name for f in self.schema.feature_fields]
        if array.shape[1] != len(names) or self.schema.derived or pipeline.window_config:
            raise InputError(
                f"a plain array must have the {len(names)} numeric feature columns {names[:5]}...; "
                "pass a DataFrame with the schema's fields instead",
                source=source,
            )
        bad = ~np.isfinite(array)
        if bad.any():
            column = int(np.argmax(bad.any(axis=0)))
            raise InputError(
                "missing, NaN or infinite value(s)", field=names[column], source=source
            )
        return array

    def _score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.core is None:
            raise RuntimeError("the bundle is not fitted: call fit() or load()")
        return self.core.score_parts(x)

    def _block_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`DetectorCore.score_parts` for one block of batch scoring.

        For the plain reconstruction score (no label-aware head, the GAN's
        discriminator weighted 0) it is computed from the detector's own
        pieces: the same scaler, the networks' public outputs, each member's
        `_score_from` and the core's ensemble weights, in the same order of
        operations, with the block converted to float32 once for all members
        and without running the discriminator, whose verdict would add
        exactly 0 (it is half of the GAN's forward pass). Anything else goes
        through `score_parts` itself."""
        core = self._core()
        if not self._plain_reconstruction(core):
            return core.score_parts(x)
        import torch

        t = torch.as_tensor(core.scaler.transform(x), dtype=torch.float32)
        parts = []
        with torch.inference_mode():
            for member in core.members:
                assert member.module is not None
                errors = member.module.model.feature_errors(t).numpy().astype(np.float64)
                parts.append(member._score_from(_finite(errors), None))
        if len(parts) == 1:
            return parts[0]
        score = np.zeros(len(x))
        contributions = np.zeros(x.shape)
        for member, weight, (s, contrib) in zip(core.members, core._weights(), parts, strict=True):
            center, spread = member.score_center_spread_
            score += weight * ((s - center) / spread)
            contributions += weight * contrib / spread
        return score, contributions

    @staticmethod
    def _plain_reconstruction(core: DetectorCore) -> bool:
        params = core.params
        return (
            getattr(core, "head", None) is None
            and getattr(params, "score", "reconstruction") == "reconstruction"
            and params.disc_weight == 0
        )

    def _core(self) -> DetectorCore:
        if self.core is None:
            raise RuntimeError("the bundle is not fitted: call fit() or load()")
        return self.core

    def _decisions(self, scores: np.ndarray, contributions: np.ndarray) -> list[dict[str, Any]]:
        risks = self.calibrator.risk(scores).tolist()
        threshold = self._threshold()
        names, reasons = self.feature_names, self.reason_map.reasons
        f_idx, f_share = top_share_indices(contributions, self.top_k)
        r_idx, r_share = top_share_indices(self.reason_map.sums(contributions), self.top_k)
        return [
            {
                "score": s,
                "risk": r,
                "is_fraud": s >= threshold,
                "threshold": threshold,
                "top_features": [
                    {"feature": names[j], "contribution": c} for j, c in zip(fj, fc, strict=True)
                ],
                "top_reasons": [
                    {"reason": reasons[j], "contribution": c} for j, c in zip(rj, rc, strict=True)
                ],
            }
            for s, r, fj, fc, rj, rc in zip(
                scores.tolist(), risks, f_idx.tolist(), f_share.tolist(), r_idx.tolist(),
                r_share.tolist(), strict=True,
            )
        ]

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle to a directory: a JSON manifest plus one weights
        file per network (loaded with torch's weights_only, so a bundle never
        executes code). Written to a temporary folder, then renamed."""
        if self.core is None:
            raise RuntimeError("cannot save an unfitted bundle")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
        members = []
        for i, member in enumerate(self.core.members):
            state = member.state()
            (tmp / f"weights_{i}.pt").write_bytes(state.pop("weights"))
            members.append(state)
        manifest = {
            "format": BUNDLE_FORMAT,
            "kind": self.kind,
            "schema": self.schema.to_dict(),
            "alert_rate": self.alert_rate,
            "top_k": self.top_k,
            "params": self.params.to_dict(),
            "threshold": self.threshold_,
            "calibrator": self.calibrator.to_dict(),
            "scaler": self.core.scaler.to_dict(),
            "members": members,
            "label_head": self.core.label_state(),
            "metadata": self.metadata,
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
        if target.exists():
            _remove_tree(target)
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> FraudModelBundle:
        folder = Path(path)
        manifest_path = folder / _MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no fraud model bundle at {folder}")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"unsupported bundle format {manifest.get('format')}")
        bundle = cls(
            manifest["kind"],
            schema=Schema.from_dict(manifest["schema"]),
            alert_rate=manifest["alert_rate"],
            top_k=manifest["top_k"],
            **manifest["params"],
        )
        bundle.pipeline = FeaturePipeline(bundle.schema)
        core = DetectorCore(
            kind=bundle.kind,
            params=bundle.params,
            scaler=RobustScaler.from_dict(manifest["scaler"]),
        )
        for i, state in enumerate(manifest["members"]):
            state = {**state, "weights": (folder / f"weights_{i}.pt").read_bytes()}
            core.members.append(NeuralDetector.from_state(state, bundle.params))
        core.load_label_state(manifest.get("label_head"))
        bundle.core = core
        bundle.calibrator = EmpiricalCalibrator.from_dict(manifest["calibrator"])
        bundle.threshold_ = float(manifest["threshold"])
        bundle.metadata = manifest["metadata"]
        return bundle


def make_detector(kind: str, **params: Any) -> FraudModelBundle:
    """An unfitted detector: `kind` is 'vae', 'vae_mse', 'gan' or 'ensemble';
    params include `seed`, `schema` (default 'numeric'), `alert_rate`,
    `max_epochs`, `score` ('reconstruction', or for the GAN 'discriminator'
    or 'combined'), `label_min_frauds` (confirmed frauds that turn on the
    label-aware score in `fit(X, y)`)..."""
    return FraudModelBundle(kind, **params)


def _labels(X: pd.DataFrame | np.ndarray, y: Any, n_rows: int) -> np.ndarray:
    """fit's `y` as int8 labels (1, 0, -1); a string names a column of X."""
    from gendetect.models.labels import normalise_labels

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


def _known_frauds_only(X: Any, label_field: str | None) -> Any:
    """X with unknown labels (-1) in the label column read as 0, "not known
    as fraud": what the terminal-risk window features count (a -1 would
    subtract from the fraud count)."""
    if not isinstance(X, pd.DataFrame) or label_field is None or label_field not in X:
        return X
    column = X[label_field]
    if not pd.api.types.is_numeric_dtype(column) or not (column < 0).any():
        return X
    return X.assign(**{label_field: column.where(column >= 0, 0)})


def _label_period(X: Any, labels: np.ndarray, schema: Schema) -> dict[str, Any]:
    """First and last timestamp of the labelled rows, where X has one."""
    stamp = next((f.name for f in schema.fields if f.kind == "timestamp"), None)
    known = labels >= 0
    if stamp is None or not isinstance(X, pd.DataFrame) or stamp not in X or not known.any():
        return {}
    try:
        times = pd.to_datetime(X[stamp][known], utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return {}
    return {"labelled_from": times.min().isoformat(), "labelled_to": times.max().isoformat()}


def _column_names(X: pd.DataFrame | np.ndarray) -> list[str]:
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise InputError(f"expected a 2-D array, got {array.ndim} dimension(s)")
    return [f"f{i}" for i in range(array.shape[1])]


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from gendetect import __version__

    return {
        "gendetect": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
