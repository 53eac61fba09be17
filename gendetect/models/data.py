"""Training and validation batches as standard torch DataLoaders.

A map-style dataset with a BatchSampler, so Lightning can put a
DistributedSampler under it when training runs on several devices or nodes
(each rank then sees its own shard). Two details keep it fast and
reproducible:
- the dataset answers a whole batch of indices with one tensor index
  (`__getitems__`) and the collate step passes it through: collating row by
  row costs more than a small MLP's step;
- the shuffling sampler draws each epoch's permutation from (seed, epoch)
  alone, as the loader before it did, so a fit does not depend on what ran
  before it in the process and keeps the scores of earlier versions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

# Validation is forward passes only: large batches, fewer Python round trips.
VALIDATION_BATCH_SIZE = 4096


class RowDataset(TensorDataset):
    """Rows of one float matrix; a batch is one index operation."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__(x)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return self.tensors[0][index]

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return self.tensors[0][torch.as_tensor(indices, dtype=torch.long)]


def pass_batch(batch: torch.Tensor) -> torch.Tensor:
    """The collate function: the batch is already one tensor (a module-level
    function, so that spawned DDP workers can pickle the loader)."""
    return batch


class EpochSeededRandomSampler(RandomSampler):
    """A permutation per epoch from seed * 100003 + epoch.

    Lightning calls set_epoch at the start of every epoch (as for a
    DistributedSampler); without it the generator simply moves on.
    """

    def __init__(self, data_source: RowDataset, seed: int) -> None:
        self.seed = seed
        super().__init__(data_source, generator=torch.Generator())
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        assert self.generator is not None
        self.generator.manual_seed(self.seed * 100_003 + epoch)


def make_loader(x: np.ndarray, batch_size: int, *, shuffle: bool, seed: int) -> DataLoader:
    dataset = RowDataset(torch.as_tensor(x, dtype=torch.float32))
    sampler = EpochSeededRandomSampler(dataset, seed) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=False),
        collate_fn=pass_batch,
        num_workers=0,
    )


def train_loader(x: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    return make_loader(x, batch_size, shuffle=True, seed=seed)


def validation_loader(x: np.ndarray) -> DataLoader:
    return make_loader(x, VALIDATION_BATCH_SIZE, shuffle=False, seed=0)
