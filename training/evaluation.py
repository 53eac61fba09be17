"""A fitted bundle on the held-out period: metrics where labels are known,
flag and false-positive rates per protected group (training.fairness), and
what the training run logs of it (per-epoch losses, plots, fairness.json,
the metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from gendetect import metrics
from gendetect.bundle import FraudModelBundle
from training import fairness


@dataclass
class Evaluation:
    """Metrics (with `n_labels`, `n_frauds`) and fairness metrics, the group
    report, and every held-out row's score; empty without a held-out period."""

    metrics: dict[str, float] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None


def assess(bundle: FraudModelBundle, test: pd.DataFrame | None) -> Evaluation:
    """`evaluate` and `group_rates` on `test`, the fairness metrics merged in."""
    evaluation = Evaluation()
    if test is not None:
        results, scores = evaluate(bundle, test)
        groups = group_rates(bundle, test, scores)
        results.update(fairness.as_metrics(groups))
        evaluation = Evaluation(results, groups, scores)
    return evaluation


def evaluate(bundle: FraudModelBundle, test: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    """Metrics on the rows of `test` whose label is known (all of them for a
    fully labelled file; the verdicts' rows otherwise), with how many labels
    they rest on (`n_labels`, `n_frauds`), and the recall at the alert rate
    per simulated fraud scenario (the simulator's `fraud_scenario` column).
    Scores are for every row."""
    scores = bundle.decision_function(test)
    label = bundle.schema.label_field
    result: dict[str, float] = {}
    if label is not None and label in test.columns:
        values = pd.to_numeric(test[label], errors="coerce").to_numpy(np.float64)
        known = np.isin(values, (0, 1))
        y = values[known].astype(np.int64)
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


def group_rates(bundle: FraudModelBundle, test: pd.DataFrame,
                scores: np.ndarray) -> dict[str, Any]:
    """Flag rate and false-positive rate per group of each protected field."""
    assert bundle.threshold_ is not None
    protected = [f.name for f in bundle.schema.fields if f.protected]
    return fairness.group_report(test, scores >= bundle.threshold_, bundle.schema.label_field,
                                 protected)


def log_evaluation(bundle: FraudModelBundle, test: pd.DataFrame | None,
                   evaluation: Evaluation, results: dict[str, float]) -> None:
    """In the active run: the plots and fairness.json (with a held-out
    period), and the finite values of `results`."""
    if test is not None and evaluation.scores is not None:
        _log_plots(bundle, test, evaluation.scores)
        mlflow.log_dict(evaluation.groups, "fairness.json")
    mlflow.log_metrics({k: v for k, v in results.items() if np.isfinite(v)})


def log_losses(bundle: FraudModelBundle) -> None:
    """Each member's per-epoch losses as metrics by step (prefixed by kind
    in an ensemble)."""
    assert bundle.detector_ is not None
    members = bundle.detector_.members
    for member in members:
        prefix = f"{member.kind}_" if len(members) > 1 else ""
        for row in member.training_.history:
            step = int(row["epoch"])
            values = {f"{prefix}{k}": v for k, v in row.items() if k != "epoch" and np.isfinite(v)}
            mlflow.log_metrics(values, step=step)


def _log_plots(bundle: FraudModelBundle, test: pd.DataFrame, scores: np.ndarray) -> None:
    from gendetect import plots

    label = bundle.schema.label_field
    y = test[label].to_numpy() if label and label in test.columns else None
    assert bundle.detector_ is not None and bundle.threshold_ is not None
    figures = {
        "plots/score_histogram.png": plots.score_histogram(scores, y, bundle.threshold_),
        "plots/loss_curves.png": plots.loss_curves(
            {m.kind: m.training_.history for m in bundle.detector_.members}
        ),
    }
    if y is not None and 0 < y.sum() < len(y):
        figures["plots/roc.png"] = plots.roc_figure(y, scores)
        figures["plots/precision_recall.png"] = plots.pr_figure(y, scores)
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plots.plt.close(fig)
