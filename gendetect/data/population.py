"""The simulated population: customers' spending profiles, terminals on the
grid, which terminals each customer can reach, and the genuine transactions
they make (Poisson daily counts, normal times of day and amounts), in the
handbook's design (gendetect.data.simulator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from gendetect.timestamps import SECONDS_PER_DAY

GRID_SIZE = 100.0
TIME_OF_DAY_MEAN = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD = 20_000.0


@dataclass(frozen=True)
class CustomerProfiles:
    xy: np.ndarray  # (n, 2) location
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray


@dataclass
class SimulatedTransactions:
    """Columns in generation order: sorted by (customer, day)."""

    customer: np.ndarray
    day: np.ndarray
    second_of_day: np.ndarray
    terminal: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray


def customer_profiles(
    n: int, rng: np.random.Generator, amount_factor: float = 1.0
) -> CustomerProfiles:
    xy = rng.uniform(0.0, GRID_SIZE, size=(n, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=n) * amount_factor
    mean_tx = rng.uniform(0.0, 4.0, size=n)
    return CustomerProfiles(xy, mean_amount, mean_amount / 2.0, mean_tx)


def reachable_terminals(
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


def genuine_transactions(
    customers: CustomerProfiles,
    indptr: np.ndarray,
    reachable: np.ndarray,
    days: int,
    streams: dict[str, np.random.Generator],
) -> SimulatedTransactions:
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
    return SimulatedTransactions(customer, day, seconds, terminal, amount, scenario)
