"""The quality gate (training.gate): one verdict for `train` and `retrain`."""

from __future__ import annotations

import math

import pytest

from gendetect.tracking import RegisteredModel
from training.config import PromotionConfig
from training.gate import quality_gate

CHAMPION = RegisteredModel("gendetect", "4", "run", "champion")
PROMOTION = PromotionConfig(metric="average_precision", min_improvement=0.0, min_roc_auc=0.6)


def _candidate(ap: float, auc: float) -> dict[str, float]:
    return {"average_precision": ap, "roc_auc": auc, "n_labels": 1000.0, "n_frauds": 20.0}


def test_better_than_the_champion_passes() -> None:
    v = quality_gate(_candidate(0.30, 0.85), CHAMPION, _candidate(0.25, 0.88), PROMOTION)
    assert v.passed and (v.candidate, v.champion) == (0.30, 0.25)
    assert "average_precision 0.3000 > champion 0.2500 + 0" in v.reason


@pytest.mark.parametrize("ap", [0.25, 0.20])
def test_not_better_than_the_champion_is_refused(ap: float) -> None:
    v = quality_gate(_candidate(ap, 0.85), CHAMPION, _candidate(0.25, 0.88), PROMOTION)
    assert not v.passed and "does not beat champion" in v.reason


def test_the_margin_counts() -> None:
    strict = PROMOTION.model_copy(update={"min_improvement": 0.1})
    v = quality_gate(_candidate(0.30, 0.85), CHAMPION, _candidate(0.25, 0.88), strict)
    assert not v.passed


def test_near_chance_is_refused_even_without_a_champion() -> None:
    v = quality_gate(_candidate(0.05, 0.525), None, None, PROMOTION)
    assert not v.passed and "below promotion.min_roc_auc 0.6" in v.reason
    assert quality_gate(_candidate(0.05, 0.61), None, None, PROMOTION).passed


def test_near_chance_is_refused_even_if_better_than_the_champion() -> None:
    v = quality_gate(_candidate(0.30, 0.55), CHAMPION, _candidate(0.10, 0.52), PROMOTION)
    assert not v.passed


def test_no_labels_keeps_the_champion_but_passes_without_one() -> None:
    unlabelled = {"n_labels": 0.0}
    v = quality_gate(unlabelled, CHAMPION, {}, PROMOTION)
    assert not v.passed and "cannot be measured on the held-out period" in v.reason
    assert quality_gate(unlabelled, None, None, PROMOTION).passed
    assert not quality_gate(_candidate(0.3, 0.9), CHAMPION, None, PROMOTION).passed


def test_a_champion_that_cannot_score_is_replaced() -> None:
    # champion_metrics gives {} when the champion cannot score the data.
    v = quality_gate(_candidate(0.30, 0.85), CHAMPION, {}, PROMOTION)
    assert v.passed and math.isinf(v.champion or 0.0)


def test_one_line_names_both_sides() -> None:
    v = quality_gate(_candidate(0.10, 0.525), CHAMPION, _candidate(0.30, 0.879), PROMOTION)
    line = v.line("version 5")
    assert "\n" not in line
    assert line.startswith("quality gate refused: version 5 average_precision 0.1000 vs "
                           "champion (version 4) 0.3000")
