"""A small table as real ones are: gaps in nullable fields and a
high-cardinality categorical field (shared by the unit and integration tests
of missing values and learned categorical levels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gendetect.schema import FieldSpec, Schema

N_DOMAINS = 500
MAX_LEVELS = 8


def gappy_schema(name: str = "gappy") -> Schema:
    return Schema(
        name=name,
        fields=(
            FieldSpec("transaction_id", "id"),
            FieldSpec("customer_id", "entity", pii=True),
            FieldSpec("amount", "numeric", min=0.0),
            FieldSpec("x1", "numeric"),
            FieldSpec("x2", "numeric"),
            # Gaps allowed; the column may be left out of a file or record.
            FieldSpec("balance", "numeric", required=False, nullable=True),
            FieldSpec("is_foreign", "boolean", required=False, nullable=True),
            # Levels learned from the data: 500 domains, at most 8 columns of their own.
            FieldSpec("email_domain", "categorical", required=False, nullable=True,
                      max_levels=MAX_LEVELS, min_level_count=5),
            FieldSpec("channel", "categorical", categories=("web", "pos")),
            FieldSpec("is_fraud", "label", required=False),
        ),
    )


def gappy_frame(n: int, seed: int, *, balance_gaps: float = 0.2,
                domain_gaps: float = 0.2) -> pd.DataFrame:
    """Rows with correlated numbers, `balance_gaps` of the balances and
    `domain_gaps` of the e-mail domains missing (at random), 5% of the
    foreign flags missing, and e-mail domains from a long-tailed
    distribution over N_DOMAINS levels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    domains = np.array([f"d{k}.example" for k in range(N_DOMAINS)], dtype=object)
    weights = 1.0 / np.arange(1, N_DOMAINS + 1)
    email = domains[rng.choice(N_DOMAINS, size=n, p=weights / weights.sum())]
    email[rng.random(n) < domain_gaps] = None
    balance = 100 + 30 * z[:, 0] + rng.normal(size=n)
    balance[rng.random(n) < balance_gaps] = np.nan
    foreign = (z[:, 1] > 1.0).astype(object)
    foreign[rng.random(n) < 0.05] = None
    return pd.DataFrame({
        "transaction_id": np.arange(seed * 1_000_000, seed * 1_000_000 + n, dtype=np.int64),
        "customer_id": [f"c{k}" for k in rng.integers(0, 50, size=n)],
        "amount": np.exp(3 + 0.5 * z[:, 0] + 0.1 * rng.normal(size=n)),
        "x1": z[:, 1] + 0.1 * rng.normal(size=n),
        "x2": z[:, 0] - z[:, 1] + 0.1 * rng.normal(size=n),
        "balance": balance,
        "is_foreign": pd.array(foreign, dtype="boolean"),
        "email_domain": email,
        "channel": np.where(z[:, 1] > 0, "web", "pos"),
    })
