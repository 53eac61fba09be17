"""Hostile input and faults against the real server: each test reproduces a
defect a tester found (an out-of-range value poisoning an entity, a future
record moving everyone's clock, half-open auth, unbounded bodies, ignored
Content-Type, silent duplicates, a dead Redis, a stale alias, kill -9) and
checks the fixed behaviour over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from gendetect import tracking
from tests.integration.api_helpers import (
    T0,
    _entity_ids,
    assert_same_decision,
    expected,
    fresh,
    offline_windows,
    post_raw,
)
from tests.integration.conftest import MAX_BATCH

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

BAD_VALUES: list[tuple[str, Any]] = [
    ("timestamp", "1677-09-21T00:12:43"),  # the edge of pandas' nanosecond clock
    ("timestamp", "1677-10-01T00:00:00"),  # once scored as null
    ("timestamp", "1969-12-31T23:59:59"),  # before 1970: broke the Redis store
    ("timestamp", "2262-04-12T00:00:00"),
    ("timestamp", "9999-12-31T23:59:59"),
    ("timestamp", "2999-01-01T00:00:00"),  # in nanosecond range, far beyond the clock
    ("transaction_id", 2**63),
    ("transaction_id", "9223372036854775808"),
    ("transaction_id", "12"),  # the document says integer: strings are refused
    ("transaction_id", -1),
    ("customer_id", 2**63),
    ("customer_id", "x" * 65),
    ("customer_id", ""),
    ("terminal_id", 2**64),
]


def _start(server_factory: Any, **env: str) -> ServerProcess:
    proc = server_factory(**env)
    proc.start()
    return proc


@pytest.fixture
def own_server(server_factory: Any) -> Any:
    """Servers with their own home and settings and an API key (the shared
    factory kills them afterwards)."""

    def make(home: Path | None = None, **extra: str) -> ServerProcess:
        return server_factory(home, **{"GENDETECT_API_KEY": "k" * 24, **extra})

    return make


# ------------------------------------------------------------ bad values
@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_out_of_range_values_are_422_and_do_not_poison_the_entity(
    client: httpx.Client, registered_model: RegisteredFixture, field: str, value: Any
) -> None:
    customer, terminal = next(_entity_ids), next(_entity_ids)
    first = fresh(T0, customer=customer, terminal=terminal)
    assert client.post("/v1/score", json=first).status_code == 200
    bad = {**fresh(T0 + timedelta(hours=1), customer=customer, terminal=terminal), field: value}
    r = client.post("/v1/score", json=bad)
    assert r.status_code == 422, r.text
    assert [f["field"] for f in r.json()["error"]["fields"]] == [field]
    # Nothing was recorded: the entity's next record sees only `first`.
    nxt = fresh(T0 + timedelta(hours=2), customer=customer, terminal=terminal)
    got = client.post("/v1/score", json=nxt)
    assert got.status_code == 200, got.text
    windows = offline_windows([first, nxt], registered=registered_model)
    assert_same_decision(got.json(), expected(registered_model, [nxt], windows[-1:])[0])


def test_largest_accepted_values_score_finite(own_server: Any) -> None:
    # A server of its own: the shared one may have seen this id already (the
    # fuzz test sends the document's bounds), and with the audit a stored id
    # with other content is a 409.
    proc = _start(own_server)
    with httpx.Client(base_url=proc.url, headers={"X-API-Key": proc.api_key},
                      timeout=30) as client:
        rec = {**fresh(T0), "transaction_id": 2**63 - 1, "customer_id": 2**63 - 1,
               "terminal_id": "t" * 64, "amount": 1_000_000.0}
        r = client.post("/v1/score", json=rec)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score"] is not None and body["score"] == body["score"]  # finite, not NaN
        assert body["transaction_id"] == 2**63 - 1
        # ... and the same id again with the same content is the same decision.
        again = client.post("/v1/score", json=rec)
        assert again.status_code == 200
        assert again.json() == body


def test_openapi_documents_the_bounds(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    props = doc["components"]["schemas"]["TransactionsRecord"]["properties"]
    tid = props["transaction_id"]
    assert tid["type"] == "integer" and tid["minimum"] == 0 and tid["maximum"] == 2**63 - 1
    string_form = next(s for s in props["customer_id"]["anyOf"] if s["type"] == "string")
    assert string_form["maxLength"] == 64
    # Timestamps: the earliest time and the clock-skew bound that the API
    # enforces, machine-readable and in words.
    timestamp = props["timestamp"]
    assert timestamp["format"] == "date-time"
    assert timestamp["formatMinimum"] == "1970-01-01T00:00:00Z"
    assert timestamp["x-maxClockSkewSeconds"] == 86_400
    assert "not before 1970-01-01T00:00:00Z" in timestamp["description"]
    assert "86400 s ahead of the server clock" in timestamp["description"]
    schemas = doc["components"]["schemas"]
    for path, model in (("/v1/feedback", "VerdictIn"), ("/v1/labels", "LabelIn")):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        many = next(s for s in body["schema"]["anyOf"] if s.get("type") == "array")
        assert (many["minItems"], many["maxItems"]) == (1, MAX_BATCH)
        labelled_at = schemas[model]["properties"]["labelled_at"]
        time_form = next(s for s in labelled_at["anyOf"] if s.get("type") == "string")
        assert time_form["formatMinimum"] == "1970-01-01T00:00:00Z"
        assert "x-maxClockSkewSeconds" in time_form
        assert "before the transaction's own timestamp" in labelled_at["description"]
    assert schemas["LabelIn"]["properties"]["is_fraud"]["type"] == "boolean"


# ------------------------------------------------------------ the clock
def test_a_future_record_does_not_move_the_clock_for_others(
    client: httpx.Client, registered_model: RegisteredFixture
) -> None:
    customer, terminal = next(_entity_ids), next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), customer=customer, terminal=terminal)
               for h in range(3)]
    for rec in history:
        assert client.post("/v1/score", json=rec).status_code == 200
    # A year ahead of the replayed data (still in the server clock's past).
    ahead = fresh(T0 + timedelta(days=365))
    assert client.post("/v1/score", json=ahead).status_code == 200
    labelled_at = (T0 + timedelta(days=1)).isoformat()
    r = client.post("/v1/labels", json=[
        {"transaction_id": rec["transaction_id"], "is_fraud": i == 1, "labelled_at": labelled_at}
        for i, rec in enumerate(history)])
    assert r.json() == {"accepted": 3, "unknown": []}
    later = fresh(T0 + timedelta(days=7, hours=3), customer=customer, terminal=terminal)
    got = client.post("/v1/score", json=later).json()
    windows = offline_windows([*history, later], labels=[0, 1, 0, 0],
                              registered=registered_model)
    assert windows[-1]["customer_nb_tx_30d"] == 4
    assert windows[-1]["terminal_risk_1d"] == pytest.approx(1 / 3)
    assert_same_decision(got, expected(registered_model, [later], windows[-1:])[0])


# --------------------------------------------------- limits and contracts
def test_every_post_has_a_body_limit(server: ServerProcess, client: httpx.Client) -> None:
    huge = b'{"transaction_id": 1, "customer_id": "' + b"x" * (10 * 2**20) + b'"}'
    for path in ("/v1/score", "/v1/labels", "/v1/score/batch", "/v1/model/reload", "/v1/nope"):
        r = post_raw(client, path, huge)
        assert r.status_code == 413, (path, r.status_code)
        assert r.json()["error"]["code"] == "payload_too_large"

    # Chunked (no Content-Length): cut off while streaming.
    def chunks() -> Any:
        for _ in range(200):
            yield b" " * 65536

    r = client.post("/v1/labels", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_non_json_bodies_are_415(client: httpx.Client, content_type: str | None) -> None:
    body = httpx.Request("POST", "http://x", json=fresh()).content
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/v1/score", "/v1/labels"):
        r = client.post(path, content=body, headers=headers)
        if content_type is None:
            # httpx sends no Content-Type for raw content
            assert "content-type" not in r.request.headers
        assert r.status_code == 415, (path, r.text)
        assert r.json()["error"]["code"] == "unsupported_media_type"


def test_duplicate_transaction_ids(client: httpx.Client) -> None:
    rec = fresh(T0)
    first = client.post("/v1/score", json=rec)
    retry = client.post("/v1/score", json=rec)
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    changed = {**rec, "amount": rec["amount"] * 10, "customer_id": next(_entity_ids)}
    r = client.post("/v1/score", json=changed)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "duplicate_transaction"
    assert r.json()["error"]["fields"][0]["field"] == "transaction_id"
    # Within one batch: refused before anything is recorded.
    other = fresh(T0)
    batch = [other, {**other, "amount": 1.0}]
    r = client.post("/v1/score/batch", json={"records": batch})
    assert r.status_code == 409
    assert r.json()["error"]["fields"][0]["field"] == "records[1].transaction_id"
    ok = client.post("/v1/score/batch", json={"records": [other, fresh(T0)]})
    assert ok.status_code == 200


# ------------------------------------------------------------------ auth
def test_an_empty_api_key_is_a_startup_error(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    from tests.integration.conftest import ServerProcess, server_env

    env = server_env(registered_model.settings, tmp_path, GENDETECT_API_KEY="")
    done = subprocess.run(ServerProcess.command(), env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "(GENDETECT_API_KEY): set but empty" in done.stderr
    assert "Traceback" not in done.stderr


SECRET = "s3cret-s3cret-s3cret"  # never in a message


def _start_error(registered_model: RegisteredFixture, home: Path, **env: str) -> str:
    """The one line a start refused by its settings prints (exit 2)."""
    from tests.integration.conftest import ServerProcess, server_env

    full = server_env(registered_model.settings, home, **env)
    # Bounded: the code before this change started these servers, open.
    done = subprocess.run(ServerProcess.command(), env=full, capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and SECRET not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("gendetect serve: error: "), done.stderr
    return errors[0]


@pytest.mark.parametrize(("env", "named"), [
    ({"GENDETECT_API_KEYS": ""}, "(GENDETECT_API_KEYS): set but empty"),
    ({"GENDETECT_API_KEYS": "null"}, "(GENDETECT_API_KEYS): null"),
    ({"GENDETECT_API_KEYS": "{}"}, "(GENDETECT_API_KEYS): names no key"),
    ({"GENDETECT_API_KEYS": '{"ops": {"key": "' + SECRET + '"'},
     "(GENDETECT_API_KEYS): not valid JSON"),
    ({"GENDETECT_API_KEYS": '["' + SECRET + '"]'}, "(GENDETECT_API_KEYS)"),
    ({"GENDETECT_API_KEYS": json.dumps({"ops": {"key": f" {SECRET}", "scopes": ["admin"]}})},
     "'api_keys.ops.key' (GENDETECT_API_KEYS): has leading or trailing whitespace"),
    ({"GENDETECT_API_KEYS": json.dumps({"ops": {"key": f"{SECRET}é", "scopes": ["admin"]}})},
     "'api_keys.ops.key' (GENDETECT_API_KEYS): has characters other than printable ASCII"),
    ({"GENDETECT_API_KEY": f"{SECRET}\t"}, "(GENDETECT_API_KEY): has leading or trailing"),
    ({"GENDETECT_AUTH": "off"}, "(GENDETECT_AUTH)"),
], ids=["keys-empty", "keys-null", "keys-no-key", "keys-bad-json", "keys-a-list",
        "key-with-space", "key-non-ascii", "api-key-with-tab", "auth-unknown"])
def test_empty_null_malformed_or_unusable_keys_stop_the_start(
    registered_model: RegisteredFixture, tmp_path: Path, env: dict[str, str], named: str
) -> None:
    # Before: '' and bad JSON were a 44-line traceback (exit 1); null and {}
    # started the API open; unusable keys started it with a key no client
    # could ever present.
    assert named in _start_error(registered_model, tmp_path, **env)


@pytest.mark.parametrize("typo", [None, "GENDETECT_APIKEY"])
def test_no_key_without_an_explicit_open_setting_stops_the_start(
    registered_model: RegisteredFixture, tmp_path: Path, typo: str | None
) -> None:
    # Before: the API started open, every scope, POST /v1/model/reload 200.
    line = _start_error(registered_model, tmp_path, **({typo: SECRET} if typo else {}))
    assert "no API key configured" in line and "GENDETECT_AUTH=disabled" in line
    if typo:
        assert f"{typo} is not a setting: did you mean GENDETECT_API_KEY?" in line


def test_open_mode_and_keys_together_stop_the_start(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    line = _start_error(registered_model, tmp_path, GENDETECT_AUTH="disabled",
                        GENDETECT_API_KEY=SECRET)
    assert "GENDETECT_AUTH=disabled, but API keys are configured (default)" in line


def test_every_v1_route_needs_the_key(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    v1 = [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if p.startswith("/v1")]
    assert len(v1) >= 5
    for method, path in v1:
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}):
            r = httpx.request(method, f"{server.url}{path}", headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code)


def test_metrics_and_docs_keys_are_settings(own_server: Any) -> None:
    proc = _start(own_server, GENDETECT_METRICS_REQUIRE_KEY="true",
                  GENDETECT_DOCS_REQUIRE_KEY="true")
    key = {"X-API-Key": proc.api_key}
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{proc.url}{path}").status_code == 401, path
        assert httpx.get(f"{proc.url}{path}", headers=key).status_code == 200, path
    assert httpx.get(f"{proc.url}/healthz").status_code == 200


def test_compose_refuses_to_start_without_a_key() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    apis = [s for name, s in compose["services"].items() if name.startswith("api")]
    assert apis
    for service in apis:
        key = service["environment"]["GENDETECT_API_KEY"]
        assert key.startswith("${GENDETECT_API_KEY:?"), key


# ------------------------------------------------------------------ docs
def test_docs_render_from_local_assets(server: ServerProcess) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{server.url}{page}").text
        assert "https://" not in html and "http://" not in html, page
        scripts = [part.split('"')[0] for part in html.split('src="')[1:]]
        assert scripts, page
        for src in scripts:
            r = httpx.get(f"{server.url}{src}")
            assert r.status_code == 200, src
            assert len(r.content) > 100_000, src  # the real bundle, not a stub


# ------------------------------------------------------------ the alias
def test_the_alias_is_followed_without_a_reload_call(
    own_server: Any, registered_model: RegisteredFixture
) -> None:
    proc = _start(own_server, GENDETECT_MODEL_POLL_SECONDS="1")
    key = {"X-API-Key": proc.api_key}
    settings = registered_model.settings
    old = httpx.get(f"{proc.url}/v1/model", headers=key).json()
    assert old["alias"] == "champion"
    new = registered_model.register_again()
    statuses, versions = [], []
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=proc.url, headers=key, timeout=30) as c:
        while time.monotonic() < deadline:
            r = c.post("/v1/score", json=fresh())
            statuses.append(r.status_code)
            versions.append(r.json()["model"]["version"])
            if versions[-1] == new:
                break
        assert versions[-1] == new, "the server did not follow the alias"
        assert set(statuses) == {200}
        info = c.get("/v1/model").json()
        assert info["version"] == new and info["alias"] == "champion"
        # The alias removed: the service keeps serving, and says it no longer holds it.
        client = tracking.configure(settings)
        client.delete_registered_model_alias(settings.model_name, settings.champion_alias)
        try:
            deadline = time.monotonic() + 30
            while c.get("/v1/model").json()["alias"] is not None:
                assert time.monotonic() < deadline, "alias still claimed"
                time.sleep(0.3)
            assert c.post("/v1/score", json=fresh()).status_code == 200
        finally:
            tracking.set_alias(settings, settings.champion_alias, new)


# ----------------------------------------------------------------- redis
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required (scripts/test.sh checks for it)"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def test_redis_down_is_503_and_recovers(own_server: Any, tmp_path: Path) -> None:
    port = _free_port()
    redis_proc = _redis(port, tmp_path)
    try:
        proc = _start(own_server, GENDETECT_STATE_STORE="redis",
                      GENDETECT_REDIS_URL=f"redis://127.0.0.1:{port}/0")
        key = {"X-API-Key": proc.api_key}
        with httpx.Client(base_url=proc.url, headers=key, timeout=30) as c:
            assert c.post("/v1/score", json=fresh()).status_code == 200
            for stop in (signal.SIGSTOP, signal.SIGKILL):  # frozen, then dead
                os.kill(redis_proc.pid, stop)
                for _ in range(3):
                    started = time.monotonic()
                    r = c.post("/v1/score", json=fresh())
                    elapsed = time.monotonic() - started
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "state_unavailable"
                    assert elapsed < 2.0  # bounded by the 0.2 s store timeout, not hanging
                assert c.get("/readyz").status_code == 503
                if stop == signal.SIGSTOP:
                    os.kill(redis_proc.pid, signal.SIGCONT)
                    assert c.post("/v1/score", json=fresh()).status_code == 200
            redis_proc.wait()
            redis_proc = _redis(port, tmp_path)  # back on the same port
            deadline = time.monotonic() + 20
            while c.post("/v1/score", json=fresh()).status_code != 200:
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.2)
            assert c.get("/readyz").status_code == 200
    finally:
        redis_proc.kill()
        redis_proc.wait()


# ---------------------------------------------------------------- kill -9
def test_kill_9_keeps_labels_and_bounds_history_loss(
    own_server: Any, registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    bound = 0.2
    home = tmp_path / "kill9"
    proc = _start(own_server, home=home, GENDETECT_STATE_JOURNAL_FSYNC_SECONDS=str(bound))
    key = {"X-API-Key": proc.api_key}
    customer, terminal = next(_entity_ids), next(_entity_ids)
    history = [fresh(T0 + timedelta(hours=h), customer=customer, terminal=terminal)
               for h in range(3)]
    with httpx.Client(base_url=proc.url, headers=key, timeout=30) as c:
        for rec in history:
            assert c.post("/v1/score", json=rec).status_code == 200
        time.sleep(bound * 3)  # history older than the bound must survive
        r = c.post("/v1/labels", json={"transaction_id": history[1]["transaction_id"],
                                       "is_fraud": True,
                                       "labelled_at": (T0 + timedelta(days=1)).isoformat()})
        assert r.json() == {"accepted": 1, "unknown": []}
    assert proc.process is not None
    proc.process.send_signal(signal.SIGKILL)  # right after the label's 2xx
    proc.process.wait()
    proc.process = None
    proc.start()
    later = fresh(T0 + timedelta(days=7, hours=3), customer=customer, terminal=terminal)
    with httpx.Client(base_url=proc.url, headers=key, timeout=30) as c:
        got = c.post("/v1/score", json=later).json()
    windows = offline_windows([*history, later], labels=[0, 1, 0, 0],
                              registered=registered_model)
    assert windows[-1]["customer_nb_tx_30d"] == 4
    assert windows[-1]["terminal_risk_1d"] == pytest.approx(1 / 3)
    assert_same_decision(got, expected(registered_model, [later], windows[-1:])[0])
    for path in (home / "state").iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path  # owner-only files
            assert str(customer).encode() not in path.read_bytes(), path
