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

from gendetect.calibration import EmpiricalCalibrator
from gendetect.detector import DetectorCore, DetectorParams, NeuralDetector
from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.features.scaling import RobustScaler
from gendetect.reasons import ReasonMap, top_shares
from gendetect.schema import Schema, load_schema

BUNDLE_FORMAT = 1
_MANIFEST = "bundle.json"
# Decision columns holding lists of {name, contribution} records.
EXPLANATION_COLUMNS = ("top_features", "top_reasons")


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
        """Learn normal behaviour from X. `y` is ignored (unsupervised), as in PyOD."""
        started = time.perf_counter()
        columns = _column_names(X)
        self.schema = self.schema.resolve_columns(
            [c for c in columns if c != self.schema.label_field]
        )
        self.pipeline = FeaturePipeline(self.schema)
        # Built now so that a schema naming a missing feature fails before training.
        self._reason_map = ReasonMap.build(self.feature_names, self.schema.reasons)
        x = self._features(X, source=None)
        self.core = DetectorCore(kind=self.kind, params=self.params).fit(x)
        # Calibrate on the held-out validation rows: training rows score
        # optimistically low, which would put the threshold too low.
        val_scores, _ = self.core.score_parts(x[self.core.validation_index_])
        self.calibrator.fit(val_scores)
        self.threshold_ = self.calibrator.threshold_for_alert_rate(self.alert_rate)
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

    def score_frame(self, df: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
        """Batch scoring: one output row per input row, in input order."""
        scores, contributions = self._score_parts(self._features(df, source=source))
        return pd.DataFrame(self._decisions(scores, contributions), index=df.index)

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

    def _decisions(self, scores: np.ndarray, contributions: np.ndarray) -> list[dict[str, Any]]:
        risks = self.calibrator.risk(scores)
        threshold = self._threshold()
        features = top_shares(contributions, self.feature_names, self.top_k)
        reasons = self.reason_map.top(contributions, self.top_k)
        return [
            {
                "score": float(s),
                "risk": float(r),
                "is_fraud": bool(s >= threshold),
                "threshold": threshold,
                "top_features": [{"feature": f, "contribution": c} for f, c in expl],
                "top_reasons": [{"reason": name, "contribution": c} for name, c in why],
            }
            for s, r, expl, why in zip(scores, risks, features, reasons, strict=True)
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
        bundle.core = core
        bundle.calibrator = EmpiricalCalibrator.from_dict(manifest["calibrator"])
        bundle.threshold_ = float(manifest["threshold"])
        bundle.metadata = manifest["metadata"]
        return bundle


def explanations_as_json(decisions: pd.DataFrame) -> pd.DataFrame:
    """The explanation columns of `score_frame` output as JSON strings, so
    they travel through file formats and pyfunc consumers (REST, Spark) that
    take only plain columns. Modifies and returns `decisions`."""
    for column in EXPLANATION_COLUMNS:
        decisions[column] = [json.dumps(v) for v in decisions[column]]
    return decisions


def make_detector(kind: str, **params: Any) -> FraudModelBundle:
    """An unfitted detector: `kind` is 'vae', 'gan' or 'ensemble'; params
    include `seed`, `schema` (default 'numeric'), `alert_rate`, `max_epochs`..."""
    return FraudModelBundle(kind, **params)


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
