"""The training run's pieces: loaders Lightning can shard, the hardware
settings, and the per-epoch progress line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from gendetect import make_detector
from gendetect.models.data import (
    VALIDATION_BATCH_SIZE,
    IndexBatchSampler,
    RowDataset,
    train_loader,
    validation_loader,
)
from gendetect.models.gan.lightning_model import GAN
from gendetect.models.gan.params import GANParams
from gendetect.models.training import _strategy_for, is_rank_zero_process
from gendetect.models.vae.lightning_model import VAE
from gendetect.models.vae.params import VAEParams
from gendetect.params import DetectorParams

X = np.arange(1000 * 3, dtype=np.float64).reshape(1000, 3)


def _epoch(loader: torch.utils.data.DataLoader, epoch: int) -> torch.Tensor:
    loader.batch_sampler.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    return torch.cat(list(loader))


def test_train_loader_shuffles_every_row_once_per_epoch_from_seed_and_epoch() -> None:
    loader = train_loader(X, batch_size=64, seed=3)
    batches = list(loader)
    assert [len(b) for b in batches] == [64] * 15 + [40]
    first = _epoch(loader, 0)
    assert sorted(first[:, 0].tolist()) == X[:, 0].tolist()
    # The order depends on (seed, epoch) alone: the permutation the loader
    # before the DataLoader drew, so fits keep the scores of earlier versions.
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(3 * 100_003 + 0))
    torch.testing.assert_close(first, torch.as_tensor(X, dtype=torch.float32)[order])
    second = _epoch(loader, 1)
    assert not torch.equal(first, second)
    torch.testing.assert_close(_epoch(train_loader(X, 64, seed=3), 1), second)


def test_validation_loader_keeps_the_row_order_in_large_batches() -> None:
    rows = np.zeros((VALIDATION_BATCH_SIZE + 5, 2))
    rows[:, 0] = np.arange(len(rows))
    batches = list(validation_loader(rows))
    assert [len(b) for b in batches] == [VALIDATION_BATCH_SIZE, 5]
    assert torch.cat(batches)[:, 0].tolist() == rows[:, 0].tolist()


def test_a_distributed_sampler_in_place_of_ours_shards_the_rows() -> None:
    """What Lightning does under DDP: the same batch-sampler class over a
    DistributedSampler, one per rank."""
    dataset = RowDataset(torch.as_tensor(X, dtype=torch.float32))
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        batches = list(IndexBatchSampler(sampler, batch_size=64, drop_last=False))
        shards.append(torch.cat([dataset.__getitems__(b) for b in batches])[:, 0])
    assert len(shards[0]) == len(shards[1]) == 500
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert sorted(torch.cat(shards).tolist()) == X[:, 0].tolist()


def test_hardware_settings_are_detector_parameters() -> None:
    params = DetectorParams.from_dict(
        {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "num_nodes": 1, "progress": True}
    )
    assert (params.devices, params.strategy, params.num_nodes, params.progress) == (
        2,
        "ddp",
        1,
        True,
    )
    defaults = DetectorParams()
    assert (defaults.accelerator, defaults.devices, defaults.strategy) == ("auto", 1, "auto")
    assert defaults.progress is False


def test_the_gan_gets_the_ddp_variant_that_finds_unused_parameters() -> None:
    gan, vae = GAN(3, GANParams(reference_weight=0.0)), VAE(3, VAEParams())
    assert _strategy_for(gan, "ddp") == "ddp_find_unused_parameters_true"
    assert _strategy_for(gan, "ddp_spawn") == "ddp_spawn_find_unused_parameters_true"
    assert _strategy_for(gan, "auto") == "auto"
    assert _strategy_for(vae, "ddp") == "ddp"


@pytest.mark.parametrize("kind", ["vae", "ensemble"])
def test_progress_logs_one_line_per_epoch_with_both_losses(
    kind: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # stderr is not a terminal here: plain log lines, no bar.
    caplog.set_level(logging.INFO, logger="gendetect.progress")
    x = np.random.default_rng(0).normal(size=(600, 4))
    make_detector(kind, max_epochs=2, patience=5, accelerator="cpu", progress=True).fit(x)
    lines = [r.getMessage() for r in caplog.records if r.name == "gendetect.progress"]
    members = ["vae", "vae_mse"] if kind == "ensemble" else ["vae"]
    assert len(lines) == 2 * len(members)
    for i, line in enumerate(lines):
        member, epoch = members[i // 2], i % 2 + 1
        assert line.startswith(f"{member}: epoch {epoch}/2  train_loss ")
        assert "  val_loss " in line and line.endswith(" s")
    captured = capsys.readouterr()
    assert captured.out == "" and "\x1b[" not in captured.err


def test_no_progress_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    make_detector("vae", max_epochs=2, accelerator="cpu").fit(np.ones((200, 3)))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),  # a rank Lightning's "ddp" started
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # rank 0 of another machine
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),  # torchrun
        ({"SLURM_PROCID": "3"}, False),
    ],
)
def test_rank_zero_is_known_from_the_environment(
    env: dict[str, str], zero: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_rank_zero_process() is zero
