"""The registry poll, in a process of its own.

Asking the registry which version an alias names is an MLflow client call:
tens of milliseconds of Python (a REST or SQLAlchemy round trip, response
parsing) every `model_poll_seconds`. In a thread of the serving process that
work competes with the event loop for the interpreter lock, and requests
arriving meanwhile wait for it (the tail). One long-lived helper process
(`spawn`: no fork of a process with threads) asks instead; the serving
process only sends the URI and reads back a name and a version, and loads a
model (in a thread, as before) only when the version changed: rarely.

The helper's first question is by far its dearest: importing MLflow and
opening its store took 4.9 s of CPU on the 2-core development machine, the
later ones 2-3 ms. Asked first at the first poll (30 s after the start, in
the middle of traffic) it took that CPU from the serving process wherever
the two share a core (a one-core container, a pinned benchmark) and every
request of those seconds waited for it. So the helper is started, and asks
once, when the app starts (`start`), while the model loads and before any
traffic; and it runs at a lower CPU priority (`HELPER_NICENESS`), so that
where it still meets the serving process on a core the scheduler lets the
requests go first: a poll is never in a hurry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from serving.parent_death import end_with_parent
from serving.settings import ServingSettings

log = logging.getLogger("gendetect.serving")

# Added to the helper's niceness (os.nice): about a tenth of the serving
# process' CPU share when both want the same core (Linux CFS weights).
HELPER_NICENESS = 10


def _helper_start() -> None:
    """The helper process' initializer."""
    # Not an orphan blocked on its queue if the serving process is killed.
    end_with_parent()
    # Not allowed here: it polls at the usual priority.
    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)


def resolve_version(uri: str, settings: ServingSettings) -> tuple[str, str]:
    """In the helper process: (name, version) the URI points at now."""
    from gendetect import tracking

    ref = tracking.resolve(uri, settings)
    return ref.name, ref.version


class RegistryPoller:
    """Resolves the served URI in a helper process (see the module docstring)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        """Start the helper and ask it once, so that its imports and the
        registry client's set-up are paid now (at the app's start), not at
        the first poll. Never raises: a failure here is the poll's to
        report."""
        try:
            await self.resolve()
        except Exception as exc:
            log.debug("registry helper's first check: %s", exc)

    def helper_pid(self) -> int | None:
        """The helper process' id while it runs (tests)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return next(iter(processes), None)

    async def resolve(self) -> tuple[str, str]:
        """(name, version) of the configured URI; the registry's errors
        (ModelNotReadyError, ...) are raised as they are."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_helper_start)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, resolve_version,
                                              self.settings.resolved_model_uri, self.settings)
        except BrokenProcessPool:
            # The helper died (killed, out of memory): a fresh one next time.
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
