"""A fitted bundle on the held-out period: metrics where labels are known,
flag and false-positive rates per protected group (training.fairness), and
what the training run logs of it.

MLflow metric names are grouped by a prefix, which the MLflow UI turns into
sections: `eval/` (held-out metrics), `fairness/` (group rates and the
differences between groups), `train/` (loss curves by epoch and the fit's
summary); a retraining adds `decision/` and `drift/` (training.retrain).
In memory (TrainOutcome.metrics, version tags, the card) the names stay bare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from gendetect import metrics
from gendetect.bundle import FraudModelBundle
from training import fairness

EVAL, FAIRNESS, TRAIN = "eval/", "fairness/", "train/"
FAIRNESS_TABLE = "tables/fairness.json"


@dataclass
class Evaluation:
    """Metrics (with `n_labels`, `n_frauds`), the fairness group report and
    its differences, and every held-out row's score; empty without a
    held-out period."""

    metrics: dict[str, float] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None
    differences: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def fairness_metrics(self) -> dict[str, float]:
        return fairness.as_metrics(self.groups, self.differences)


def assess(bundle: FraudModelBundle, test: pd.DataFrame | None) -> Evaluation:
    """`evaluate` and the fairness report on `test`."""
    if test is None:
        return Evaluation()
    results, scores = evaluate(bundle, test)
    assert bundle.threshold_ is not None
    flagged = scores >= bundle.threshold_
    protected = [f.name for f in bundle.schema.fields if f.protected]
    label = bundle.schema.label_field
    return Evaluation(results, fairness.group_report(test, flagged, label, protected), scores,
                      fairness.summary(test, flagged, label, protected))


def evaluate(bundle: FraudModelBundle, test: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    """Metrics on the rows of `test` whose label is known (all of them for a
    fully labelled file; the verdicts' rows otherwise), with how many labels
    they rest on (`n_labels`, `n_frauds`), and the recall at the alert rate
    per simulated fraud scenario (the simulator's `fraud_scenario` column).
    Scores are for every row."""
    scores = bundle.decision_function(test)
    y, known = _known_labels(bundle, test)
    result: dict[str, float] = {}
    if y is not None:
        result = {"n_labels": float(known.sum()), "n_frauds": float(y.sum())}
    if result.get("n_labels"):
        result = {**metrics.evaluate_scores(y, scores[known], alert_rate=bundle.alert_rate),
                  **result}
    if result.get("n_labels") and "fraud_scenario" in test.columns:
        by_scenario = metrics.recall_by_group(
            y, scores[known], test["fraud_scenario"].to_numpy()[known],
            alert_rate=bundle.alert_rate
        )
        result.update({f"recall_at_alert_rate_scenario_{int(s)}": recall
                       for s, recall in by_scenario.items() if int(s) != 0})
    return result, scores


def _known_labels(bundle: FraudModelBundle,
                  test: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """The known labels (0/1) of `test` and the mask of their rows."""
    label = bundle.schema.label_field
    if label is None or label not in test.columns:
        return None, np.zeros(len(test), dtype=bool)
    values = pd.to_numeric(test[label], errors="coerce").to_numpy(np.float64)
    known = np.isin(values, (0, 1))
    return values[known].astype(np.int64), known


def finite(values: dict[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in values.items() if np.isfinite(v)}


def log_evaluation(bundle: FraudModelBundle, test: pd.DataFrame | None,
                   evaluation: Evaluation) -> None:
    """In the active run: the plots, fairness.json and its MLflow table
    (with a held-out period), the `eval/` and `fairness/` metrics."""
    if test is not None and evaluation.scores is not None:
        _log_plots(bundle, test, evaluation.scores)
        mlflow.log_dict({"groups": evaluation.groups, "differences": evaluation.differences},
                        "fairness.json")
        if evaluation.groups:
            mlflow.log_table(fairness.table(evaluation.groups), artifact_file=FAIRNESS_TABLE)
    mlflow.log_metrics({**finite(evaluation.metrics, EVAL), **evaluation.fairness_metrics})


def fit_summary(bundle: FraudModelBundle) -> dict[str, float]:
    """The fit in a few numbers (prefixed by kind in an ensemble): seconds,
    epochs run, the best epoch and its validation loss (the weights kept),
    the last epoch's training and validation losses."""
    assert bundle.detector_ is not None
    members = bundle.detector_.members
    out = {"fit_seconds": float(bundle.metadata["fit_seconds"])}
    for member in members:
        prefix = f"{member.kind}." if len(members) > 1 else ""
        result = member.training_
        last = result.history[-1] if result.history else {}
        out.update({f"{prefix}epochs_run": float(result.epochs_run),
                    f"{prefix}best_epoch": float(result.best_epoch),
                    f"{prefix}best_val_loss": float(result.best_val_loss),
                    f"{prefix}final_train_loss": float(last.get("train_loss", np.nan)),
                    f"{prefix}final_val_loss": float(last.get("val_loss", np.nan))})
    return out


def log_loss_curves(bundle: FraudModelBundle) -> None:
    """Each member's per-epoch losses as `train/` metrics by step (prefixed
    by kind in an ensemble). The step is the epoch number from 1, as the
    progress lines print it: MLflow links every metric logged at the model's
    step (0) to the logged model, which is to carry the fit's final numbers
    (`fit_summary`), not the first epoch's losses."""
    assert bundle.detector_ is not None
    members = bundle.detector_.members
    for member in members:
        prefix = f"{TRAIN}{member.kind}." if len(members) > 1 else TRAIN
        for row in member.training_.history:
            values = finite({k: v for k, v in row.items() if k != "epoch"}, prefix)
            mlflow.log_metrics(values, step=int(row["epoch"]) + 1)


def _log_plots(bundle: FraudModelBundle, test: pd.DataFrame, scores: np.ndarray) -> None:
    from gendetect import plots

    y, known = _known_labels(bundle, test)
    assert bundle.detector_ is not None and bundle.threshold_ is not None
    figures = {
        "plots/score_histogram.png": plots.score_histogram(
            scores[known] if y is not None else scores, y, bundle.threshold_),
        "plots/loss_curves.png": plots.loss_curves(
            {m.kind: m.training_.history for m in bundle.detector_.members}
        ),
    }
    if y is not None and 0 < y.sum() < len(y):
        s = scores[known]
        figures["plots/roc.png"] = plots.roc_figure(y, s, bundle.threshold_, bundle.kind)
        figures["plots/precision_recall.png"] = plots.pr_figure(y, s, bundle.threshold_,
                                                                bundle.kind)
        figures["plots/calibration.png"] = plots.calibration_figure(
            y, bundle.calibrator_.risk(s), bundle.kind)
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plots.plt.close(fig)
