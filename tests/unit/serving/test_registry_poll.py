"""The registry poll runs in a helper process: the registry's answer (here:
no such model) comes back as the error it is, so that the manager records
it (the alias no longer held) instead of taking it for a broken helper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gendetect.errors import ModelNotReadyError
from serving.registry_poll import RegistryPoller
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
from serving.registry_poll import RegistryPoller
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
