"""Schemathesis against the real server: generated requests over every
operation of the OpenAPI document, valid and invalid. No response may be a
server error, and every response must match the document (status code,
content type, body schema).

The server runs with scoped keys only (no all-scope key): each operation is
sent the key of its scope (a per-operation header in schemathesis' config),
so the generated requests go through the scoped key checks, and the run
fails if any operation only ever answered 401/403 (it would then have
fuzzed the key check, not the operation).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture, ServerProcess

pytestmark = pytest.mark.integration

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection")
MIN_CASES = 1000
# CI's run is bounded in time; a deeper search on demand, e.g.
# GENDETECT_FUZZ_SEED=7 GENDETECT_FUZZ_SECONDS=600 GENDETECT_FUZZ_EXAMPLES=1000
SEED = os.environ.get("GENDETECT_FUZZ_SEED", "1")
SECONDS = os.environ.get("GENDETECT_FUZZ_SECONDS", "60")
EXAMPLES = os.environ.get("GENDETECT_FUZZ_EXAMPLES", "150")


# Key name -> (secret, scopes, the /v1 paths it is sent to).
SCOPED_KEYS: dict[str, tuple[str, list[str], str]] = {
    "checkout": ("fuzz-score-key-0123456789", ["score"], r"^/v1/score(/batch)?$"),
    "analysts": ("fuzz-review-key-0123456789", ["review", "feedback"],
                 r"^/v1/(feedback|labels|alerts(/stats)?|decisions/[^/]+(/origin)?)$"),
    # /v1/model needs any key, /v1/model/reload the admin scope.
    "ops": ("fuzz-admin-key-0123456789", ["admin"], r"^/v1/model(/reload)?$"),
}


@pytest.fixture
def fuzz_server(registered_model: RegisteredFixture, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: the generated records (ids 0, 1, 2**63-1, ...) go to
    its own state and audit, never to the shared server's."""
    from tests.integration.conftest import ServerProcess, server_env

    keys = {name: {"key": key, "scopes": scopes}
            for name, (key, scopes, _) in SCOPED_KEYS.items()}
    home = tmp_path / "fuzz-home"
    env = server_env(registered_model.settings, home, GENDETECT_API_KEYS=json.dumps(keys),
                     GENDETECT_MAX_BATCH_SIZE="50", GENDETECT_STATE_SNAPSHOT_SECONDS="3600")
    proc = ServerProcess(home, env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _key_config(path: Path) -> Path:
    """schemathesis.toml: each operation's key, by path."""
    lines = []
    for key, _, pattern in SCOPED_KEYS.values():
        lines += ["[[operations]]", f"include-path-regex = {json.dumps(pattern)}",
                  f"headers = {{ \"X-API-Key\" = {json.dumps(key)} }}", ""]
    path.write_text("\n".join(lines))
    return path


def test_generated_requests_never_break_the_server_or_the_document(
    fuzz_server: ServerProcess, tmp_path: Path
) -> None:
    server = fuzz_server
    operations = _v1_operations(server)
    for method, path in operations:  # a new route needs its key here
        assert any(re.match(p, path) for _, _, p in SCOPED_KEYS.values()), (method, path)
    report = tmp_path / "report.ndjson"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(_key_config(tmp_path / "schemathesis.toml")),
        "run",
        f"{server.url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", EXAMPLES,
        "--seed", SEED,
        # One worker: with two threads, hypothesis's lambda descriptions
        # call ast.parse concurrently, which on CPython 3.11 can raise
        # "AST constructor recursion depth mismatch" inside schemathesis
        # (seen under load); the server is what is under test, not that.
        "--workers", "1",
        "--max-time", SECONDS,
        "--request-timeout", "10",
        "--suppress-health-check", "all",
        "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=float(SECONDS) + 340, check=False)
    output = done.stdout + done.stderr
    cases = _count_cases(report)
    assert done.returncode == 0, output[-6000:]
    assert cases >= MIN_CASES, f"only {cases} generated cases:\n{output[-3000:]}"
    # Every operation was answered past the key check at least once.
    statuses = _statuses_by_route(server)
    for method, path in operations:
        seen = statuses.get((method, path), set())
        assert seen - {401, 403}, (method, path, seen)


def _v1_operations(server: ServerProcess) -> list[tuple[str, str]]:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops
            if p.startswith("/v1")]


def _statuses_by_route(server: ServerProcess) -> dict[tuple[str, str], set[int]]:
    """(method, route template) -> statuses answered, from the server's metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found: dict[tuple[str, str], set[int]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gendetect_http_requests_total" and sample.value > 0:
                labels = sample.labels
                found.setdefault((labels["method"], labels["route"]), set()).add(
                    int(labels["status"]))
    return found


def _count_cases(report: Path) -> int:
    """Test cases (requests) that schemathesis sent, from its event log."""
    count = 0
    for line in report.read_text().splitlines():
        event = json.loads(line)
        for name, body in event.items():
            if name == "ScenarioFinished":
                for case in (body.get("recorder") or {}).get("cases", {}).values():
                    count += 1 if case else 0
    return count
