"""What the model expected: each top feature of an explained record carries
its observed value and the value the model expected, in original units,
null where there is none (gaps, gap indicators, categorical columns); for
compromised-card frauds the expected amount is the card's usual spending."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import compromise_cards, simulate_transactions
from gendetect.features.missing import is_indicator
from tests.gappy import gappy_frame, gappy_schema


def _by_feature(entries: list[dict]) -> dict[str, dict]:
    return {e["feature"]: e for e in entries}


def test_expected_values_are_finite_in_original_units_and_null_for_gaps() -> None:
    # Half the records flagged: expected values are for flagged records.
    bundle = FraudModelBundle("vae", schema=gappy_schema(), max_epochs=3, seed=0,
                              accelerator="cpu", alert_rate=0.5)
    bundle.fit(gappy_frame(1500, 0))
    bundle.top_k = len(bundle.feature_names)  # every column reported
    test = gappy_frame(200, 1)
    decisions = bundle.score_batch(test, explain="all")
    rows = [_by_feature(entries) for entries in decisions.explanation_lists("top_features")]
    categorical = {n for f in ("email_domain", "channel")
                   for n in bundle.pipeline.encoder(f).feature_names}
    balance = test["balance"].to_numpy()
    flagged = decisions.is_fraud
    assert np.isnan(balance[flagged]).any() and not np.isnan(balance[flagged]).all()
    for row, amount, bal, is_flagged in zip(rows, test["amount"], balance, flagged, strict=True):
        assert set(row) == set(bundle.feature_names)
        for name, entry in row.items():
            if is_indicator(name) or name in categorical:
                assert entry["value"] is None and entry["expected"] is None, name
        assert row["amount"]["value"] == pytest.approx(amount)
        if not is_flagged:  # explained, but no analyst reviews it: nothing expected
            assert all(entry["expected"] is None for entry in row.values())
            continue
        # A gap: no observed value, and nothing expected of it.
        if math.isnan(bal):
            assert row["balance"]["value"] is None and row["balance"]["expected"] is None
        else:
            assert row["balance"]["value"] == pytest.approx(bal)
            assert math.isfinite(row["balance"]["expected"])
        assert 0.0 <= row["amount"]["expected"] < math.inf  # the schema's min is 0
        for name in ("x1", "x2"):
            assert math.isfinite(row[name]["expected"])
    # Original units, not the scaled space (centred on 0, spread ~1): the
    # balances sit around 100 with a spread of 30.
    expected_balance = [r["balance"]["expected"] for r in rows
                        if r["balance"]["expected"] is not None]
    assert len(expected_balance) >= 20
    assert 60.0 < float(np.median(expected_balance)) < 140.0
    # The same numbers from the API's path (one record: float32 sums of
    # another batch shape, so to 1e-5) and in JSON text (CSV).
    first = int(np.flatnonzero(flagged)[0])
    one = bundle.score_matrix(bundle.features(test.iloc[[first]]), explain="all").records()
    batch = decisions.explanation_lists("top_features")[first]
    assert [e["feature"] for e in one[0]["top_features"]] == [e["feature"] for e in batch]
    for got, want in zip(one[0]["top_features"], batch, strict=True):
        for key in ("value", "expected"):
            assert got[key] == (None if want[key] is None else pytest.approx(want[key], rel=1e-5))
    assert json.loads(decisions.explanation_json("top_features")[first]) == batch


@pytest.fixture(scope="module")
def flagged_card_frauds() -> tuple[pd.DataFrame, list[dict[str, dict]], pd.DataFrame]:
    """A VAE trained on simulated traffic; then scenario 3 (a third of a
    card's transactions, amount x5) on a fifth of the cards in the last
    week, behaviour features recomputed over the whole history (the
    customer averages see the inflated amounts, as in production); the new
    frauds that are flagged, with their explanations (every feature)."""
    history = simulate_transactions(n_customers=100, n_terminals=200, days=40, seed=4)
    history = history.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)
    times = pd.to_datetime(history["timestamp"])
    since = times.max().normalize() - pd.Timedelta(days=7)
    train = history[times < since]
    bundle = FraudModelBundle("vae", schema="transactions", seed=0, accelerator="cpu",
                              alert_rate=0.05).fit(train)
    cards = np.random.default_rng(0).choice(history["customer_id"].unique(), size=20,
                                            replace=False)
    compromised = compromise_cards(history, cards, since, seed=0)
    injected = ((compromised["is_fraud"] == 1) & (history["is_fraud"] == 0)).to_numpy()
    frauds = bundle.pipeline.with_window_features(compromised)[injected]
    bundle.top_k = len(bundle.feature_names)
    decisions = bundle.score_batch(frauds, explain="flagged")
    lists = decisions.explanation_lists("top_features")
    explained = [_by_feature(lists[i]) for i in decisions.explained]
    return frauds.iloc[decisions.explained], explained, train


def test_expected_amount_of_flagged_card_frauds_is_the_cards_usual_spending(
    flagged_card_frauds: tuple[pd.DataFrame, list[dict[str, dict]], pd.DataFrame],
) -> None:
    flagged, explained, train = flagged_card_frauds
    assert len(flagged) >= 15, "too few flagged frauds for a meaningful test"
    usual = train.groupby("customer_id")["amount"].median().reindex(flagged["customer_id"])
    usual = usual.to_numpy()
    observed = np.array([e["amount"]["value"] for e in explained])
    expected = np.array([e["amount"]["expected"] for e in explained])
    np.testing.assert_allclose(observed, flagged["amount"])
    assert np.isfinite(expected).all() and (expected > 0).all()
    off = np.abs(np.log(expected / usual))  # how far from usual, as a factor
    off_observed = np.abs(np.log(observed / usual))
    # Near the card's usual spending (typically within a factor of 2) and
    # nearer to it than the inflated amount, for nearly every one ...
    assert np.median(off) < math.log(2.0), np.median(off)
    assert np.mean(off < math.log(2.0)) >= 0.6
    assert np.mean(off < off_observed) >= 0.9
    # ... and the card's own: it follows the cards' usual amounts (not one
    # typical amount for every card).
    assert spearmanr(expected, usual).statistic >= 0.6
