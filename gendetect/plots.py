"""Figures for the MLflow run: what an analyst looks at first.

The curves are scikit-learn's Display classes (the area in the legend, the
chance level drawn by the same code that computes it), with the model's own
operating point marked: the threshold its alert rate set, the decision the
API makes."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: jobs and CI have no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay


def score_histogram(scores: np.ndarray, labels: np.ndarray | None, threshold: float) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60)
    if labels is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="all")
    else:
        for value, name in ((0, "genuine"), (1, "fraud")):
            if (labels == value).any():  # a density of no rows is 0/0
                ax.hist(scores[labels == value], bins=bins, alpha=0.6, density=True, label=name)
    ax.axvline(threshold, color="black", linestyle="--", label="threshold (alert rate)")
    ax.set(xlabel="anomaly score", ylabel="density", yscale="log", title="Scores by label")
    ax.legend()
    fig.tight_layout()
    return fig


def _operating_point(labels: np.ndarray, scores: np.ndarray,
                     threshold: float) -> tuple[float, float, float, float]:
    """(false-positive rate, recall, precision, flag rate) at `threshold`."""
    flagged = scores >= threshold
    y = labels.astype(bool)
    fpr = float(flagged[~y].mean()) if (~y).any() else float("nan")
    recall = float(flagged[y].mean()) if y.any() else float("nan")
    precision = float(y[flagged].mean()) if flagged.any() else float("nan")
    return fpr, recall, precision, float(flagged.mean())


def roc_figure(labels: np.ndarray, scores: np.ndarray, threshold: float,
               name: str = "model") -> Figure:
    """ROC curve (AUC in the legend), the chance line, the operating point."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    RocCurveDisplay.from_predictions(labels, scores, name=name, ax=ax, plot_chance_level=True)
    fpr, recall, _, rate = _operating_point(labels, scores, threshold)
    ax.plot([fpr], [recall], "o", color="black",
            label=f"threshold: {rate:.2%} flagged (FPR {fpr:.2%}, recall {recall:.2%})")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)",
           title="ROC on the held-out period")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def pr_figure(labels: np.ndarray, scores: np.ndarray, threshold: float,
              name: str = "model") -> Figure:
    """Precision-recall curve (AP in the legend), the chance level (the
    fraud rate), the operating point."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    PrecisionRecallDisplay.from_predictions(labels, scores, name=name, ax=ax,
                                            plot_chance_level=True)
    _, recall, precision, rate = _operating_point(labels, scores, threshold)
    ax.plot([recall], [precision], "o", color="black",
            label=f"threshold: {rate:.2%} flagged (precision {precision:.2%}, "
            f"recall {recall:.2%})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the held-out period")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def calibration_figure(labels: np.ndarray, risk: np.ndarray, name: str = "model",
                       n_bins: int = 10) -> Figure:
    """Share of frauds per bin of the model's risk (0-1, quantile bins).
    Risk is a rank against traffic, not a probability: the curve shows how
    far the two are apart."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    CalibrationDisplay.from_predictions(labels, np.clip(risk, 0.0, 1.0), n_bins=n_bins,
                                        strategy="quantile", name=name, ax=ax)
    ax.set(xlabel="risk (share of reference traffic scoring lower)",
           ylabel="share of frauds", title="Calibration of the risk (quantile bins)")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def loss_curves(histories: dict[str, Sequence[dict[str, float]]]) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        for key in ("train_loss", "val_loss"):
            ax.plot(epochs, [r.get(key, np.nan) for r in rows], marker="o", label=f"{model} {key}")
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves")
    ax.legend()
    fig.tight_layout()
    return fig
