"""What a request costs the Redis store, pinned without timing: the size of
the record script's reply (elements and bytes) for one key with 20 events
and with 2,000, everything else equal. Declarations answered from the prefix
sums and fraud lists (count, sum, mean, std, zscore, label_rate, first_seen,
since_previous) get a reply that does not grow with the key's history:
O(log history) per bound on the server, O(1) on the client. min and max read
the window's events: their reply grows with it. (Before, the script returned
the slice of every history the windows reached: the first test fails there.)

Redis database 11 (GENDETECT_REDIS_COST_URL overrides it), a key prefix per
test. If Redis is unreachable the tests fail under CI and are skipped
otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from gendetect.aggregates import AggregateDeclaration
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import RedisStateStore

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("GENDETECT_REDIS_COST_URL", "redis://127.0.0.1:6379/11")
START = datetime(2024, 3, 1)
SPAN = timedelta(hours=20)  # every event within the 1d window


def _declaration(features: list[Any]) -> AggregateDeclaration:
    return AggregateDeclaration.from_list(
        [{"key": "customer_id", "windows": ["1h", "1d"], "features": features},
         {"key": "merchant_id", "windows": ["1d"], "delay": "2h", "features": features}],
        entity_columns=["customer_id", "merchant_id"], numeric_columns=["amount"],
        all_columns=["customer_id", "merchant_id", "amount"], has_label=True)


O_LOG = _declaration(["count", "first_seen", "label_rate", "since_previous",
                      *({"kind": k, "of": "amount"} for k in ("sum", "mean", "std", "zscore"))])
WALKS = _declaration(["count", {"kind": "min", "of": "amount"}, {"kind": "max", "of": "amount"}])


class _Replies:
    """Keeps what the store's record script returns (the store is unchanged:
    this only looks at its replies)."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.last: Any = None

    def __call__(self, **kwargs: Any) -> Any:
        self.last = self.script(**kwargs)
        return self.last


def _size(reply: Any) -> tuple[int, int]:
    """(elements, bytes) of a Redis reply, nested arrays flattened."""
    if isinstance(reply, list):
        parts = [_size(r) for r in reply]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    return 1, len(reply) if isinstance(reply, bytes) else len(str(reply))


@pytest.fixture
def client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


def _reply_for_history(client: Any, declaration: AggregateDeclaration,
                       n: int) -> tuple[tuple[int, int], dict[str, float]]:
    """The reply size and features of a read by `declaration` after `n`
    events of one customer at one merchant (one in ten labelled fraud),
    recorded under O_LOG (the same histories and columns: recording under
    WALKS would read the window at every record)."""
    store = RedisStateStore(prefix=f"gendetect-cost-{uuid.uuid4().hex[:12]}", client=client)
    try:
        online = OnlineWindowFeatures(O_LOG, store, entity_key=b"cost-test")
        step = SPAN / n
        records = [{"transaction_id": k, "timestamp": START + step * k, "customer_id": 1,
                    "merchant_id": 2, "amount": float(k % 97) + 0.25} for k in range(n)]
        online.compute_and_record_many(records)
        for k in range(0, n, 10):
            online.add_label(k, True, START + step * k)
        replies = _Replies(store._record_script)
        store._record_script = replies  # type: ignore[method-assign]
        reader = OnlineWindowFeatures(declaration, store, entity_key=b"cost-test")
        features = reader.compute({"transaction_id": 10**6, "timestamp": START + SPAN,
                                   "customer_id": 1, "merchant_id": 2, "amount": 50.0})
        return _size(replies.last), features
    finally:
        store.clear()


def test_prefix_sum_kinds_cost_the_same_whatever_the_history(client: Any) -> None:
    (small_n, small_bytes), small = _reply_for_history(client, O_LOG, 20)
    (large_n, large_bytes), large = _reply_for_history(client, O_LOG, 2_000)
    # The features did read the history (not an empty answer twice).
    assert small["customer_id_count_1d"] == 21 and large["customer_id_count_1d"] == 2_001
    assert large["customer_id_label_rate_1d"] > 0.09
    assert large_n == small_n
    # Only the prefix sums' digits grow (a few per hundredfold).
    assert large_bytes < small_bytes * 1.2


def test_min_and_max_read_the_window_and_grow_with_it(client: Any) -> None:
    (small_n, _), small = _reply_for_history(client, WALKS, 20)
    (large_n, _), large = _reply_for_history(client, WALKS, 2_000)
    assert small["customer_id_max_amount_1d"] == 50.0
    assert large["customer_id_max_amount_1d"] == 96.25
    assert large_n > 20 * small_n
