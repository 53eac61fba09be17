"""The Redis state store against a real Redis (127.0.0.1:6379, or
GENDETECT_REDIS_URL), on two hardening points.

- The hash key: the prefix records the check value of the key its digests
  were made with; a store with another key refuses it (HashKeyChangedError
  naming the prefix at start; a 503 and ping() False if Redis only answers
  later) instead of silently starting every history from zero. State from
  before check values is adopted; GENDETECT_ACCEPT_NEW_HASH_KEY clears the
  prefix. (Before, any key was used on any prefix: these tests fail there.)
- Volume: other customers' records at today's date do not expire a customer
  replaying 2024 data. Redis never had the memory store's defect (its idle
  expiry is per key, on the wall clock since the entity's own last write,
  and pruning is by the entity's own events); this pins it.

If Redis is unreachable the tests fail under CI (env CI set) and are skipped
otherwise.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gendetect.errors import StateUnavailableError
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import RedisStateStore
from gendetect.features.windows import WindowConfig
from gendetect.key_check import HashKeyChangedError, key_check
from tests.records import tx

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("GENDETECT_REDIS_URL", "redis://127.0.0.1:6379/0")
OLD, NEW = b"the-old-hash-key", b"the-new-hash-key"
REPLAY = datetime(2024, 5, 1)
CUSTOMER = 424242


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh key prefix per test; every key under it is deleted after."""
    name = f"gendetect-test-{uuid.uuid4().hex[:12]}"
    probe = RedisStateStore(REDIS_URL, prefix=name)
    if not probe.ping():
        message = f"Redis not reachable at {REDIS_URL}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must start redis-server: see scripts/test.sh)")
        pytest.skip(message)
    yield name
    probe.clear()
    probe.close()


def _online(prefix: str, key: bytes, **kwargs: bool) -> OnlineWindowFeatures:
    store = RedisStateStore(REDIS_URL, prefix=prefix, key_check=key_check(key), **kwargs)
    return OnlineWindowFeatures(WindowConfig(), store, entity_key=key)


def _history(online: OnlineWindowFeatures, n: int = 10) -> None:
    for k in range(n):
        online.compute_and_record(tx(k + 1, REPLAY + timedelta(hours=k), customer=CUSTOMER,
                                     terminal=4242, amount=float(k)))


def _count(online: OnlineWindowFeatures, n: int = 10) -> float:
    return online.compute(tx(10**9, REPLAY + timedelta(hours=n), customer=CUSTOMER,
                             terminal=4242))["customer_nb_tx_7d"]


def test_a_prefix_written_with_another_key_is_refused(prefix: str) -> None:
    first = _online(prefix, OLD)
    first.store.check_key()  # type: ignore[attr-defined]
    _history(first)
    with pytest.raises(HashKeyChangedError) as info:
        _online(prefix, NEW).store.check_key()  # type: ignore[attr-defined]
    message = str(info.value)
    assert f"prefix '{prefix}:'" in message and "hash key changed" in message
    assert "GENDETECT_ACCEPT_NEW_HASH_KEY=true" in message
    # A store that could not check at start checks at its first call: a 503
    # and not ready, and nothing recorded under the new key.
    late = _online(prefix, NEW)
    for _ in range(2):
        with pytest.raises(StateUnavailableError, match="another hash key"):
            late.compute_and_record(tx(99, REPLAY, customer=CUSTOMER))
    assert late.store.ping() is False
    assert _count(_online(prefix, OLD)) == 10 + 1  # untouched


def test_the_api_state_names_where_the_key_comes_from(prefix: str, tmp_path: Path) -> None:
    """serving.online_state as the API runs it (the default prefix, in a
    Redis database of this test's own): at start and when the model loads."""
    from serving.online_state import OnlineState, check_state_key
    from serving.settings import ServingSettings

    url = REDIS_URL.rsplit("/", 1)[0] + "/11"
    old = RedisStateStore(url, key_check=key_check(OLD))
    old.clear()
    try:
        _history(OnlineWindowFeatures(WindowConfig(), old, entity_key=OLD))
        settings = ServingSettings(home=tmp_path, state_store="redis", redis_url=url,
                            hash_key=NEW.decode())  # type: ignore[arg-type]
        for start in (lambda: check_state_key(settings),
                      lambda: OnlineState.create(WindowConfig(), settings)):
            with pytest.raises(HashKeyChangedError) as info:
                start()
            message = str(info.value)
            assert "prefix 'gendetect:'" in message
            assert "(the key in use comes from GENDETECT_HASH_KEY)" in message
    finally:
        old.clear()
        old.close()


def test_state_from_before_key_checks_is_adopted(prefix: str) -> None:
    legacy = RedisStateStore(REDIS_URL, prefix=prefix)  # no key check: as before
    _history(OnlineWindowFeatures(WindowConfig(), legacy, entity_key=OLD))
    adopted = _online(prefix, OLD)
    adopted.store.check_key()  # type: ignore[attr-defined]
    assert _count(adopted) == 10 + 1
    with pytest.raises(HashKeyChangedError):
        _online(prefix, NEW).store.check_key()  # type: ignore[attr-defined]


def test_accepting_the_new_key_clears_the_prefix(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    _history(_online(prefix, OLD))
    fresh = _online(prefix, NEW, accept_new_key=True)
    with caplog.at_level(logging.WARNING):
        fresh.store.check_key()  # type: ignore[attr-defined]
    assert "THE HASH KEY CHANGED" in caplog.text and f"'{prefix}:'" in caplog.text
    assert _count(fresh) == 1
    _history(fresh, 3)
    assert _count(_online(prefix, NEW), 3) == 3 + 1
    with pytest.raises(HashKeyChangedError):
        _online(prefix, OLD).store.check_key()  # type: ignore[attr-defined]


def test_a_check_value_left_without_state_is_replaced(prefix: str) -> None:
    _online(prefix, OLD).store.check_key()  # type: ignore[attr-defined]
    # Every entity expired, the check value (no expiry) left: nothing to orphan.
    fresh = _online(prefix, NEW)
    fresh.store.check_key()  # type: ignore[attr-defined]
    _history(fresh, 2)
    with pytest.raises(HashKeyChangedError):
        _online(prefix, OLD).store.check_key()  # type: ignore[attr-defined]


def test_volume_at_today_does_not_expire_a_replayed_customer(prefix: str) -> None:
    online = _online(prefix, OLD)
    _history(online, 103)
    before = _count(online, 103)
    assert before == 103 + 1
    now = datetime.now(UTC).replace(tzinfo=None)
    for k in range(2_000):
        online.compute_and_record(
            tx(10**6 + k, now, customer=10**6 + k % 500, terminal=10**6 + k % 50)
        )
    assert _count(online, 103) == before
    assert all(online.add_label(k + 1, False, REPLAY + timedelta(days=5)) for k in range(103))
