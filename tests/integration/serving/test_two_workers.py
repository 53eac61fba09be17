"""Two worker processes of the real server (GENDETECT_WORKERS=2) on one
port, sharing a Redis online state (a redis-server of the test's own) and a
PostgreSQL audit: a customer's history, the stored decisions (retries and
conflicts) and the verdicts are the same whichever worker answers. Every
request goes on a fresh connection, so that the kernel hands them to either
worker; the workers' own /metrics show that both served."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.integration.api_helpers import (
    T0,
    concurrent_posts,
    expected,
    fresh,
    offline_windows,
)
from tests.integration.conftest import RegisteredFixture
from tests.unit.gendetect.stores.test_stores import (
    create_postgres_database,
    drop_postgres_database,
)

KEY = "two-workers-test-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required (scripts/test.sh checks for it)"
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


@pytest.fixture
def postgres() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def _post(url: str, path: str, body: Any) -> httpx.Response:
    # A client of its own: a new connection, which either worker may accept.
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
        return c.post(path, json=body)


def _get(url: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
        return c.get(path)


def _scored_per_worker(url: str) -> dict[float, float]:
    """Records scored per worker (a worker: its metrics' start time), from
    fresh connections until both workers answered."""
    seen: dict[float, float] = {}
    for _ in range(300):
        text_ = _get(url, "/metrics").text
        values = {s.name: s.value for f in text_string_to_metric_families(text_)
                  for s in f.samples}
        seen[values["gendetect_process_start_time_seconds"]] = values.get(
            "gendetect_records_scored_total", 0.0)
        if len(seen) == 2:
            break
    return seen


def _both_served(before: dict[float, float], after: dict[float, float]) -> bool:
    """Both workers scored records between the two counts."""
    return len(after) == 2 and all(after[w] > before.get(w, 0) for w in after)


def test_two_workers_share_history_audit_and_verdicts(
        server_factory: Any, registered_model: RegisteredFixture, redis_url: str,
        postgres: str) -> None:
    proc = server_factory(GENDETECT_WORKERS="2", GENDETECT_STATE_STORE="redis",
                          GENDETECT_REDIS_URL=redis_url, GENDETECT_DATABASE_URL=postgres,
                          GENDETECT_API_KEY=KEY, GENDETECT_MODEL_POLL_SECONDS="0")
    proc.start(timeout=180)
    try:
        _check_sharing(proc.url, registered_model, postgres)
    finally:
        assert proc.stop() is not None  # SIGTERM: the supervisor stops its workers


def _check_sharing(url: str, registered_model: RegisteredFixture, postgres: str) -> None:
    # Both workers up and serving: concurrent requests spread over them.
    # /readyz answered by one worker says nothing of the other, which may
    # still be loading its model (503 until then).
    deadline = time.monotonic() + 120
    while True:
        answers = concurrent_posts(url, "/v1/score", [fresh() for _ in range(16)],
                                   headers={"X-API-Key": KEY})
        if {status for status, _, _ in answers} == {200}:
            break
        assert {code for _, code, _ in answers} <= {"", "model_not_ready"}, answers
        assert time.monotonic() < deadline, "a worker never became ready"
        time.sleep(1)
    before = _scored_per_worker(url)
    assert len(before) == 2, f"one worker answered everything: {before}"

    # One customer's history, request by request on fresh connections: each
    # decision is the offline one over the whole history, whichever worker
    # recorded the earlier transactions.
    # Which worker accepts a fresh connection is the kernel's choice, so the
    # history grows (12 records, at most 40) until both workers have served
    # part of it.
    customer, terminal = 7_700_001, 7_700_002
    records: list[dict] = []
    got = []
    for i in range(40):
        rec = fresh(T0 + timedelta(minutes=7 * i), customer=customer, terminal=terminal,
                    amount=20.0 + 15 * i)
        r = _post(url, "/v1/score", rec)
        assert r.status_code == 200, r.text
        records.append(rec)
        got.append(r.json())
        if i >= 11 and _both_served(before, _scored_per_worker(url)):
            break
    want = expected(registered_model, records,
                    offline_windows(records, registered=registered_model))
    # Without the other worker's part of the history the windows (counts,
    # sums) and so the scores would be those of shorter histories.
    alone = [expected(registered_model, [rec],
                      offline_windows([rec], registered=registered_model))[0]
             for rec in records]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        # Redis keeps sums as doubles in its own order: equal to ~1e-9.
        assert g["score"] == pytest.approx(w["score"], rel=1e-6), i
        assert g["is_fraud"] == w["is_fraud"]
        if i >= 2:
            assert g["score"] != pytest.approx(alone[i]["score"], rel=1e-4), i
    after = _scored_per_worker(url)
    assert _both_served(before, after), (
        f"the history was not served by both workers: {before} -> {after}")

    # The audit decides retries and conflicts for both workers.
    for rec, first in zip(records, got, strict=True):
        again = _post(url, "/v1/score", rec)
        assert again.status_code == 200 and again.json() == first
    conflict = _post(url, "/v1/score", {**records[0], "amount": 9999.0})
    assert conflict.status_code == 409
    engine = create_engine(postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT count(*) FROM decisions "
                                  "WHERE transaction_id = ANY(:ids)"),
                             {"ids": [r["transaction_id"] for r in records]})
    engine.dispose()
    assert stored == len(records)

    # A verdict given on one connection is seen on every other.
    tid = records[3]["transaction_id"]
    verdict = {"transaction_id": tid, "label": "fraud", "analyst": "ann"}
    assert _post(url, "/v1/feedback", verdict).json()["stored"] == 1
    for _ in range(8):
        seen = _get(url, f"/v1/decisions/{tid}").json()
        assert seen["label"] == "fraud" and seen["decision"]["score"] == got[3]["score"]
