"""serving.online_state.OnlineState as the API uses it: the store follows the
settings (keyed hashes from settings.resolved_hash_key(), the journal's fsync
period, Redis' timeout), a new config keeps the same store and key, ping()
answers, and batches are recorded in order, all or nothing for conflicts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gendetect.errors import DuplicateTransactionError
from gendetect.features.state import MemoryStateStore, RedisStateStore
from gendetect.features.windows import WindowConfig
from serving.online_state import OnlineState
from serving.settings import ServingSettings
from tests.records import tx

START = datetime(2024, 3, 1, 12)
CUSTOMER = 987_654_321


def _settings(tmp_path: Path, **extra: object) -> ServingSettings:
    return ServingSettings(home=tmp_path, hash_key="online-state-test-key", **extra)  # type: ignore[arg-type]


def test_the_memory_store_follows_the_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, state_journal_fsync_seconds=0.25)
    online = OnlineState.create(WindowConfig(), settings)
    assert isinstance(online.store, MemoryStateStore) and online.runs_inline
    assert online.store._journal.fsync_seconds == 0.25  # type: ignore[union-attr]
    assert online.entity_key == settings.resolved_hash_key()
    assert online.ping() is True
    features = online.compute([tx(1, START, customer=CUSTOMER), tx(2, START, customer=CUSTOMER)])
    assert [f["customer_nb_tx_1d"] for f in features] == [1, 2]
    # Another config: the same store and key, so the history goes on.
    other = online.with_config(WindowConfig(customer_windows_days=(2,)))
    assert other.store is online.store
    assert other.compute([tx(3, START, customer=str(CUSTOMER))])[0]["customer_nb_tx_2d"] == 3  # type: ignore[arg-type]
    assert online.add_label(1, True, START + timedelta(hours=1))
    with pytest.raises(DuplicateTransactionError):
        online.compute([tx(4, START), tx(1, START, customer=7)])
    assert len(online.store) == 3  # type: ignore[arg-type]
    online.snapshot()
    online.close()
    assert (tmp_path / "state" / "features.snapshot").is_file()
    files = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    assert files and str(CUSTOMER).encode() not in files


def test_redis_gets_the_timeout_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, state_store="redis", state_timeout_seconds=0.15,
                         redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    online = OnlineState.create(WindowConfig(), settings)
    assert isinstance(online.store, RedisStateStore) and not online.runs_inline
    kwargs = online.store._redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.15
    assert online.ping() is False  # refused: False, not an exception
    online.close()
