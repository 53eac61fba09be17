"""The DDP rank gate, the one place that asks "is this the rank-0 process?".

Lightning's "ddp" strategy starts the extra ranks by running the same
command again. Those train their shard alongside rank 0 and nothing else:
runs, artifacts, the registry and aliases are rank 0's alone, and an extra
rank ends with exit code 0."""

from __future__ import annotations

from collections.abc import Callable

from gendetect.models.training import is_rank_zero_process


def on_rank_zero(job: Callable[[], int], shard: Callable[[], object]) -> int:
    """`job()` (its exit code) on rank 0; elsewhere `shard()` and 0."""
    if is_rank_zero_process():
        return job()
    shard()
    return 0
