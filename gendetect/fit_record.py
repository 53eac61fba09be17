"""What a fit records about itself in a bundle's metadata: the model card's
facts (kind, rows, timings, versions, labels used) and the drift reference
live traffic is compared with (gendetect.drift)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pandas as pd

from gendetect import drift
from gendetect.detector import DetectorCore
from gendetect.schema import Schema


def fit_metadata(
    *,
    kind: str,
    x: np.ndarray,
    feature_names: list[str],
    validation_scores: np.ndarray,
    detector: DetectorCore,
    label_summary: dict[str, Any],
    X: Any,
    labels: np.ndarray,
    schema: Schema,
    seconds: float,
) -> dict[str, Any]:
    return {
        # The training inputs, and the scores the threshold was set on.
        "drift_reference": drift.make_reference(x, feature_names, validation_scores),
        "kind": kind,
        "n_train_rows": len(x),
        "feature_names": feature_names,
        "fit_seconds": round(seconds, 3),
        "training": {
            k: {
                "best_epoch": r.best_epoch,
                "epochs_run": r.epochs_run,
                "best_val_loss": r.best_val_loss,
                "seconds": round(r.seconds, 3),
            }
            for k, r in detector.training_results().items()
        },
        "versions": _versions(),
        # Which mode, from how many labels of which period.
        "labels": {**label_summary, **_label_period(X, labels, schema)},
    }


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
