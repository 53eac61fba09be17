"""The three fraud scenarios of the handbook's simulator, applied in place
to the genuine transactions (gendetect.data.population).

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

import numpy as np

from gendetect.data.population import SimulatedTransactions

SCENARIO1_THRESHOLD = 220.0
SCENARIO2_TERMINALS_PER_DAY = 2
SCENARIO2_DAYS = 28
SCENARIO3_CUSTOMERS_PER_DAY = 3
SCENARIO3_DAYS = 14
SCENARIO3_FACTOR = 5.0


def _sample_per_day(n: int, k: int, days: int, rng: np.random.Generator) -> np.ndarray:
    """(days, k) ids drawn without replacement within each day. A loop over
    days (not customers) is cheap, and a (days, n) random matrix would not be
    for large populations."""
    k = min(k, n)
    return np.stack([rng.choice(n, size=k, replace=False) for _ in range(days)])


def apply_scenario1(tx: SimulatedTransactions) -> None:
    tx.scenario[(tx.amount > SCENARIO1_THRESHOLD) & (tx.scenario == 0)] = 1


def apply_scenario2(
    tx: SimulatedTransactions, n_terminals: int, days: int, rng: np.random.Generator
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


def apply_scenario3(
    tx: SimulatedTransactions, n_customers: int, days: int, rng: np.random.Generator
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
