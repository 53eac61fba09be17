"""A changed hash key against the memory store's state (snapshot, journal)
and `gendetect serve`: the state records the check value of its key, and a
store opened with another key refuses to start, naming the state's path,
instead of silently starting every history from zero (a lost key file gets a
new random key: the same error). GENDETECT_ACCEPT_NEW_HASH_KEY moves the old
state aside; a state from before check values existed is adopted.

Every test here fails on the store as it was: it opened any state with any
key, and the customers' digests under the new key matched nothing."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore
from gendetect.features.state.memory_key import check_memory_key
from gendetect.features.windows import WindowConfig
from gendetect.key_check import HashKeyChangedError, key_check
from serving.online_state import OnlineState
from serving.online_state import check_state_key as check_at_start
from serving.settings import ServingSettings
from tests.records import tx

START = datetime(2024, 3, 1)
OLD, NEW = b"the-old-hash-key", b"the-new-hash-key"
CUSTOMER = 31337


def _open(path: Path, key: bytes, **kwargs: bool) -> OnlineWindowFeatures:
    store = MemoryStateStore(path, key_check=key_check(key), **kwargs)
    return OnlineWindowFeatures(WindowConfig(), store, entity_key=key)


def _history(online: OnlineWindowFeatures, n: int = 20) -> None:
    for k in range(n):
        online.compute_and_record(tx(k + 1, START + timedelta(hours=k), customer=CUSTOMER))


def _count(online: OnlineWindowFeatures) -> float:
    """The customer's 7-day count as a read just after its history sees it."""
    return online.compute(tx(10**6, START + timedelta(days=1), customer=CUSTOMER))[
        "customer_nb_tx_7d"
    ]


def _state(tmp_path: Path, key: bytes = OLD, n: int = 20) -> Path:
    path = tmp_path / "state" / "features.snapshot"
    online = _open(path, key)
    _history(online, n)
    online.store.close()  # final snapshot
    return path


def test_the_check_value_is_short_and_not_the_key() -> None:
    check = key_check(OLD)
    assert len(check) == 16 and int(check, 16) >= 0
    assert check != key_check(NEW) and check == key_check(OLD)
    assert OLD.hex() not in check and OLD.decode() not in check


def test_a_snapshot_written_with_another_key_stops_the_store(tmp_path: Path) -> None:
    path = _state(tmp_path)
    check = orjson.loads(path.read_bytes())["key_check"]
    assert check == key_check(OLD)
    assert OLD not in path.read_bytes() and OLD not in path.with_name(
        path.name + ".keycheck").read_bytes()
    with pytest.raises(HashKeyChangedError) as info:
        _open(path, NEW)
    message = str(info.value)
    assert str(path) in message and "hash key changed" in message
    assert "GENDETECT_ACCEPT_NEW_HASH_KEY=true" in message and "\n" not in message
    # Refused, not touched: the old key still opens the whole history.
    assert _count(_open(path, OLD)) == 20 + 1


def test_a_state_that_is_only_a_journal_is_covered(tmp_path: Path) -> None:
    path = tmp_path / "live" / "features.snapshot"
    online = _open(path, OLD)
    _history(online)
    # As after a crash before the first snapshot: a copy of the folder now.
    crashed = tmp_path / "crashed"
    shutil.copytree(path.parent, crashed)
    online.store.close()
    assert not (crashed / path.name).exists()
    assert any(p.name.startswith(f"{path.name}.journal.") for p in crashed.iterdir())
    with pytest.raises(HashKeyChangedError, match="hash key changed"):
        _open(crashed / path.name, NEW)
    assert _count(_open(crashed / path.name, OLD)) == 20 + 1


def test_a_lost_key_file_is_a_start_up_error(tmp_path: Path) -> None:
    """No GENDETECT_HASH_KEY: the key file under <home> is the key. Lost, a
    new random one is made, and the state it did not write is refused, by
    the check the API runs before it opens its port and by the store."""
    settings = ServingSettings(home=tmp_path)
    online = OnlineState.create(WindowConfig(), settings)
    online.compute([tx(1, START, customer=CUSTOMER), tx(2, START, customer=CUSTOMER)])
    online.close()
    key_file = tmp_path / "secrets" / "hash.key"
    key_file.unlink()
    for start in (lambda: check_at_start(settings),
                  lambda: OnlineState.create(WindowConfig(), settings)):
        with pytest.raises(HashKeyChangedError) as info:
            start()
        message = str(info.value)
        assert str(settings.state_snapshot_path) in message
        assert f"the key file {key_file}" in message and "hash key changed" in message


def test_a_state_from_before_key_checks_is_adopted(tmp_path: Path) -> None:
    # A store without a key check writes what the store wrote before check
    # values existed: a snapshot without one (and no check file).
    path = tmp_path / "state" / "features.snapshot"
    store = MemoryStateStore(path)
    online = OnlineWindowFeatures(WindowConfig(), store, entity_key=OLD)
    _history(online)
    store.close()
    raw = orjson.loads(path.read_bytes())
    assert raw["key_check"] is None and not path.with_name(path.name + ".keycheck").exists()
    del raw["key_check"]
    path.write_bytes(orjson.dumps(raw))
    check_memory_key(path, key_check(OLD))  # nothing to compare with: accepted
    adopted = _open(path, OLD)
    assert _count(adopted) == 20 + 1
    adopted.store.close()
    assert orjson.loads(path.read_bytes())["key_check"] == key_check(OLD)
    with pytest.raises(HashKeyChangedError):
        _open(path, NEW)


def test_accepting_the_new_key_moves_the_old_state_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _state(tmp_path)
    old_files = sorted(p.name for p in path.parent.iterdir())
    with caplog.at_level(logging.WARNING):
        fresh = _open(path, NEW, accept_new_key=True)
    assert _count(fresh) == 1  # starts empty
    assert "THE HASH KEY CHANGED" in caplog.text and str(path) in caplog.text
    aside = [p for p in path.parent.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and aside[0].stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in aside[0].iterdir()) == old_files  # kept, not deleted
    _history(fresh, 3)
    fresh.store.close()
    # The new key is the state's key now; the old one is refused.
    assert _count(_open(path, NEW)) == 3 + 1
    with pytest.raises(HashKeyChangedError):
        _open(path, OLD)


def test_a_check_file_left_without_state_is_replaced(tmp_path: Path) -> None:
    path = _state(tmp_path)
    for p in path.parent.iterdir():
        if p.name != path.name + ".keycheck":
            p.unlink()
    online = _open(path, NEW)  # nothing to orphan
    assert _count(online) == 1
    online.store.close()
    assert orjson.loads(path.read_bytes())["key_check"] == key_check(NEW)


def test_serve_stops_at_start_with_one_line(tmp_path: Path) -> None:
    """`gendetect serve` on a state written with another key: exit 2 and
    one line naming the state, before the port opens (no model needed)."""
    home = tmp_path / "home"
    _state(home, OLD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENDETECT_", "MLFLOW_"))}
    env.update(GENDETECT_HOME=str(home), GENDETECT_HASH_KEY=NEW.decode(),
               GENDETECT_API_KEY="k" * 24, OMP_NUM_THREADS="1",
               GENDETECT_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    done = subprocess.run([sys.executable, "-m", "gendetect.cli", "serve", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("gendetect serve: error: ")
    assert str(home / "state" / "features.snapshot") in lines[0]
    assert "GENDETECT_HASH_KEY" in lines[0] and "Traceback" not in done.stderr
    assert "gendetect API on" not in done.stdout
