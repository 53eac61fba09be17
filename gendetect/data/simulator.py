"""Simulated card transactions with labelled fraud.

Follows the design of the simulator in the "Reproducible Machine Learning for
Credit Card Fraud Detection" handbook (Le Borgne et al., ULB): customers and
terminals on a 100x100 grid, per-customer spending profiles, Poisson daily
counts, and three fraud scenarios. Everything is vectorised with numpy so a
million transactions take seconds instead of the handbook's minutes of
per-customer Python loops.

Modules: gendetect.data.population (customer profiles, terminal locations
and the genuine transactions), gendetect.data.scenarios (the three fraud
scenarios); this one draws them in order and makes the frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gendetect.data.population import (
    GRID_SIZE,
    SimulatedTransactions,
    customer_profiles,
    genuine_transactions,
    reachable_terminals,
)
from gendetect.data.scenarios import (
    SCENARIO3_FACTOR,
    apply_scenario1,
    apply_scenario2,
    apply_scenario3,
)
from gendetect.timestamps import SECONDS_PER_DAY

# The protected attribute the simulator can emit (age_groups=True): the
# customer's age band. Age is a protected ground in anti-discrimination law
# (EU Charter art. 21, the US ECOA for credit), card issuers hold it, and a
# fraud model may well learn proxies of it (spending levels, hours): the
# fairness report of the model card measures flag and false-positive rates
# per band. Drawn independently of behaviour, so that any gap between bands
# comes from chance and the model, not from the simulated data.
AGE_GROUP_COLUMN = "customer_age_group"
AGE_GROUPS = ("18-34", "35-54", "55+")
AGE_GROUP_SHARES = (0.35, 0.40, 0.25)

COLUMNS = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
    "is_fraud",
    "fraud_scenario",
)

# One independent random stream per stage: changing how one stage draws
# (e.g. more redraws of negative amounts) never shifts the others.
_STREAMS = (
    "customers",
    "terminals",
    "counts",
    "times",
    "amounts",
    "choice",
    "scenario2",
    "scenario3",
)


def _make_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(_STREAMS, children, strict=True)
    }


def _to_frame(tx: SimulatedTransactions, start: pd.Timestamp) -> pd.DataFrame:
    seconds = tx.day * SECONDS_PER_DAY + tx.second_of_day
    # Stable sort: ties on the second keep generation order, i.e. by
    # customer id, then the order the customer's transactions were drawn.
    order = np.argsort(seconds, kind="stable")
    start_ns = start.as_unit("ns").value
    timestamp = (start_ns + seconds[order] * 1_000_000_000).view("datetime64[ns]")
    scenario = tx.scenario[order]
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(order.size, dtype=np.int64),
            "timestamp": timestamp,
            "customer_id": tx.customer[order].astype(np.int64),
            "terminal_id": tx.terminal[order].astype(np.int64),
            "amount": tx.amount[order],
            "is_fraud": (scenario > 0).astype(np.int64),
            "fraud_scenario": scenario,
        }
    )
    return frame[list(COLUMNS)]


def _parse_start(start_date: str | pd.Timestamp) -> pd.Timestamp:
    """Midnight of the start day as naive UTC, so simulated times of day are
    real hours (features such as 'during the night' depend on them)."""
    ts = pd.Timestamp(start_date)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


def _validate(n_customers: int, n_terminals: int, days: int, radius: float) -> None:
    for name, value in (("n_customers", n_customers), ("n_terminals", n_terminals), ("days", days)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")


def simulate_transactions(
    *,
    n_customers: int = 5000,
    n_terminals: int = 10000,
    days: int = 60,
    start_date: str | pd.Timestamp = "2024-01-01",
    seed: int = 0,
    radius: float = 5.0,
    amount_factor: float = 1.0,
    age_groups: bool = False,
) -> pd.DataFrame:
    """Simulate `days` days of card transactions with fraud labels.

    Returns columns transaction_id, timestamp (naive UTC, ns), customer_id,
    terminal_id, amount, is_fraud, fraud_scenario (0 genuine, 1-3), sorted by
    timestamp. The same arguments always give the same frame.

    `amount_factor` scales every customer's spending profile (a population
    whose spending has shifted, for drift checks); `age_groups` adds the
    protected attribute `customer_age_group` (see AGE_GROUP_COLUMN). Their
    defaults give the frame the other arguments always gave.
    """
    _validate(n_customers, n_terminals, days, radius)
    if not amount_factor > 0:
        raise ValueError(f"amount_factor must be > 0, got {amount_factor}")
    streams = _make_streams(seed)
    customers = customer_profiles(n_customers, streams["customers"], amount_factor)
    terminal_xy = streams["terminals"].uniform(0.0, GRID_SIZE, size=(n_terminals, 2))
    indptr, reachable = reachable_terminals(customers.xy, terminal_xy, radius)

    tx = genuine_transactions(customers, indptr, reachable, days, streams)
    apply_scenario1(tx)
    apply_scenario2(tx, n_terminals, days, streams["scenario2"])
    apply_scenario3(tx, n_customers, days, streams["scenario3"])
    frame = _to_frame(tx, _parse_start(start_date))
    if age_groups:
        # Its own stream (not one of _STREAMS): turning it on changes no other column.
        rng = np.random.default_rng([seed, 0xA6E])
        band = rng.choice(len(AGE_GROUPS), size=n_customers, p=AGE_GROUP_SHARES)
        frame[AGE_GROUP_COLUMN] = np.asarray(AGE_GROUPS, dtype=object)[
            band[frame["customer_id"].to_numpy()]]
    return frame


def compromise_cards(
    frame: pd.DataFrame,
    customer_ids: np.ndarray,
    since: str | pd.Timestamp,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Scenario 3 applied on demand: from `since` on, a third (rounded down)
    of each listed customer's genuine transactions get their amount
    multiplied by SCENARIO3_FACTOR and are labelled fraud (scenario 3).

    For controlled experiments on a simulated stream, e.g. checking what the
    explanations of compromised-card frauds say without the confounding of
    frauds that also sit at risky terminals. Returns a new frame."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    eligible = (
        (pd.to_datetime(out["timestamp"]) >= pd.Timestamp(since))
        & out["customer_id"].isin(customer_ids)
        & (out["fraud_scenario"] == 0)
    ).to_numpy()
    positions = np.flatnonzero(eligible)
    customers = out["customer_id"].to_numpy()[positions]
    chosen = []
    for customer in np.unique(customers):
        own = positions[customers == customer]
        chosen.append(rng.choice(own, size=own.size // 3, replace=False))
    rows = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.intp)
    amount = out["amount"].to_numpy(copy=True)
    amount[rows] = np.round(amount[rows] * SCENARIO3_FACTOR, 2)
    out["amount"] = amount
    for column, value in (("is_fraud", 1), ("fraud_scenario", 3)):
        values = out[column].to_numpy(copy=True)
        values[rows] = value
        out[column] = values
    return out
