"""The scoring API end to end: the real `gendetect serve` process, a model
from a real MLflow registry, requests over HTTP.

Scores are checked against the bundle loaded in this process, with window
features from the *offline* engine over the same history, so one assertion
covers both the online features (state store) and the scoring path. The
online path must equal `bundle.score_records` exactly (to rounding of the
JSON round trip), not approximately.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest

from gendetect import tracking
from tests.integration.api_helpers import (
    T0,
    _entity_ids,
    assert_same_decision,
    expected,
    fresh,
    offline_windows,
    post_raw,
    record,
)

if TYPE_CHECKING:  # conftest is not importable as a module at run time
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration

# ----------------------------------------------------------------- health
def test_health_and_readiness(server: ServerProcess, registered_model: RegisteredFixture) -> None:
    # The server was started before the model was registered: /readyz said
    # 503 while it waited, /healthz is 200 throughout.
    assert server.statuses[0] == 503
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"]["version"] == registered_model.version


# ---------------------------------------------------------------- scoring
def test_replayed_history_scores_equal_the_bundle(
    server: ServerProcess, client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    """Replay ten days of 60 customers in time order (batches, then single
    records); every decision equals the in-process bundle fed with the
    offline window features of the same history."""
    data = registered_model.data
    start = data["timestamp"].min()
    subset = data[(data["customer_id"] < 60) & (data["timestamp"] < start + pd.Timedelta(days=10))]
    subset = subset.sort_values(["timestamp", "transaction_id"])
    records = [record(row) for _, row in subset.iterrows()]
    windows = offline_windows(records, registered=registered_model)
    assert len(records) > 600
    n_single = 15
    got: list[dict[str, Any]] = []
    for i in range(0, len(records) - n_single, server.max_batch):
        chunk = records[i : min(i + server.max_batch, len(records) - n_single)]
        r = client.post("/v1/score/batch", json={"records": chunk})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["version"] == registered_model.version
        batch_expected = expected(registered_model, chunk, windows[i : i + len(chunk)])
        for g, w in zip(r.json()["results"], batch_expected, strict=True):
            assert_same_decision(g, w)
        got.extend(r.json()["results"])
    for rec, win in zip(records[-n_single:], windows[-n_single:], strict=True):
        r = client.post("/v1/score", json=rec)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["transaction_id"] == rec["transaction_id"]
        assert body["model"] == {"name": "gendetect", "version": registered_model.version}
        assert_same_decision(body, expected(registered_model, [rec], [win])[0])
        got.append(body)
    # Behaviour features mattered: the terminal windows (7-day delay) were
    # populated by the end of the replay.
    assert max(w["terminal_nb_tx_1d"] for w in windows) > 0
    # And batch scoring of the whole frame (offline windows inside
    # score_frame) agrees up to float32 batch-size rounding.
    frame = subset.drop(columns=["is_fraud"]).assign(is_fraud=0)
    batch = registered_model.bundle.score_frame(frame)
    np.testing.assert_allclose([g["score"] for g in got], batch["score"].to_numpy(), rtol=1e-5)


INVALID_CASES: list[tuple[str, dict[str, Any] | None, str]] = [
    ("missing field", {"amount": None}, "amount"),
    ("wrong type", {"amount": "12.5"}, "amount"),
    ("NaN", {"amount": float("nan")}, "amount"),
    ("infinity", {"amount": float("inf")}, "amount"),
    ("minus infinity", {"amount": float("-inf")}, "amount"),
    ("below minimum", {"amount": -1.0}, "amount"),
    ("above maximum", {"amount": 2e6}, "amount"),
    ("unknown extra field", {"merchant_name": "x"}, "merchant_name"),
    ("label is not an input", {"is_fraud": 1}, "is_fraud"),
    ("float entity id", {"customer_id": 1.5}, "customer_id"),
    ("boolean entity id", {"terminal_id": True}, "terminal_id"),
    ("bad timestamp", {"timestamp": "yesterday"}, "timestamp"),
    ("epoch number timestamp", {"timestamp": 1700000000}, "timestamp"),
]


@pytest.mark.parametrize(("case", "change", "field"), INVALID_CASES,
                         ids=[c[0] for c in INVALID_CASES])
def test_invalid_input_is_422_naming_the_field(
    client: httpx.Client, case: str, change: dict[str, Any], field: str
) -> None:
    body = fresh()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    # json.dumps writes NaN / Infinity literals, as some clients do.
    r = post_raw(client, "/v1/score", json.dumps(body))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in [f["field"] for f in error["fields"]]
    assert field in error["message"]
    # The server keeps serving.
    assert client.post("/v1/score", json=fresh()).status_code == 200


def test_a_whole_data_file_row_is_scored_as_the_fields_scoring_reads(
    client: httpx.Client,
) -> None:
    # The simulator's fraud_scenario and the protected customer_age_group are
    # not in the documented record; sent anyway (a whole row), they are
    # ignored unread, whatever their values.
    body = fresh()
    whole = {**body, "fraud_scenario": 7, "customer_age_group": "not a band"}
    r = post_raw(client, "/v1/score", json.dumps(whole))
    assert r.status_code == 200, r.text


def test_malformed_json_is_422(client: httpx.Client) -> None:
    r = post_raw(client, "/v1/score", b'{"amount": 1,')
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    r = post_raw(client, "/v1/score", b"[1, 2]")
    assert r.status_code == 422


def test_batch_limits_and_errors(server: ServerProcess, client: httpx.Client) -> None:
    too_many = [fresh() for _ in range(server.max_batch + 1)]
    r = client.post("/v1/score/batch", json={"records": too_many})
    assert r.status_code == 422, r.text  # the document's maxItems
    assert r.json()["error"]["code"] == "batch_too_large"
    assert r.json()["error"]["fields"][0]["field"] == "records"
    r = client.post("/v1/score/batch", json={"records": []})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "records"
    bad = [fresh() for _ in range(4)]
    bad[2]["amount"] = float("nan")
    r = post_raw(client, "/v1/score/batch", json.dumps({"records": bad}))
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["error"]["fields"]] == ["records[2].amount"]
    full = [fresh() for _ in range(server.max_batch)]
    ok = client.post("/v1/score/batch", json={"records": full})
    assert ok.status_code == 200
    assert len(ok.json()["results"]) == server.max_batch


# ----------------------------------------------------------------- model
def test_model_info(client: httpx.Client, registered_model: RegisteredFixture) -> None:
    info = client.get("/v1/model").json()
    champion = tracking.alias_version(registered_model.settings, "champion")
    assert champion is not None
    assert (info["name"], info["version"], info["alias"]) == ("gendetect", champion.version,
                                                              "champion")
    assert info["run_id"] == champion.run_id
    bundle = registered_model.bundle
    assert info["kind"] == "vae"
    assert info["threshold"] == pytest.approx(bundle.threshold_)
    assert info["alert_rate"] == bundle.alert_rate
    assert info["feature_names"] == bundle.feature_names
    assert [f["name"] for f in info["schema_fields"]] == bundle.schema.field_names
    pii = {f["name"] for f in info["schema_fields"] if f["pii"]}
    assert pii == {"customer_id", "terminal_id"}
    assert info["window_features"] is True
    assert info["trained_at"]


def test_openapi_documents_the_schema_fields(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    body = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    record_schema = doc["components"]["schemas"][name]
    assert record_schema["additionalProperties"] is False
    assert {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount"} <= set(
        record_schema["required"]
    )
    assert record_schema["properties"]["amount"]["maximum"] == 1_000_000
    # Only the fields a client sends (Schema.request_fields).
    assert set(record_schema["properties"]) == {
        "transaction_id", "timestamp", "customer_id", "terminal_id", "amount"}
    assert "/v1/labels" in doc["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_api_key_required_on_v1_only(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v1/score", json=fresh())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(f"{server.url}/v1/score", json=fresh(), headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    assert httpx.get(f"{server.url}/v1/model").status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{server.url}{path}").status_code == 200
    key = {"X-API-Key": server.api_key}
    r = httpx.post(f"{server.url}/v1/score", json=fresh(), headers=key)
    assert r.status_code == 200


def test_metrics_exposition(client: httpx.Client, server: ServerProcess) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/v1/score", json=fresh())
    post_raw(client, "/v1/score", b'{"amount": NaN}')
    text = httpx.get(f"{server.url}/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(metric: str, **labels: str) -> float | None:
        return samples.get((metric, tuple(sorted(labels.items()))))

    for status in ("200", "422"):
        count = value("gendetect_http_requests_total", route="/v1/score", method="POST",
                      status=status)
        assert count is not None and count >= 1
    assert value("gendetect_http_request_duration_seconds_bucket", route="/v1/score",
                 le="+Inf") >= 2
    assert value("gendetect_records_flagged_total") is not None
    version = registered_version(client)
    assert value("gendetect_model_info", name="gendetect", version=version) == 1.0
    # prometheus_client's process collector comes along.
    assert value("process_cpu_seconds_total") is not None


def registered_version(client: httpx.Client) -> str:
    return str(client.get("/v1/model").json()["version"])


def test_logs_never_contain_pii(client: httpx.Client, server: ServerProcess) -> None:
    marker_customer, marker_terminal = 987_654_321_123, 876_543_219_876
    client.post("/v1/score", json=fresh(customer=marker_customer, terminal=marker_terminal))
    body = fresh(customer=marker_customer)
    body["amount"] = float("nan")
    post_raw(client, "/v1/score", json.dumps(body))
    time.sleep(0.2)
    log = server.log()
    assert "/v1/score" in log  # access lines are written...
    assert str(marker_customer) not in log  # ...without record fields
    assert str(marker_terminal) not in log


# ---------------------------------------------------------------- labels
def test_labels_feed_terminal_risk(
    client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    terminal = next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), terminal=terminal) for h in (0, 1, 2)]
    for rec in history:
        assert client.post("/v1/score", json=rec).status_code == 200
    labelled_at = (T0 + timedelta(days=1)).isoformat()
    fraud_id = history[1]["transaction_id"]
    r = client.post("/v1/labels", json={"transaction_id": fraud_id, "is_fraud": True,
                                        "labelled_at": labelled_at})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "unknown": []}
    r = client.post("/v1/labels", json={"transaction_id": 1, "is_fraud": True})
    assert r.status_code == 404
    r = client.post("/v1/labels", json=[
        {"transaction_id": history[0]["transaction_id"], "is_fraud": False,
         "labelled_at": labelled_at},
        {"transaction_id": 2, "is_fraud": False},
    ])
    assert r.json() == {"accepted": 1, "unknown": [2]}
    r = client.post("/v1/labels", json={"transaction_id": fraud_id, "is_fraud": "yes"})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "is_fraud"
    r = client.post("/v1/labels", json={"transaction_id": fraud_id, "is_fraud": True,
                                        "labelled_at": "0"})  # not read as epoch seconds
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "labelled_at"

    # Seven days later (the label delay) the terminal's 1-day window holds
    # the three transactions, one of them a fraud known since day 1.
    later = fresh(T0 + timedelta(days=7, hours=3), terminal=terminal)
    got = client.post("/v1/score", json=later).json()
    windows = offline_windows([*history, later], labels=[0, 1, 0, 0],
                              registered=registered_model)
    assert windows[-1]["terminal_nb_tx_1d"] == 3
    assert windows[-1]["terminal_risk_1d"] == pytest.approx(1 / 3)
    assert_same_decision(got, expected(registered_model, [later], windows[-1:])[0])


def test_only_registry_uris_are_served(server: ServerProcess, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENDETECT_", "MLFLOW_"))}
    env["GENDETECT_HOME"] = str(tmp_path)
    cmd = [*server.command(), "--model-uri", "runs:/0123456789abcdef/model"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "only registry URIs" in done.stderr

# ------------------------------------------------------------ keep-alive
def test_listener_is_an_explicit_tcp_socket() -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the listener
    says proto == IPPROTO_TCP (accepted sockets inherit it)."""
    import socket

    from serving.server import bind_listener

    sock = bind_listener("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_keep_alive_requests_do_not_wait_for_delayed_acks(client: httpx.Client) -> None:
    """With Nagle on, every keep-alive response after the first would wait
    ~40 ms for the client's delayed ACK (uvicorn issue 3149)."""
    client.post("/v1/score", json=fresh())
    times = []
    for _ in range(30):
        started = time.perf_counter()
        assert client.post("/v1/score", json=fresh()).status_code == 200
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.02, times


# ----------------------------------------------------------- hot swap
def test_reload_swaps_the_model_without_dropping_requests(
    server: ServerProcess, client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    old = client.get("/v1/model").json()["version"]
    assert client.post("/v1/model/reload").json()["changed"] is False
    new = registered_model.register_again()
    assert new != old
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[], []]

    def hammer(out: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key},
                          timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/score", json=fresh())
                out.append((r.status_code, r.json().get("model", {}).get("version", "")))

    threads = [threading.Thread(target=hammer, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    time.sleep(0.5)
    r = client.post("/v1/model/reload")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200, r.text
    assert r.json() == {"changed": True, "previous": old, "current": new}
    for out in seen:
        assert out and all(status == 200 for status, _ in out)
        versions = [v for _, v in out]
        # Each client sees the old version, then the new one, never back.
        switch = versions.index(new) if new in versions else len(versions)
        assert set(versions[:switch]) <= {old}
        assert set(versions[switch:]) == {new}
    assert client.get("/v1/model").json()["version"] == new
    assert httpx.get(f"{server.url}/readyz").json()["model"]["version"] == new


# ---------------------------------------------------------- fast path off
def test_fastapi_routes_answer_like_the_fast_path(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    """The scoring routes are normally answered by serving.fastpath; the
    FastAPI routes behind it run the same service and must answer the same."""
    from fastapi.testclient import TestClient

    from serving.main import create_app

    settings = registered_model.settings.model_copy(update={
        "home": tmp_path, "auth": "disabled", "api_key": None, "api_keys": {}})
    answers = []
    rec = fresh()
    bad = {**fresh(), "amount": float("nan")}
    for fast_path in (True, False):
        (tmp_path / str(fast_path)).mkdir()
        app = create_app(settings.model_copy(update={"home": tmp_path / str(fast_path)}),
                         fast_path=fast_path)
        with TestClient(app) as c:
            deadline = time.monotonic() + 60
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            one = c.post("/v1/score", json=rec)
            batch = c.post("/v1/score/batch", json={"records": [rec, fresh()]})
            invalid = post_raw(c, "/v1/score", json.dumps(bad))
            answers.append((one.status_code, one.json(), batch.status_code,
                            invalid.status_code, invalid.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200 and answers[0][3] == 422


# ------------------------------------------------------------------ redis
REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own; cleared after


def test_replicas_share_behaviour_state_through_redis(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    """Two API instances on one Redis store: a customer's history recorded
    through one continues on the other (stateless replicas)."""
    import redis
    from fastapi.testclient import TestClient

    from gendetect.features.state import RedisStateStore
    from serving.main import create_app

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL} (scripts/test.sh starts one)")
    settings = registered_model.settings.model_copy(
        update={"home": tmp_path, "auth": "disabled", "api_key": None, "api_keys": {},
                "state_store": "redis", "redis_url": REDIS_URL})
    customer, terminal = next(_entity_ids), next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), customer=customer, terminal=terminal)
               for h in range(4)]
    try:
        with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
            for c in (a, b):
                deadline = time.monotonic() + 60
                while c.get("/readyz").status_code != 200:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert a.post("/v1/score/batch", json={"records": history[:3]}).status_code == 200
            got = b.post("/v1/score", json=history[3]).json()
    finally:
        RedisStateStore(url=REDIS_URL).clear()
    windows = offline_windows(history, registered=registered_model)
    assert windows[-1]["customer_nb_tx_1d"] == 4
    assert_same_decision(got, expected(registered_model, history[3:], windows[-1:])[0])

# ------------------------------------------------------------- restart
def test_restart_keeps_the_online_state(
    server: ServerProcess, registered_model: RegisteredFixture
) -> None:
    """Stop the server (graceful: the memory store writes its snapshot),
    start it again: the customer's window counts continue. Runs last: it
    restarts the shared server."""
    customer, terminal = next(_entity_ids), next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), customer=customer, terminal=terminal)
               for h in range(4)]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key}) as c:
        for rec in history:
            assert c.post("/v1/score", json=rec).status_code == 200
    # uvicorn re-raises the SIGTERM after its graceful shutdown.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
    assert (server.home / "state" / "features.snapshot").is_file()
    server.start()
    nxt = fresh(T0 + timedelta(hours=4), customer=customer, terminal=terminal)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key}) as c:
        got = c.post("/v1/score", json=nxt).json()
    windows = offline_windows([*history, nxt], registered=registered_model)
    assert windows[-1]["customer_nb_tx_1d"] == 5
    want = expected(registered_model, [nxt], windows[-1:])[0]
    assert_same_decision(got, want)
    # The check has teeth: without the history the score would differ.
    alone = expected(registered_model, [nxt], offline_windows([nxt],
                                                               registered=registered_model))[0]
    assert alone["score"] != pytest.approx(want["score"], rel=1e-6)
