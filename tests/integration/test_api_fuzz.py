"""Schemathesis against the real server: generated requests over every
operation of the OpenAPI document, valid and invalid. No response may be a
server error, and every response must match the document (status code,
content type, body schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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


@pytest.fixture
def fuzz_server(registered_model: RegisteredFixture, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: the generated records (ids 0, 1, 2**63-1, ...) go to
    its own state and audit, never to the shared server's."""
    from tests.integration.conftest import API_KEY, ServerProcess, server_env

    home = tmp_path / "fuzz-home"
    env = server_env(registered_model.settings, home, GENDETECT_API_KEY=API_KEY,
                     GENDETECT_MAX_BATCH_SIZE="50", GENDETECT_STATE_SNAPSHOT_SECONDS="3600")
    proc = ServerProcess(home, env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_generated_requests_never_break_the_server_or_the_document(
    fuzz_server: ServerProcess, tmp_path: Path
) -> None:
    server = fuzz_server
    report = tmp_path / "report.ndjson"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run",
        f"{server.url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", EXAMPLES,
        "--seed", SEED,
        "--workers", "2",
        "--max-time", SECONDS,
        "--request-timeout", "10",
        "--suppress-health-check", "all",
        "-H", f"X-API-Key: {server.api_key}",
        "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=float(SECONDS) + 340, check=False)
    output = done.stdout + done.stderr
    cases = _count_cases(report)
    assert done.returncode == 0, output[-6000:]
    assert cases >= MIN_CASES, f"only {cases} generated cases:\n{output[-3000:]}"


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
