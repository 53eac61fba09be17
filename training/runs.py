"""How a training job's MLflow runs end, however the job ends.

- Each run records the process that owns it (tags `gendetect.host`,
  `gendetect.pid`, `gendetect.process`: boot id, pid namespace and the
  process start time) when it is created.
- SIGTERM and SIGINT raise `JobInterrupted` in the job; `run_job` marks the
  process's RUNNING runs FAILED and returns 128 + the signal number.
- SIGKILL cannot be caught: the next job (train or retrain) marks stale
  RUNNING runs of the experiment FAILED before it starts its own runs (once
  its input is read), and logs each one.

Stale, i.e. certainly dead: the run was started on this host (same host
name, boot and pid namespace) and its pid is gone, is a zombie, or now
belongs to a process started at another time (a reused pid); or the host
rebooted since. A run whose process cannot be checked (another host or pid
namespace, or no owner tags: started by other tooling) is stale only once
it is older than `jobs.stale_run_hours`, so a live job elsewhere is left
alone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import mlflow
from mlflow import ActiveRun
from mlflow.entities import Run

from gendetect.config import Settings
from gendetect.tracking import configure, ensure_experiment

log = logging.getLogger(__name__)

HOST_TAG = "gendetect.host"
PID_TAG = "gendetect.pid"
PROCESS_TAG = "gendetect.process"
END_REASON_TAG = "gendetect.end_reason"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(BaseException):
    """Raised in the job by SIGTERM/SIGINT. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.run_ids: list[str] = []  # the runs it ended (FAILED) on its way out
        super().__init__(f"interrupted by {self.signal_name}")


# ------------------------------------------------------------- identity
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from /proc, if readable."""
    text = _read(f"/proc/{pid}/stat")
    if text is None or ")" not in text:
        return None
    # The command name (field 2) may hold spaces: fields are counted after it.
    fields = text.rsplit(")", 1)[1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_fingerprint(pid: int) -> str:
    stat = _proc_stat(pid)
    boot = _read("/proc/sys/kernel/random/boot_id") or ""
    return f"boot={boot} pidns={_pid_namespace() or ''} start={stat[1] if stat else ''}"


def _parse_fingerprint(value: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in value.split() if "=" in part)


def owner_tags() -> dict[str, str]:
    """Tags naming this process, set when a job's run is created."""
    pid = os.getpid()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(pid),
        PROCESS_TAG: _process_fingerprint(pid),
    }


# ---------------------------------------------------------- stale runs
def _pid_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc to look closer: it exists
    state, started = stat
    if state in ("Z", "X"):
        return False  # exited, not yet reaped by its parent
    return not start or started == start


def stale_reason(run: Run, *, now_ms: int, max_age_hours: float) -> str | None:
    """Why a RUNNING run's job is certainly dead, or None if it may be alive."""
    tags = run.data.tags
    host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
    recorded = _parse_fingerprint(tags.get(PROCESS_TAG, ""))
    here = _parse_fingerprint(_process_fingerprint(os.getpid()))
    same_host = host == socket.gethostname() and pid.isdigit()
    if same_host and recorded.get("boot") and recorded.get("boot") != here.get("boot"):
        return f"host {host} restarted since the run started"
    if same_host and recorded.get("pidns", "") == here.get("pidns", ""):
        if _pid_alive(int(pid), recorded.get("start", "")):
            return None
        return f"its process {pid} on {host} is gone"
    age_hours = (now_ms - (run.info.start_time or 0)) / 3.6e6
    if age_hours > max_age_hours:
        where = f"on {host}" if host else "by an unknown process"
        return f"started {age_hours:.1f} h ago {where} (limit {max_age_hours:g} h)"
    return None


def fail_stale_runs(settings: Settings, *, max_age_hours: float) -> list[str]:
    """Mark the experiment's stale RUNNING runs FAILED (see the module doc);
    returns their ids."""
    client = configure(settings)
    experiment_id = ensure_experiment(settings)
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    now_ms = int(time.time() * 1000)
    failed = []
    for run in running:
        reason = stale_reason(run, now_ms=now_ms, max_age_hours=max_age_hours)
        if reason is None:
            continue
        client.set_tag(run.info.run_id, END_REASON_TAG, f"stale: {reason}")
        client.set_terminated(run.info.run_id, status="FAILED")
        log.warning(
            "run %s (%s) was left RUNNING but %s: marked FAILED",
            run.info.run_id,
            run.info.run_name,
            reason,
        )
        failed.append(run.info.run_id)
    return failed


def fail_own_runs(settings: Settings, reason: str) -> list[str]:
    """Mark this process's RUNNING runs FAILED (after an interrupt)."""
    client = configure(settings)
    experiment_id = ensure_experiment(settings)
    tags = owner_tags()
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"attributes.status = 'RUNNING' and tags.`{PID_TAG}` = '{tags[PID_TAG]}'"),
    )
    failed = []
    for run in runs:
        if run.data.tags.get(PROCESS_TAG) != tags[PROCESS_TAG]:
            continue  # same pid number, another process (e.g. another host)
        client.set_tag(run.info.run_id, END_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        failed.append(run.info.run_id)
    return failed


@contextmanager
def job_run(
    experiment_id: str, run_name: str, tags: dict[str, str], *, nested: bool = False
) -> Iterator[ActiveRun]:
    """An MLflow run owned by this process (owner tags set at creation, so
    a later job can tell whether it is alive). Any exception ends it FAILED
    (MLflow's own rule); an interrupt also records which signal. `nested`:
    a child of the active run (a retraining's challengers)."""
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags={**tags, **owner_tags()},
        nested=nested,
    ) as run:
        try:
            yield run
        except JobInterrupted as exc:
            mlflow.set_tag(END_REASON_TAG, exc.signal_name)
            exc.run_ids.append(run.info.run_id)
            raise


# -------------------------------------------------------------- signals
@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise JobInterrupted (once: a second signal while
    the job cleans up is ignored, so that the cleanup completes)."""
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise JobInterrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may set handlers (and receives signals).
        yield
        return
    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_job(name: str, settings: Settings, body: Callable[[], int]) -> int:
    """Run a job's body; on SIGTERM/SIGINT mark this process's runs FAILED,
    say so in one line and return 128 + the signal number. (The body calls
    `fail_stale_runs` once its input is read and valid: a bad input is
    reported without touching the store.)"""
    with signals_interrupt():
        try:
            return body()
        except JobInterrupted as exc:
            # Runs the interrupt did not pass through (e.g. one being created).
            failed = exc.run_ids + fail_own_runs(settings, exc.signal_name)
            runs = ", ".join(failed) or "none was running"
            print(f"gendetect {name}: {exc}; run(s) marked FAILED: {runs}", file=sys.stderr)
            return 128 + exc.signum


def set_threads() -> None:
    """One intra-op torch thread: small MLPs are fastest that way and do not
    fight other processes for cores."""
    import torch

    torch.set_num_threads(1)
