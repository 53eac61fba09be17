"""Simulated card transactions with labelled fraud.

Follows the design of the simulator in the "Reproducible Machine Learning for
Credit Card Fraud Detection" handbook (Le Borgne et al., ULB): customers and
terminals on a 100x100 grid, per-customer spending profiles, Poisson daily
counts, and three fraud scenarios. Everything is vectorised with numpy so a
million transactions take seconds instead of the handbook's minutes of
per-customer Python loops.

Fraud scenarios are applied in order 1, 2, 3 and only ever touch transactions
that are still genuine, so `fraud_scenario` is the *first* scenario that hit a
transaction. (The handbook lets later scenarios overwrite earlier labels; we
keep the first so that scenario-2 amounts always "look normal" and a
transaction is never inflated twice.) Consequences worth knowing:
- scenario 1 <=> the amount drawn from the customer's profile was above 220;
- scenario 2 amounts are never above 220;
- scenario 3 amounts are 5x a profile draw (and may or may not exceed 220).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gendetect.errors import CliError

GRID_SIZE = 100.0
SECONDS_PER_DAY = 86_400
TIME_OF_DAY_MEAN = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD = 20_000.0

SCENARIO1_THRESHOLD = 220.0
SCENARIO2_TERMINALS_PER_DAY = 2
SCENARIO2_DAYS = 28
SCENARIO3_CUSTOMERS_PER_DAY = 3
SCENARIO3_DAYS = 14
SCENARIO3_FACTOR = 5.0

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


@dataclass(frozen=True)
class _Customers:
    xy: np.ndarray  # (n, 2) location
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray


@dataclass
class _Transactions:
    """Columns in generation order: sorted by (customer, day)."""

    customer: np.ndarray
    day: np.ndarray
    second_of_day: np.ndarray
    terminal: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray


def _make_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(_STREAMS, children, strict=True)
    }


def _customer_profiles(
    n: int, rng: np.random.Generator, amount_factor: float = 1.0
) -> _Customers:
    xy = rng.uniform(0.0, GRID_SIZE, size=(n, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=n) * amount_factor
    mean_tx = rng.uniform(0.0, 4.0, size=n)
    return _Customers(xy, mean_amount, mean_amount / 2.0, mean_tx)


def _reachable_terminals(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays (indptr, terminal ids) of the terminals strictly within
    `radius` of each customer, terminal ids ascending within a customer."""
    pairs = cKDTree(customer_xy).sparse_distance_matrix(
        cKDTree(terminal_xy), radius, output_type="ndarray"
    )
    # sparse_distance_matrix keeps distance <= r; the handbook uses < r.
    pairs = pairs[pairs["v"] < radius]
    order = np.lexsort((pairs["j"], pairs["i"]))
    customer = pairs["i"][order].astype(np.int64)
    terminal = pairs["j"][order].astype(np.int64)
    counts = np.bincount(customer, minlength=len(customer_xy))
    indptr = np.concatenate(([0], np.cumsum(counts)))
    return indptr, terminal


def _draw_amounts(mean: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normal amounts in cents; draws that round to <= 0 are redrawn (a
    truncated normal by rejection; ~2% of draws, so a few passes suffice)."""
    amount = np.round(rng.normal(mean, std), 2)
    bad = np.flatnonzero(amount <= 0.0)
    while bad.size:
        amount[bad] = np.round(rng.normal(mean[bad], std[bad]), 2)
        bad = bad[amount[bad] <= 0.0]
    return amount


def _genuine_transactions(
    customers: _Customers,
    indptr: np.ndarray,
    reachable: np.ndarray,
    days: int,
    streams: dict[str, np.random.Generator],
) -> _Transactions:
    n_reachable = np.diff(indptr)
    counts = streams["counts"].poisson(
        customers.mean_tx_per_day[:, None], size=(len(n_reachable), days)
    )
    # A customer with no terminal in range cannot pay anywhere.
    counts[n_reachable == 0] = 0

    # C-order flattening keeps the result sorted by (customer, day), which the
    # scenario-3 range search relies on.
    flat = counts.ravel()
    cell = np.repeat(np.arange(flat.size), flat)
    customer, day = np.divmod(cell, days)

    seconds = np.floor(
        streams["times"].normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, size=cell.size)
    ).astype(np.int64)
    keep = (seconds >= 0) & (seconds < SECONDS_PER_DAY)
    customer, day, seconds = customer[keep], day[keep], seconds[keep]

    amount = _draw_amounts(
        customers.mean_amount[customer], customers.std_amount[customer], streams["amounts"]
    )
    pick = np.floor(streams["choice"].random(customer.size) * n_reachable[customer])
    terminal = reachable[indptr[customer] + pick.astype(np.int64)]
    scenario = np.zeros(customer.size, dtype=np.int64)
    return _Transactions(customer, day, seconds, terminal, amount, scenario)


def _sample_per_day(n: int, k: int, days: int, rng: np.random.Generator) -> np.ndarray:
    """(days, k) ids drawn without replacement within each day. A loop over
    days (not customers) is cheap, and a (days, n) random matrix would not be
    for large populations."""
    k = min(k, n)
    return np.stack([rng.choice(n, size=k, replace=False) for _ in range(days)])


def _apply_scenario1(tx: _Transactions) -> None:
    tx.scenario[(tx.amount > SCENARIO1_THRESHOLD) & (tx.scenario == 0)] = 1


def _apply_scenario2(
    tx: _Transactions, n_terminals: int, days: int, rng: np.random.Generator
) -> None:
    per_day = _sample_per_day(n_terminals, SCENARIO2_TERMINALS_PER_DAY, days, rng)
    start = np.repeat(np.arange(days), per_day.shape[1])
    end = np.minimum(start + SCENARIO2_DAYS, days)
    # Rows only for terminals ever compromised (at most 2 per day), so memory
    # does not grow with the number of terminals.
    terminals, row = np.unique(per_day.ravel(), return_inverse=True)
    # Difference array over (terminal, day): +1 where a compromise starts,
    # -1 where it ends; a positive running sum means "compromised that day".
    diff = np.zeros((terminals.size, days + 1), dtype=np.int32)
    np.add.at(diff, (row, start), 1)
    np.add.at(diff, (row, end), -1)
    active = np.cumsum(diff, axis=1)[:, :days] > 0

    tx_row = np.minimum(np.searchsorted(terminals, tx.terminal), terminals.size - 1)
    hit = (terminals[tx_row] == tx.terminal) & active[tx_row, tx.day]
    tx.scenario[hit & (tx.scenario == 0)] = 2


def _expand_ranges(lo: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo, lo+n): (range index, rank within the range) of every
    element, ranges laid end to end."""
    owner = np.repeat(np.arange(n.size), n)
    rank = np.arange(owner.size) - (np.cumsum(n) - n)[owner]
    return owner, rank


def _apply_scenario3(
    tx: _Transactions, n_customers: int, days: int, rng: np.random.Generator
) -> None:
    per_day = _sample_per_day(n_customers, SCENARIO3_CUSTOMERS_PER_DAY, days, rng)
    compromised = per_day.ravel()
    start = np.repeat(np.arange(days), per_day.shape[1])

    # Transactions are sorted by (customer, day): each compromise window is a
    # contiguous range found by binary search on a combined key.
    stride = days + SCENARIO3_DAYS
    key = tx.customer * stride + tx.day
    lo = np.searchsorted(key, compromised * stride + start, side="left")
    hi = np.searchsorted(key, compromised * stride + start + SCENARIO3_DAYS, side="left")
    n = hi - lo

    # Exactly floor(n/3) of each window's transactions: shuffle within each
    # window with random keys, keep the first n//3.
    owner, within = _expand_ranges(lo, n)
    position = lo[owner] + within
    order = np.lexsort((rng.random(owner.size), owner))
    # Sorting by owner first keeps each window's block in place, so `within`
    # is also each element's rank after the shuffle.
    keep = within < (n // 3)[owner]
    chosen = np.unique(position[order][keep])

    # Overlapping windows of the same customer inflate a transaction once.
    chosen = chosen[tx.scenario[chosen] == 0]
    tx.amount[chosen] = np.round(tx.amount[chosen] * SCENARIO3_FACTOR, 2)
    tx.scenario[chosen] = 3


def _to_frame(tx: _Transactions, start: pd.Timestamp) -> pd.DataFrame:
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
    customers = _customer_profiles(n_customers, streams["customers"], amount_factor)
    terminal_xy = streams["terminals"].uniform(0.0, GRID_SIZE, size=(n_terminals, 2))
    indptr, reachable = _reachable_terminals(customers.xy, terminal_xy, radius)

    tx = _genuine_transactions(customers, indptr, reachable, days, streams)
    _apply_scenario1(tx)
    _apply_scenario2(tx, n_terminals, days, streams["scenario2"])
    _apply_scenario3(tx, n_customers, days, streams["scenario3"])
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


def cli_main(args: argparse.Namespace) -> int:
    """`gendetect simulate`: simulate and write a transactions file."""
    from gendetect.data.io import WRITE_SUFFIXES, write_table

    # Check the output format before spending time simulating.
    if not str(args.out).lower().endswith(WRITE_SUFFIXES):
        raise CliError(f"--out must end with one of {', '.join(WRITE_SUFFIXES)}: {args.out}")
    try:
        df = simulate_transactions(
            n_customers=args.customers,
            n_terminals=args.terminals,
            days=args.days,
            start_date=args.start_date,
            seed=args.seed,
            amount_factor=getattr(args, "amount_factor", 1.0),
            age_groups=getattr(args, "age_groups", False),
        )
    except ValueError as exc:  # bad numbers or an unparseable --start-date
        raise CliError(str(exc)) from exc
    write_table(df, args.out)
    rate = float(df["is_fraud"].mean()) if len(df) else 0.0
    print(f"wrote {len(df)} transactions (fraud rate {rate:.2%}) to {args.out}")
    return 0
