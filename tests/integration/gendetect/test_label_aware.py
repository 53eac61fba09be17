"""Labels change the ranking in the expected direction (issue 11): on the
transaction simulator, a detector fit on six weeks with their labels ranks
the frauds of a held-out period (after a one-week delay) higher than the
same detector fit without labels."""

from __future__ import annotations

import numpy as np
import pytest

from gendetect import make_detector
from gendetect.data.simulator import simulate_transactions
from gendetect.data.split import time_split
from gendetect.metrics import average_precision

FIT = {"max_epochs": 3, "seed": 0, "accelerator": "cpu", "schema": "transactions"}


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_label_aware_ap_beats_unsupervised_on_a_held_out_period(kind: str) -> None:
    df = simulate_transactions(n_customers=300, n_terminals=600, days=63, seed=3)
    train, test = time_split(
        df, train_days=42, delay_days=7, test_days=14, start=df["timestamp"].min().normalize()
    )
    y_test = test["is_fraud"].to_numpy()
    plain = make_detector(kind, **FIT).fit(train)
    aware = make_detector(kind, **FIT).fit(train, y="is_fraud")
    labels = aware.metadata["labels"]
    assert labels["mode"] == "label-aware" and labels["frauds"] == int(train["is_fraud"].sum())
    assert labels["labelled_from"].startswith("2024-01-01")
    ap_plain = average_precision(y_test, plain.decision_function(test))
    ap_aware = average_precision(y_test, aware.decision_function(test))
    assert ap_aware > ap_plain
    # The label-aware bundle keeps its risk and explanations.
    head = test.head(5)
    assert np.isfinite(aware.risk(head)).all()
    assert all(row for row in aware.explain_reasons(head))


def test_unknown_labels_in_the_label_column_are_not_negative_frauds() -> None:
    """-1 in the label column means unknown: the terminal-risk features are
    those of a 0 (not known as fraud), never a negative fraud count."""
    df = simulate_transactions(n_customers=60, n_terminals=40, days=20, seed=1)
    unknown = df.assign(is_fraud=df["is_fraud"].where(df["is_fraud"] == 1, -1))
    fit = {**FIT, "max_epochs": 1}
    a = make_detector("vae", **fit).fit(df.assign(is_fraud=df["is_fraud"]))
    b = make_detector("vae", **fit).fit(unknown)
    assert np.array_equal(a.decision_function(df), b.decision_function(df))
