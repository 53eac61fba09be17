"""gendetect.keyed_hash: ids and records hashed one way for every store."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from gendetect.errors import InputError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.keyed_hash import EntityHasher, record_digest
from gendetect.schema import load_schema
from gendetect.stores.records import RowBuilder

KEY = b"keyed-hash-test-key"


@pytest.mark.parametrize("same", [42, np.int64(42), 42.0, np.float32(42), "42"])
def test_one_customer_whatever_the_id_type(same: object) -> None:
    assert EntityHasher(KEY).digest(same) == EntityHasher(KEY).digest(42)


def test_the_key_matters_and_no_id_is_kept() -> None:
    a, b = EntityHasher(KEY).digest(987654321), EntityHasher(b"other").digest(987654321)
    assert a != b and "987654321" not in a and len(a) == 32
    assert EntityHasher().digest(7) != EntityHasher(KEY).digest(7)


@pytest.mark.parametrize("bad", [None, True])
def test_not_an_id(bad: object) -> None:
    with pytest.raises(InputError) as info:
        EntityHasher(KEY).digest(bad, "customer_id")
    assert info.value.field == "customer_id"


def test_audit_rows_and_online_state_name_the_same_entities() -> None:
    schema = load_schema("transactions")
    record = {
        "transaction_id": 1,
        "timestamp": datetime(2024, 3, 1),
        "customer_id": 42.0,
        "terminal_id": "T-9",
        "amount": 10.0,
    }
    decision = {
        "model": {"name": "m", "version": "1"},
        "score": 0.0,
        "risk": 0.0,
        "is_fraud": False,
        "threshold": 1.0,
        "top_features": [],
        "top_reasons": [],
    }
    (row,) = RowBuilder(schema, KEY).rows([record], [decision], datetime(2024, 3, 1), None)
    online = OnlineWindowFeatures(entity_key=KEY)
    assert row.entities["customer_id"] == online.entity_digest(42)
    assert row.entities["terminal_id"] == online.entity_digest("T-9")


def test_record_digest_keyed_and_unkeyed() -> None:
    record = {"a": 1, "b": [1, 2]}
    assert record_digest(record) == record_digest(dict(reversed(list(record.items()))))
    assert record_digest(record, KEY) != record_digest(record)
    assert record_digest(record, KEY) != record_digest(record, b"other")
    assert record_digest(record, KEY) == record_digest(dict(record), KEY)
