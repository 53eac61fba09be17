"""The registry poll, in a process of its own.

Asking the registry which version an alias names is an MLflow client call:
tens of milliseconds of Python (a REST or SQLAlchemy round trip, response
parsing) every `model_poll_seconds`. In a thread of the serving process that
work competes with the event loop for the interpreter lock, and requests
arriving meanwhile wait for it (the tail). One long-lived helper process
(started on the first poll, `spawn`: no fork of a process with threads)
asks instead; the serving process only sends the URI and reads back a name
and a version, and loads a model (in a thread, as before) only when the
version changed: rarely.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from serving.parent_death import end_with_parent
from serving.settings import ServingSettings

log = logging.getLogger("gendetect.serving")


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

    async def resolve(self) -> tuple[str, str]:
        """(name, version) of the configured URI; the registry's errors
        (ModelNotReadyError, ...) are raised as they are."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                # Not an orphan blocked on its queue if this process is killed.
                initializer=end_with_parent)
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
