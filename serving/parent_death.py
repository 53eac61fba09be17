"""Helper processes that end with the process that started them.

A worker (serving.workers) or the registry poll's helper
(serving.registry_poll) whose parent is killed, even by SIGKILL, would
otherwise live on as an orphan: a worker still serving the port, a helper
blocked forever on its queue. On Linux the kernel sends them SIGTERM
instead (PR_SET_PDEATHSIG); elsewhere nothing is done.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """Call first thing in the child process."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)
