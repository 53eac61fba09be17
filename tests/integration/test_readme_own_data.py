"""README's "Your own data" walkthrough, run as written: its shell block is
taken from README.md and run by bash in a fresh folder, with smaller sizes
(fewer customers, one epoch) and a free port substituted; each substitution
must find its text, so the README cannot drift from what is tested.

The real commands run: `gendetect simulate`, `schema infer`, the sed edit,
`schema check`, `train` (a real MLflow store under the test's
GENDETECT_HOME), `serve` in the background, and curl against it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FOREIGN_ENV
from tests.integration.conftest import STORE_ENV

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT_S = 480
SMALL = {
    "--days 30 --customers 1000 --terminals 2000": "--days 30 --customers 150 --terminals 300",
    "max_epochs: 10": "max_epochs: 1",
}
# A record of the default profile, for the run on a table without gaps.
DEFAULT_RECORD = ('{"transaction_id": 900000001, "timestamp": "2024-01-30T14:05:00", '
                  '"customer_id": 17, "terminal_id": 31, "amount": 74.9}')


def walkthrough() -> str:
    section = README.read_text().split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no bash block under '## Your own data'"
    return match.group(1)


def substitute(script: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in script, f"the walkthrough no longer says {old!r}"
        script = script.replace(old, new)
    return script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_walkthrough(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    script = substitute(script, {"8000": str(_free_port())})
    # Stop the background server however the script ends.
    header = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV and k not in STORE_ENV}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        GENDETECT_HOME=str(tmp_path / "home"),
        GENDETECT_TORCH_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    proc = subprocess.Popen(["bash", "-c", header + script], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the walkthrough took over {TIMEOUT_S} s:\n{out}\n{err[-4000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server, if the trap missed it
            os.killpg(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def check_result(tmp_path: Path, result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-4000:]}"
    assert "no column refused" in result.stdout
    edited = yaml.safe_load((tmp_path / "shop.yaml").read_text())
    scenario = next(f for f in edited["fields"] if f["name"] == "fraud_scenario")
    assert scenario["feature"] is False and scenario["required"] is False
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert "risk" in answer, (answer, result.stderr[-4000:])
    assert 0.0 <= answer["risk"] <= 1.0 and isinstance(answer["is_fraud"], bool)
    assert answer["transaction_id"] == 900000001
    return answer


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    result = run_walkthrough(tmp_path, substitute(walkthrough(), SMALL))
    check_result(tmp_path, result)
    # The draft declared the ring's signal: distinct cards per device.
    groups = yaml.safe_load((tmp_path / "shop.yaml").read_text())["aggregates"]
    device = next(g for g in groups if g["key"] == "device_id")
    assert {"kind": "distinct", "of": "card_id"} in device["features"]


def test_the_walkthrough_runs_on_a_table_without_gaps(tmp_path: Path) -> None:
    """The same commands on the default simulated table (no gaps, no
    high-cardinality text), which today's schema loader and pipeline take."""
    script = substitute(walkthrough(), {**SMALL, "--profile rich": "--profile default"})
    script = re.sub(r"-d '\{.*?\}'", f"-d '{DEFAULT_RECORD}'", script, flags=re.S)
    check_result(tmp_path, run_walkthrough(tmp_path, script))
