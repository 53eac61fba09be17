"""Explanations of compromised-card frauds name the amount.

A model is trained on simulated traffic with its default settings; then the
simulator's scenario-3 rule (a third of a card's transactions, amount x5) is
applied to the held-out week of cards chosen at random, the behaviour
features are recomputed over the whole history (so the customer averages see
the inflated amounts, as in production), and the frauds the model flags are
explained:
- at terminals with no recorded fraud, the amount is the first reason for at
  least 90% of them;
- at terminals with recorded fraud (delayed terminal risk above 0) the first
  reason may be the terminal, which is then a true second cause; any other
  first reason is a wrong explanation, allowed for at most 5% of all flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import compromise_cards, simulate_transactions
from training.config import load_config
from training.data import prepare_data

AMOUNT_REASON = "amount"


@pytest.fixture(scope="module")
def flagged_card_frauds() -> tuple[FraudModelBundle, pd.DataFrame]:
    history = simulate_transactions(n_customers=2000, n_terminals=4000, days=60, seed=3)
    config = load_config()
    data = prepare_data(history, config, source="simulator")
    assert data.test is not None
    bundle = FraudModelBundle("ensemble", schema=data.schema, **config.model_params())
    bundle.fit(data.train)

    held_out_start = pd.to_datetime(data.test["timestamp"]).min()
    active = data.test["customer_id"].unique()
    cards = np.random.default_rng(0).choice(active, size=len(active) // 10, replace=False)
    compromised = compromise_cards(history, cards, held_out_start, seed=0)
    # Only the new frauds are examined; the rest of the week is unchanged.
    injected = (compromised["is_fraud"] == 1) & (history["is_fraud"] == 0)
    featured = bundle.pipeline.with_window_features(compromised)
    frauds = featured[injected.to_numpy()]
    flagged = frauds[bundle.predict(frauds) == 1]
    return bundle, flagged


def _first_reasons(bundle: FraudModelBundle, rows: pd.DataFrame) -> np.ndarray:
    return np.array([reasons[0][0] for reasons in bundle.explain_reasons(rows)])


def _at_risky_terminal(rows: pd.DataFrame) -> np.ndarray:
    risk = [c for c in rows.columns if c.startswith("terminal_risk_")]
    assert risk, "the pipeline lost its terminal risk features"
    return (rows[risk] > 0).any(axis=1).to_numpy()


def test_amount_is_the_first_reason_for_flagged_card_frauds(
    flagged_card_frauds: tuple[FraudModelBundle, pd.DataFrame],
) -> None:
    bundle, flagged = flagged_card_frauds
    clean = flagged[~_at_risky_terminal(flagged)]
    assert len(clean) >= 30, "too few flagged frauds for a meaningful share"
    first = _first_reasons(bundle, clean)
    share = float(np.mean(first == AMOUNT_REASON))
    assert share >= 0.9, f"amount first for {share:.0%} of {len(first)}: {set(first)}"


def test_other_first_reasons_are_real_second_causes(
    flagged_card_frauds: tuple[FraudModelBundle, pd.DataFrame],
) -> None:
    bundle, flagged = flagged_card_frauds
    first = _first_reasons(bundle, flagged)
    explained = (first == AMOUNT_REASON) | ((first == "terminal") & _at_risky_terminal(flagged))
    wrong = float(np.mean(~explained))
    assert wrong <= 0.05, f"{wrong:.0%} of {len(first)} flagged frauds explained by {set(first)}"


def test_reasons_are_the_feature_contributions_summed(
    flagged_card_frauds: tuple[FraudModelBundle, pd.DataFrame],
) -> None:
    bundle, flagged = flagged_card_frauds
    rows = flagged.head(5)
    n = len(bundle.feature_names)
    features = bundle.explain(rows, top_k=n)
    reasons = bundle.explain_reasons(rows, top_k=n)
    groups = dict(zip(bundle.reason_map.reasons, bundle.reason_map.members, strict=True))
    for per_feature, per_reason in zip(features, reasons, strict=True):
        share = dict(per_feature)
        assert sum(share.values()) == pytest.approx(1.0)
        for reason, value in per_reason:
            assert value == pytest.approx(sum(share[f] for f in groups[reason]))
    assert set(groups[AMOUNT_REASON]) >= {"amount", "amount_vs_customer_30d"}
