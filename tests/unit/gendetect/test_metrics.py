"""Metrics on examples small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gendetect import metrics as m


def test_roc_auc_counts_correctly_ordered_pairs() -> None:
    # Positives 0.8, 0.4; negatives 0.9, 0.1.
    # Pairs (pos > neg): 0.8>0.1, 0.4>0.1 -> 2 of 4.
    y = [1, 0, 1, 0]
    s = [0.8, 0.9, 0.4, 0.1]
    assert m.roc_auc(y, s) == pytest.approx(0.5)


def test_roc_auc_is_one_for_a_perfect_ranking_and_nan_for_one_class() -> None:
    assert m.roc_auc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert math.isnan(m.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_average_precision_by_hand() -> None:
    # Ranking by score: 1 (pos), 0.8 (neg), 0.6 (pos), 0.2 (neg).
    # Precision at each positive: 1/1 and 2/3 -> AP = (1 + 2/3) / 2 = 5/6.
    y = [0, 1, 0, 1]
    s = [0.8, 1.0, 0.2, 0.6]
    assert m.average_precision(y, s) == pytest.approx(5 / 6)
    assert math.isnan(m.average_precision([1, 1], [0.1, 0.2]))


def test_precision_and_recall_at_alert_rate_use_ceil() -> None:
    # n = 10, rate 0.25 -> ceil(2.5) = 3 alerts: the scores 10, 9, 8.
    y = [1, 0, 1, 1, 0, 0, 0, 0, 0, 1]
    s = [10, 9, 8, 1, 2, 3, 4, 5, 6, 7]
    assert m.precision_at_alert_rate(y, s, 0.25) == pytest.approx(2 / 3)
    assert m.recall_at_alert_rate(y, s, 0.25) == pytest.approx(2 / 4)
    # 1% of 10 rows is still one alert, the top score (a fraud).
    assert m.precision_at_alert_rate(y, s, 0.01) == 1.0
    assert m.recall_at_alert_rate(y, s, 0.01) == pytest.approx(1 / 4)


def test_recall_at_alert_rate_is_nan_without_positives() -> None:
    assert math.isnan(m.recall_at_alert_rate([0, 0], [1.0, 2.0], 0.5))


def test_alert_rate_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        m.precision_at_alert_rate([0, 1], [0.0, 1.0], 0.0)


def test_recall_at_fpr_stops_at_the_budget() -> None:
    # 4 negatives, so one false positive is FPR 0.25.
    # Sorted: 0.9 pos, 0.8 neg, 0.7 pos, 0.6 pos, 0.5 neg, 0.4 neg, 0.1 neg.
    y = [1, 0, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1]
    # FPR <= 0: only threshold 0.9 -> recall 1/3.
    assert m.recall_at_fpr(y, s, 0.0) == pytest.approx(1 / 3)
    # FPR <= 0.25: threshold 0.6 flags 3 positives and 1 negative -> recall 1.
    assert m.recall_at_fpr(y, s, 0.25) == 1.0
    # FPR <= 0.2 (< 1 negative): still 1/3.
    assert m.recall_at_fpr(y, s, 0.2) == pytest.approx(1 / 3)


def test_recall_at_fpr_flags_ties_together() -> None:
    # A positive tied with a negative cannot be flagged without that negative.
    y = [1, 1, 0]
    s = [0.9, 0.5, 0.5]
    assert m.recall_at_fpr(y, s, 0.0) == pytest.approx(0.5)
    assert m.recall_at_fpr(y, s, 1.0) == 1.0


def test_card_precision_groups_by_card_and_averages_days() -> None:
    # Day 0: card A (0.9, genuine) and (0.1, fraud) -> A max score 0.9, label 1;
    #        card B 0.8 genuine; card C 0.5 fraud.
    #        Top-2 cards: A (fraud), B (genuine) -> 1/2.
    # Day 1: card D 0.7 fraud, card E 0.6 fraud, card F 0.9 genuine.
    #        Top-2: F (genuine), D (fraud) -> 1/2.
    days = [0, 0, 0, 0, 1, 1, 1]
    cards = ["A", "A", "B", "C", "D", "E", "F"]
    y = [0, 1, 0, 1, 1, 1, 0]
    s = [0.9, 0.1, 0.8, 0.5, 0.7, 0.6, 0.9]
    assert m.card_precision_at_k(days, cards, y, s, k=2) == pytest.approx(0.5)
    # k = 3: day 0 -> A, B, C -> 2/3; day 1 -> F, D, E -> 2/3.
    assert m.card_precision_at_k(days, cards, y, s, k=3) == pytest.approx(2 / 3)


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    # One compromised card on the day, k = 4 -> 1/4 (handbook convention).
    assert m.card_precision_at_k([0, 0], [7, 7], [1, 0], [0.3, 0.2], k=4) == 0.25


def test_card_precision_removes_cards_detected_on_earlier_days() -> None:
    # Day 0: card 1 (fraud) is the top card -> detected, precision 1.
    # Day 1: card 1 again at the top with a fraud, card 2 genuine.
    #   handbook (remove_detected): card 1 is gone, top-1 is card 2 -> 0.
    #   independent days: card 1 is counted again -> 1.
    days = [0, 1, 1]
    cards = [1, 1, 2]
    y = [1, 1, 0]
    s = [0.9, 0.9, 0.5]
    assert m.card_precision_at_k(days, cards, y, s, k=1) == pytest.approx(0.5)
    assert m.card_precision_at_k(days, cards, y, s, k=1, remove_detected=False) == 1.0


def test_recall_by_group_uses_one_shared_budget() -> None:
    # 10 records, rate 0.3 -> 3 alerts: scores 10, 9, 8 (rows 0, 1, 2).
    # Group "s1" positives: rows 0, 3 -> 1 of 2 alerted.
    # Group "s2" positives: rows 1, 2, 4 -> 2 of 3 alerted.
    # Group "g" has no positives -> absent.
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    s = [10, 9, 8, 1, 2, 3, 4, 5, 6, 7]
    groups = ["s1", "s2", "s2", "s1", "s2", "g", "g", "g", "g", "g"]
    assert m.recall_by_group(y, s, groups, 0.3) == {
        "s1": pytest.approx(0.5),
        "s2": pytest.approx(2 / 3),
    }


def test_recall_by_group_returns_plain_python_keys() -> None:
    out = m.recall_by_group([1, 0], [1.0, 0.0], np.array([3, 0]), 0.5)
    assert out == {3: 1.0}
    assert type(next(iter(out))) is int


def test_evaluate_scores_keys_and_values() -> None:
    y = [1, 0, 1, 0]
    s = [0.8, 0.9, 0.4, 0.1]
    out = m.evaluate_scores(y, s, alert_rate=0.25)
    assert set(out) == {
        "roc_auc",
        "average_precision",
        "precision_at_alert_rate",
        "recall_at_alert_rate",
        "recall_at_1pct_fpr",
    }
    assert out["roc_auc"] == pytest.approx(0.5)
    # Top 1 of 4 is the negative 0.9.
    assert out["precision_at_alert_rate"] == 0.0
    assert out["recall_at_alert_rate"] == 0.0
    # No false positive allowed and the top score is a negative -> recall 0.
    assert out["recall_at_1pct_fpr"] == 0.0


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        m.roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError):
        m.roc_auc([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError):
        m.card_precision_at_k([0], [1, 2], [0, 1], [0.1, 0.2])
