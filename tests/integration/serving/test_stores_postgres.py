"""The API on PostgreSQL: two replicas sharing the real server on
127.0.0.1:5432 (a database of their own), and a PostgreSQL of the test's
own (another port and data folder, run as the `postgres` user since initdb
refuses root) stopped under load and started again: 503
`audit_unavailable` meanwhile, bounded, then recovery without a restart,
and every decision that got a 2xx is in the database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from gendetect.stores.database import normalise_url
from tests.integration.api_helpers import T0, concurrent_posts, fresh
from tests.unit.gendetect.stores.test_stores import (
    create_postgres_database,
    drop_postgres_database,
    postgres_required,
)

pytestmark = pytest.mark.integration

HASH_KEY = "replicas-share-this-hash-key"  # fingerprints and entity hashes must agree


def _ids(url: str, table: str = "decisions") -> set[int]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text(f"SELECT transaction_id FROM {table}")))
    finally:
        engine.dispose()


@pytest.fixture
def database() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def test_replicas_share_audit_verdicts_and_queue(server_factory: Any, database: str) -> None:
    env = {"GENDETECT_DATABASE_URL": database, "GENDETECT_HASH_KEY": HASH_KEY}
    a, b = server_factory(**env), server_factory(**env)
    a.launch()
    b.launch()  # both start on the empty database: one creates the schema
    a.wait_ready()
    b.wait_ready()
    with httpx.Client(base_url=a.url, timeout=30) as ca, \
            httpx.Client(base_url=b.url, timeout=30) as cb:
        rec = fresh(T0, amount=999_999.0)
        first = ca.post("/v1/score", json=rec).json()
        assert first["is_fraud"]
        batch = [fresh(T0) for _ in range(3)]
        assert ca.post("/v1/score/batch", json={"records": batch}).status_code == 200
        # A retry that reaches the other replica gets the stored decision.
        assert cb.post("/v1/score", json=rec).json() == first
        assert cb.post("/v1/score", json={**rec, "amount": 1.0}).status_code == 409
        tid = rec["transaction_id"]
        queue = cb.get("/v1/alerts", params={"limit": 500}).json()["alerts"]
        assert tid in [x["transaction_id"] for x in queue]
        r = cb.post("/v1/feedback", json={"transaction_id": tid, "label": "fraud",
                                          "analyst": "ann"})
        assert r.json()["stored"] == 1
        got = ca.get(f"/v1/decisions/{tid}").json()
        assert got["label"] == "fraud" and got["decision"]["score"] == first["score"]
        queue = ca.get("/v1/alerts", params={"limit": 500}).json()["alerts"]
        assert tid not in [x["transaction_id"] for x in queue]
    assert {tid, *(x["transaction_id"] for x in batch)} <= _ids(database)
    assert "database schema created" in a.log() + b.log()


def test_a_locked_verdicts_table_is_a_bounded_503_and_nothing_is_stored_later(
    server_factory: Any, database: str
) -> None:
    """GENDETECT_DATABASE_TIMEOUT_SECONDS bounds a verdict's whole wait on
    PostgreSQL too: the verdicts table locked by another session, and more
    requests than worker threads and pooled connections. Each answers 503
    within the setting (plus slack for a loaded machine, far below a second
    timeout); none is stored once the lock is gone."""
    timeout = 1.0
    proc = server_factory(GENDETECT_DATABASE_URL=database, GENDETECT_HASH_KEY=HASH_KEY,
                          GENDETECT_DATABASE_TIMEOUT_SECONDS=str(timeout))
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        rec = fresh(T0)
        assert c.post("/v1/score", json=rec).status_code == 200
        tid = rec["transaction_id"]
        holder = create_engine(normalise_url(database))
        try:
            with holder.connect() as conn, conn.begin():
                conn.execute(text("LOCK TABLE verdicts IN ACCESS EXCLUSIVE MODE"))
                answers = concurrent_posts(proc.url, "/v1/feedback", [
                    {"transaction_id": tid, "label": "fraud", "analyst": f"a{i}"}
                    for i in range(60)])
        finally:
            holder.dispose()
        assert {(status, code) for status, code, _ in answers} == {
            (503, "database_unavailable")}
        slowest = max(elapsed for *_, elapsed in answers)
        assert slowest < timeout + 1.5, slowest
        time.sleep(timeout + 1.5)  # what a thread left behind would have committed by now
        assert _ids(database, "verdicts") == set()
        r = c.post("/v1/feedback", json={"transaction_id": tid, "label": "fraud",
                                         "analyst": "ann"})
        assert r.status_code == 200 and r.json()["stored"] == 1


def test_review_reads_of_a_locked_table_answer_within_the_timeout(
    server_factory: Any, database: str
) -> None:
    """The review queue and a decision's history wait on the database no
    longer than GENDETECT_DATABASE_TIMEOUT_SECONDS either (they waited three
    times that): the decisions table locked by another session."""
    timeout = 1.0
    proc = server_factory(GENDETECT_DATABASE_URL=database, GENDETECT_HASH_KEY=HASH_KEY,
                          GENDETECT_DATABASE_TIMEOUT_SECONDS=str(timeout))
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        rec = fresh(T0)
        assert c.post("/v1/score", json=rec).status_code == 200
        holder = create_engine(normalise_url(database))
        try:
            with holder.connect() as conn, conn.begin():
                conn.execute(text("LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE"))
                for path in ("/v1/alerts", f"/v1/decisions/{rec['transaction_id']}"):
                    started = time.monotonic()
                    r = c.get(path)
                    elapsed = time.monotonic() - started
                    assert r.status_code == 503, (path, r.text)
                    assert r.json()["error"]["code"] == "database_unavailable"
                    assert elapsed < timeout + 1.0, (path, elapsed)
        finally:
            holder.dispose()
        assert c.get(f"/v1/decisions/{rec['transaction_id']}").status_code == 200


# ------------------------------------------------- a PostgreSQL of our own
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnPostgres:
    """initdb + pg_ctl in a temporary folder, as the postgres user."""

    BIN = Path("/usr/local/bin")

    def __init__(self) -> None:
        if not (self.BIN / "initdb").exists():
            message = "PostgreSQL server binaries not found in /usr/local/bin"
            if postgres_required():
                pytest.fail(message)
            pytest.skip(message)
        self.folder = Path(tempfile.mkdtemp(prefix="gendetect-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.BIN / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def test_database_down_under_load_is_503_then_recovers(
    server_factory: Any, own_postgres: OwnPostgres
) -> None:
    proc = server_factory(GENDETECT_DATABASE_URL=own_postgres.url,
                          GENDETECT_DATABASE_TIMEOUT_SECONDS="1")
    proc.start()
    outcomes: list[tuple[float, int, str, list[int], float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(batch: bool) -> None:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            while not stop.is_set():
                records = [fresh(T0) for _ in range(3 if batch else 1)]
                started = time.monotonic()
                r = (c.post("/v1/score/batch", json={"records": records}) if batch
                     else c.post("/v1/score", json=records[0]))
                code = r.json().get("error", {}).get("code", "") if r.status_code != 200 else ""
                with lock:
                    outcomes.append((started, r.status_code, code,
                                     [x["transaction_id"] for x in records],
                                     time.monotonic() - started))

    def wait_for(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if predicate(list(outcomes)):
                    return
            time.sleep(0.05)
        raise AssertionError(f"{what} within {timeout} s")

    threads = [threading.Thread(target=hammer, args=(i == 0,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda o: sum(s == 200 for _, s, *_ in o) >= 50, 30, "50 answers")
        own_postgres.stop("fast")
        down_at = time.monotonic()
        wait_for(lambda o: sum(s == 503 and t > down_at for t, s, *_ in o) >= 10, 30,
                 "503s while the database is down")
        assert httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 503
        own_postgres.start()
        up_at = time.monotonic()
        wait_for(lambda o: sum(s == 200 and t > up_at for t, s, *_ in o) >= 20, 30,
                 "recovery after the database came back")
        assert httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    while_down = [o for o in outcomes if o[1] != 200 and o[0] > down_at]
    assert {code for _, _, code, _, _ in while_down} == {"audit_unavailable"}
    assert {s for _, s, *_ in while_down} == {503}
    # Bounded: the setting (1 s) plus a connection attempt, not a hang.
    assert max(elapsed for *_, elapsed in while_down) < 5.0
    acknowledged = [tid for _, s, _, tids, _ in outcomes if s == 200 for tid in tids]
    stored = _ids(own_postgres.url)
    assert not [t for t in acknowledged if t not in stored]
    assert len(acknowledged) >= 70
