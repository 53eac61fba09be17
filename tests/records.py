"""Small record builders shared by the online-feature tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def tx(
    tid: int, when: datetime, customer: int = 1, terminal: int = 2, amount: float = 10.0
) -> dict[str, Any]:
    """One transaction record as the API receives it."""
    return {
        "transaction_id": tid,
        "timestamp": when,
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
    }
