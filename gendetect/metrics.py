"""Detection metrics shared by training, benchmarks and tests.

Pure numpy/scikit-learn (no torch) so the serving image and the benchmark
harness can import it cheaply. Every function takes `scores` where higher means
more suspicious, and labels where 1 means fraud/anomaly.

Metrics that are undefined on the given data (a ranking metric with only one
class present, a recall with no positives) return nan instead of raising:
a test day or a cross-validation fold without frauds is a normal event, and the
caller decides how to aggregate it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = [
    "average_precision",
    "card_precision_at_k",
    "evaluate_scores",
    "precision_at_alert_rate",
    "recall_at_alert_rate",
    "recall_at_fpr",
    "recall_by_group",
    "roc_auc",
]


def _as_arrays(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    if s.size == 0:
        raise ValueError("empty input")
    if np.isnan(s).any():
        # A nan would sort arbitrarily and silently corrupt every ranking metric.
        raise ValueError("scores contain nan")
    return (y > 0).astype(np.int8), s


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < y.size


def _top_mask(scores: np.ndarray, alert_rate: float) -> np.ndarray:
    """Boolean mask of the ceil(alert_rate * n) highest scores.

    Ties are broken by position (stable sort) so the result is deterministic.
    """
    if not 0.0 < alert_rate <= 1.0:
        raise ValueError(f"alert_rate must be in (0, 1], got {alert_rate}")
    n_alerts = math.ceil(alert_rate * scores.size)
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(scores.size, dtype=bool)
    mask[order[:n_alerts]] = True
    return mask


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; nan when only one class is present."""
    y, s = _as_arrays(y_true, scores)
    return float(roc_auc_score(y, s)) if _both_classes(y) else math.nan


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Average precision (area under the precision-recall curve, step-wise as in
    scikit-learn); nan when only one class is present."""
    y, s = _as_arrays(y_true, scores)
    return float(average_precision_score(y, s)) if _both_classes(y) else math.nan


def precision_at_alert_rate(
    y_true: ArrayLike, scores: ArrayLike, alert_rate: float = 0.01
) -> float:
    """Share of frauds among the ceil(alert_rate * n) highest-scored records:
    what investigators see when they can review that fraction of traffic."""
    y, s = _as_arrays(y_true, scores)
    return float(y[_top_mask(s, alert_rate)].mean())


def recall_at_alert_rate(y_true: ArrayLike, scores: ArrayLike, alert_rate: float = 0.01) -> float:
    """Share of all frauds found in the ceil(alert_rate * n) highest-scored
    records; nan when there is no fraud."""
    y, s = _as_arrays(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    return float(y[_top_mask(s, alert_rate)].sum() / n_pos)


def recall_at_fpr(y_true: ArrayLike, scores: ArrayLike, fpr: float = 0.01) -> float:
    """Best recall reachable by a threshold on the scores (flag score >= t)
    whose false-positive rate stays <= fpr.

    The threshold is the lowest one that still respects the budget, i.e. the
    last ROC point with FPR <= fpr; thresholds only take the observed score
    values, so tied scores are flagged or not together. nan when only one class
    is present.
    """
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        return math.nan
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    # roc_curve starts at (0, 0) (threshold +inf), so the mask is never empty.
    return float(tprs[fprs <= fpr + 1e-12].max())


def card_precision_at_k(
    days: ArrayLike,
    customer_ids: ArrayLike,
    y_true: ArrayLike,
    scores: ArrayLike,
    k: int = 100,
    remove_detected: bool = True,
) -> float:
    """Card precision top-k, as defined by the Fraud Detection Handbook
    (chapter 4, "Precision top-k metrics").

    For each day (in increasing order) transactions are grouped by card
    (customer): a card's score is its highest transaction score that day and it
    counts as compromised when any of its transactions that day is a fraud.
    The k cards with the highest scores are the day's alerts, and the day's
    value is the number of compromised cards among them divided by k (by k even
    when fewer than k cards transacted, as in the handbook). The result is the
    mean over days.

    remove_detected=True (the handbook's default in its performance
    assessment) drops, from later days, the cards already detected as
    compromised on an earlier day: once investigators confirmed a card it is
    blocked and cannot be "found" again. Set it to False to score days
    independently.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    y, s = _as_arrays(y_true, scores)
    d = np.asarray(days).ravel()
    c = np.asarray(customer_ids).ravel()
    if d.shape != y.shape or c.shape != y.shape:
        raise ValueError("days, customer_ids, y_true and scores must have the same length")

    detected: set[Hashable] = set()
    per_day: list[float] = []
    for day in np.unique(d):
        in_day = d == day
        cards, card_scores, card_labels = _per_card_max(c[in_day], s[in_day], y[in_day])
        if remove_detected and detected:
            keep = np.array([card not in detected for card in cards.tolist()], dtype=bool)
            cards, card_scores, card_labels = cards[keep], card_scores[keep], card_labels[keep]
        # Highest score first; equal scores fall back to ascending card id so
        # the metric does not depend on row order.
        order = np.lexsort((cards, -card_scores))[:k]
        hits = card_labels[order] == 1
        per_day.append(float(hits.sum()) / k)
        if remove_detected:
            detected.update(cards[order][hits].tolist())
    return float(np.mean(per_day))


def _per_card_max(
    cards: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique cards with their max score and max label."""
    uniq, inverse = np.unique(cards, return_inverse=True)
    max_scores = np.full(uniq.size, -np.inf)
    np.maximum.at(max_scores, inverse, scores)
    max_labels = np.zeros(uniq.size, dtype=np.int8)
    np.maximum.at(max_labels, inverse, labels)
    return uniq, max_scores, max_labels


def recall_by_group(
    y_true: ArrayLike,
    scores: ArrayLike,
    groups: ArrayLike | Sequence[Hashable],
    alert_rate: float = 0.01,
) -> dict[Hashable, float]:
    """Recall per group at a shared alert budget.

    The alerts are the ceil(alert_rate * n) highest scores over all records;
    for each group that holds at least one positive, the value is the share of
    that group's positives among the alerts. Typical use: groups = fraud
    scenario, to see which kinds of fraud a detector catches. Groups without
    positives (e.g. "genuine") are left out.
    """
    y, s = _as_arrays(y_true, scores)
    g = np.asarray(groups).ravel()
    if g.shape != y.shape:
        raise ValueError("groups must have the same length as y_true")
    alerts = _top_mask(s, alert_rate)
    result: dict[Hashable, float] = {}
    for group in np.unique(g[y == 1]):
        members = (g == group) & (y == 1)
        key = group.item() if isinstance(group, np.generic) else group
        result[key] = float(alerts[members].sum() / members.sum())
    return result


def evaluate_scores(
    y_true: ArrayLike, scores: ArrayLike, alert_rate: float = 0.01
) -> dict[str, float]:
    """The standard metric set reported for every detector."""
    return {
        "roc_auc": roc_auc(y_true, scores),
        "average_precision": average_precision(y_true, scores),
        "precision_at_alert_rate": precision_at_alert_rate(y_true, scores, alert_rate),
        "recall_at_alert_rate": recall_at_alert_rate(y_true, scores, alert_rate),
        "recall_at_1pct_fpr": recall_at_fpr(y_true, scores, 0.01),
    }
