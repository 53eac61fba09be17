"""The DDP rank gate (training.ranks): rank 0 runs the job and returns its
exit code; an extra rank trains its shard only and exits 0."""

from __future__ import annotations

import pytest

from training.ranks import on_rank_zero

_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK")


@pytest.fixture
def clean_ranks(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_rank_zero_runs_the_job_only(clean_ranks: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    code = on_rank_zero(lambda: ran.append("job") or 3, shard=lambda: ran.append("shard"))
    assert (code, ran) == (3, ["job"])


def test_an_extra_rank_trains_its_shard_and_exits_zero(clean_ranks: pytest.MonkeyPatch) -> None:
    clean_ranks.setenv("LOCAL_RANK", "1")
    ran: list[str] = []
    code = on_rank_zero(lambda: ran.append("job") or 3, shard=lambda: ran.append("shard"))
    assert (code, ran) == (0, ["shard"])
