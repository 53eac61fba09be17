"""The stale-run rule: which RUNNING runs a job marks FAILED at its start.

Runs are created directly in a real SQLite MLflow store with the owner tags
a job writes, for processes that are alive, gone, zombies, or on hosts this
one cannot see."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gendetect.config import get_settings
from gendetect.tracking import configure, ensure_experiment
from training import runs

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@pytest.fixture
def store(gendetect_home: Path) -> tuple[MlflowClient, str]:
    settings = get_settings()
    return configure(settings), ensure_experiment(settings)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _wait_for_state(pid: int, state: str) -> None:
    for _ in range(200):
        stat = runs._proc_stat(pid)
        if stat is not None and stat[0] == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never reached state {state}")


def _owner(pid: int, *, host: str | None = None, **fingerprint: str) -> dict[str, str]:
    """Owner tags as the job with this pid wrote them, with parts replaced."""
    parts = runs._parse_fingerprint(runs._process_fingerprint(pid))
    parts.update(fingerprint)
    return {
        runs.HOST_TAG: host or runs.owner_tags()[runs.HOST_TAG],
        runs.PID_TAG: str(pid),
        runs.PROCESS_TAG: " ".join(f"{k}={v}" for k, v in parts.items()),
    }


def test_only_runs_whose_job_is_certainly_dead_are_failed(
    store: tuple[MlflowClient, str],
    sleeper: subprocess.Popen[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, experiment = store
    now = int(time.time() * 1000)

    # A process that ran a job and was reaped, and one left as a zombie.
    reaped = subprocess.Popen(["sleep", "60"])
    reaped_tags = _owner(reaped.pid)
    reaped.kill()
    reaped.wait()
    zombie = subprocess.Popen(["sleep", "60"])
    zombie_tags = _owner(zombie.pid)
    zombie.kill()
    _wait_for_state(zombie.pid, "Z")  # killed, not yet waited for

    cases: dict[str, tuple[dict[str, str], int, bool]] = {
        # name: (tags, start time, expected stale)
        "this process": (runs.owner_tags(), now, False),
        "live child": (_owner(sleeper.pid), now, False),
        "reaped": (reaped_tags, now, True),
        "zombie": (zombie_tags, now, True),
        "reused pid": (_owner(sleeper.pid, start="1"), now, True),
        "host rebooted": (_owner(sleeper.pid, boot="another-boot"), now, True),
        "other host, recent": (_owner(1, host="elsewhere"), now - 23 * HOUR_MS, False),
        "other host, old": (_owner(1, host="elsewhere"), now - 25 * HOUR_MS, True),
        "other pid namespace": (_owner(sleeper.pid, pidns="pid:[1]"), now, False),
        "no owner tags, recent": ({}, now - HOUR_MS, False),
        "no owner tags, old": ({}, now - 48 * HOUR_MS, True),
    }
    ids = {}
    for name, (tags, start, _) in cases.items():
        run = client.create_run(experiment, start_time=start, tags=tags, run_name=name)
        ids[name] = run.info.run_id
    finished = client.create_run(experiment, tags=reaped_tags, run_name="finished")
    client.set_terminated(finished.info.run_id, status="FINISHED")

    with caplog.at_level("WARNING", logger="training.runs"):
        failed = runs.fail_stale_runs(get_settings(), max_age_hours=24)
    zombie.wait()

    expected = {ids[name] for name, (_, _, stale) in cases.items() if stale}
    assert set(failed) == expected
    for name, run_id in ids.items():
        run = client.get_run(run_id)
        assert run.info.status == ("FAILED" if run_id in expected else "RUNNING"), name
        if run_id in expected:
            assert run.data.tags[runs.END_REASON_TAG].startswith("stale: "), name
    assert client.get_run(finished.info.run_id).info.status == "FINISHED"
    # One log line per run marked, naming it and why.
    lines = [r.getMessage() for r in caplog.records if "marked FAILED" in r.getMessage()]
    assert len(lines) == len(expected)
    assert any(ids["reaped"] in line and f"process {reaped.pid}" in line for line in lines)
    assert any(
        ids["other host, old"] in line and "25.0 h ago on elsewhere" in line for line in lines
    )
