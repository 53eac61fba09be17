"""The decision audit over HTTP: every decision the API returns is in the
database (single and batch) with keyed hashes and no personal field; a
retry gets the stored decision back even after a model change; a kill -9
under load loses no decision that got a 2xx; audit, verdicts and the queue
survive the restart."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.integration.api_helpers import T0, fresh
from tests.integration.conftest import audit_db, table_rows

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration


def _db_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("gendetect.db*"))


def test_every_decision_is_in_the_audit(server: ServerProcess, client: httpx.Client) -> None:
    customer, terminal = 987_650_001_234, 876_540_009_876
    one = fresh(T0, customer=customer, terminal=terminal)
    single = client.post("/v1/score", json=one).json()
    batch = [fresh(T0 + timedelta(minutes=i), customer=customer) for i in range(5)]
    results = client.post("/v1/score/batch", json={"records": batch}).json()["results"]
    wanted = {r["transaction_id"]: d for r, d in zip([one, *batch], [single, *results],
                                                     strict=True)}
    # Bad input is a 422 and writes nothing (single, and a batch with one bad record).
    bad = {**fresh(T0), "amount": -1.0}
    assert client.post("/v1/score", json=bad).status_code == 422
    bad_batch = [fresh(T0), {**fresh(T0), "amount": "x"}]
    assert client.post("/v1/score/batch", json={"records": bad_batch}).status_code == 422
    rows = {r["transaction_id"]: r for r in table_rows(audit_db(server.home), "decisions")
            if r["transaction_id"] in wanted}
    assert set(rows) == set(wanted)
    refused = {bad["transaction_id"], *(r["transaction_id"] for r in bad_batch)}
    assert not refused & {r["transaction_id"] for r in table_rows(audit_db(server.home),
                                                                    "decisions")}
    for tid, got in wanted.items():
        row = rows[tid]
        assert (row["score"], row["risk"], bool(row["is_fraud"]), row["threshold"]) == (
            got["score"], got["risk"], got["is_fraud"], got["threshold"])
        assert row["model_version"] == got["model"]["version"]
        assert row["key_name"] == "default" and row["decided_at"]
    for row in rows.values():
        assert set(json.loads(row["entities"])) == {"customer_id", "terminal_id"}
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics").text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["gendetect_audit_rows_total"] >= len(wanted)
    assert 1 <= values["gendetect_audit_commits_total"] <= values["gendetect_audit_rows_total"]
    data = _db_bytes(server.home)
    for marker in (customer, terminal):
        assert str(marker).encode() not in data  # only keyed hashes at rest


def test_a_retry_gets_the_stored_decision_after_a_model_change(
    server_factory: Any, registered_model: RegisteredFixture
) -> None:
    proc = server_factory(GENDETECT_MODEL_POLL_SECONDS="0")
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        rec = fresh(T0)
        first = c.post("/v1/score", json=rec).json()
        new = registered_model.register_again()
        assert c.post("/v1/model/reload").json()["current"] == new
        retry = c.post("/v1/score", json=rec)
        assert retry.status_code == 200
        assert retry.json() == first  # the old version's decision, exactly
        assert first["model"]["version"] != new
        assert c.post("/v1/score", json=fresh(T0)).json()["model"]["version"] == new
        batch = c.post("/v1/score/batch", json={"records": [rec, fresh(T0)]}).json()
        assert batch["results"][0] == first
        # Other content under that id: 409, and the audit keeps the first.
        r = c.post("/v1/score", json={**rec, "amount": 1.0})
        assert r.status_code == 409
    rows = [r for r in table_rows(audit_db(proc.home), "decisions")
            if r["transaction_id"] == rec["transaction_id"]]
    assert len(rows) == 1 and rows[0]["score"] == first["score"]


def test_kill_9_under_load_loses_no_acknowledged_decision(server_factory: Any) -> None:
    proc = server_factory()
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        flagged = fresh(T0, amount=999_999.0)
        assert c.post("/v1/score", json=flagged).json()["is_fraud"]
        reviewed = fresh(T0, amount=999_999.0)
        c.post("/v1/score", json=reviewed)
        assert c.post("/v1/feedback", json={"transaction_id": reviewed["transaction_id"],
                                            "label": "fraud", "analyst": "ann"}
                      ).json()["stored"] == 1
    acknowledged: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(batch: bool) -> None:
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            while not stop.is_set():
                records = [fresh(T0) for _ in range(4 if batch else 1)]
                try:
                    r = (c.post("/v1/score/batch", json={"records": records}) if batch
                         else c.post("/v1/score", json=records[0]))
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acknowledged.extend(x["transaction_id"] for x in records)

    threads = [threading.Thread(target=hammer, args=(i % 2 == 1,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.process is not None
    proc.process.send_signal(signal.SIGKILL)  # mid-load, requests in flight
    proc.process.wait()
    proc.process = None
    stop.set()
    for t in threads:
        t.join()
    with lock:
        sent = list(acknowledged)
    assert len(sent) >= 200
    stored = {r["transaction_id"] for r in table_rows(audit_db(proc.home), "decisions")}
    missing = [t for t in sent if t not in stored]
    assert not missing, f"{len(missing)} of {len(sent)} acknowledged decisions lost"
    # After the restart: the audit, the verdict and the queue are all there.
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        got = c.get(f"/v1/decisions/{reviewed['transaction_id']}").json()
        assert got["label"] == "fraud" and got["decision"] is not None
        queue = c.get("/v1/alerts", params={"limit": 500}).json()["alerts"]
        ids = {a["transaction_id"] for a in queue}
        assert flagged["transaction_id"] in ids and reviewed["transaction_id"] not in ids
        assert c.get(f"/v1/decisions/{sent[-1]}").status_code == 200
