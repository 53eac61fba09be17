"""The registry poll runs in a helper process: the registry's answer (here:
no such model) comes back as the error it is, so that the manager records
it (the alias no longer held) instead of taking it for a broken helper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gendetect.errors import ModelNotReadyError
from serving.registry_poll import HELPER_NICENESS, RegistryPoller
from serving.settings import ServingSettings


def test_the_registrys_answer_comes_back_from_the_helper(tmp_path: Path) -> None:
    settings = ServingSettings(home=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               model_uri="models:/nothing-here@champion")  # type: ignore[call-arg]
    poller = RegistryPoller(settings)
    try:
        with pytest.raises(ModelNotReadyError, match="nothing-here"):
            asyncio.run(poller.resolve())
        assert poller._pool is not None  # the helper stays for the next poll
    finally:
        poller.close()


def test_the_helper_ends_with_a_killed_server(tmp_path: Path) -> None:
    """A server killed with SIGKILL leaves no helper behind, blocked on its
    queue for ever."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import asyncio, sys, time
from serving.registry_poll import HELPER_NICENESS, RegistryPoller
from serving.settings import ServingSettings
poller = RegistryPoller(ServingSettings(home={str(tmp_path)!r},
                        tracking_uri="sqlite:///{tmp_path / 'mlflow.db'}"))
try:
    asyncio.run(poller.resolve())
except Exception:
    pass
print(*poller._pool._processes, flush=True)
time.sleep(600)
"""
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        helper = int(server.stdout.readline().split()[0])
        os.kill(helper, 0)  # alive
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 20
    while True:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.kill(helper, signal.SIGKILL)
            raise AssertionError("the registry helper outlived its server")
        time.sleep(0.1)


def _settings(tmp_path: Path) -> ServingSettings:
    return ServingSettings(home=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           model_uri="models:/nothing-here@champion")  # type: ignore[call-arg]


def test_start_asks_once_and_the_helper_runs_at_a_lower_priority(tmp_path: Path) -> None:
    """The helper's dear first check (imports, the registry client) is paid
    by start(), which swallows the registry's answer; the helper yields the
    CPU to the serving process (niceness raised)."""
    import os

    poller = RegistryPoller(_settings(tmp_path))
    try:
        asyncio.run(poller.start())  # no model registered: no error either
        pid = poller.helper_pid()
        assert pid is not None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + HELPER_NICENESS)
    finally:
        poller.close()


def _children() -> set[int]:
    import os

    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_following_the_registry_starts_the_helper_before_the_first_tick(
        tmp_path: Path) -> None:
    """The helper is up (its first check done) long before the first poll
    is due, instead of being started by that poll amid traffic."""
    from serving.metrics import Metrics
    from serving.model_manager import ModelManager

    manager = ModelManager(_settings(tmp_path), Metrics())
    before = _children()

    async def follow_a_while() -> set[int]:
        task = asyncio.create_task(manager.follow_registry(3600))
        try:
            for _ in range(600):  # the helper's start: seconds on a busy machine
                await asyncio.sleep(0.1)
                if _children() - before:
                    break
            return _children() - before
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(follow_a_while()), "no helper process within 60 s of following"


def test_not_ready_until_the_helpers_first_check_is_done(tmp_path: Path) -> None:
    """/readyz waits for the helper's first check, so that its seconds of
    CPU are spent before traffic, not during it."""
    from serving.metrics import Metrics
    from serving.model_manager import ModelManager

    manager = ModelManager(_settings(tmp_path), Metrics())
    manager.current = object()  # type: ignore[assignment]  # a model is in

    async def follow() -> list[bool]:
        task = asyncio.create_task(manager.follow_registry(3600))
        seen = []
        try:
            for _ in range(600):
                await asyncio.sleep(0.1)
                seen.append(manager.ready)
                if seen[-1]:
                    break
            return seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    seen = asyncio.run(follow())
    assert seen[0] is False, "ready while the helper's first check ran"
    assert seen[-1] is True, "never ready after the helper's first check"
