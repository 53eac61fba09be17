"""Figures for the MLflow run: what an analyst looks at first."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: jobs and CI have no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve


def score_histogram(scores: np.ndarray, labels: np.ndarray | None, threshold: float) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60)
    if labels is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="all")
    else:
        ax.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, label="genuine")
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set(xlabel="anomaly score", ylabel="density", yscale="log", title="Scores by label")
    ax.legend()
    fig.tight_layout()
    return fig


def roc_figure(labels: np.ndarray, scores: np.ndarray) -> Figure:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    fig.tight_layout()
    return fig


def pr_figure(labels: np.ndarray, scores: np.ndarray) -> Figure:
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision)
    ax.axhline(labels.mean(), color="grey", linestyle=":", label="fraud rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend()
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
