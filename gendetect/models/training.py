"""Training loop: Lightning Trainer with seeds, early stopping on validation
loss, optional checkpoints, and a per-epoch loss history for MLflow."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, IterableDataset


@dataclass
class TrainingConfig:
    max_epochs: int = 20
    batch_size: int = 256
    patience: int = 3
    seed: int = 0
    accelerator: str = "auto"
    checkpoint_dir: str | None = None


@dataclass
class TrainingResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    epochs_run: int = 0
    checkpoint_path: str | None = None


class _ShuffledBatches(IterableDataset):
    """Whole mini-batches sliced from one tensor.

    A TensorDataset with a DataLoader collates row by row, which dominates the
    step time of small MLPs; slicing a permuted index is ~100x cheaper. The
    permutation is seeded per epoch, so training is reproducible.
    """

    def __init__(self, x: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        self.x, self.batch_size, self.shuffle, self.seed = x, batch_size, shuffle, seed
        self._epoch = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        n = len(self.x)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self._epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        self._epoch += 1
        for start in range(0, n, self.batch_size):
            yield self.x[order[start : start + self.batch_size]]

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size


class _History(Callback):
    """Keeps per-epoch losses and the best weights (in memory, no disk round trip)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val = float("inf")
        self.best_epoch = -1

    # on_train_epoch_end runs after the epoch's validation, when both the
    # epoch's training and validation losses are in callback_metrics.
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"epoch": float(trainer.current_epoch), **metrics}
        self.rows.append(row)
        val = metrics.get("val_loss", float("inf"))
        if val < self.best_val:
            self.best_val, self.best_epoch = val, trainer.current_epoch
            self.best_state = copy.deepcopy(module.state_dict())


def fit_module(
    module: pl.LightningModule,
    x_train: np.ndarray,
    x_val: np.ndarray,
    config: TrainingConfig,
) -> TrainingResult:
    """Train `module` and leave it holding the weights of its best validation epoch."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    train = _ShuffledBatches(
        torch.as_tensor(x_train, dtype=torch.float32),
        config.batch_size,
        shuffle=True,
        seed=config.seed,
    )
    val = _ShuffledBatches(
        torch.as_tensor(x_val, dtype=torch.float32), 4096, shuffle=False, seed=config.seed
    )
    history = _History()
    callbacks: list[Callback] = [
        history,
        EarlyStopping(monitor="val_loss", patience=config.patience, mode="min"),
    ]
    checkpoint: ModelCheckpoint | None = None
    if config.checkpoint_dir:
        checkpoint = ModelCheckpoint(
            dirpath=config.checkpoint_dir, monitor="val_loss", save_top_k=1, filename="best-{epoch}"
        )
        callbacks.append(checkpoint)
    quiet = _quiet_lightning()
    quiet.__enter__()
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=1,
        deterministic=True,
        logger=False,
        enable_checkpointing=checkpoint is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    try:
        trainer.fit(module, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None))
    finally:
        quiet.__exit__(None, None, None)
    seconds = time.perf_counter() - started
    if history.best_state is not None:
        module.load_state_dict(history.best_state)
    module.eval()
    module.cpu()
    return TrainingResult(
        history=history.rows,
        best_epoch=history.best_epoch,
        best_val_loss=history.best_val,
        seconds=seconds,
        epochs_run=trainer.current_epoch,
        checkpoint_path=checkpoint.best_model_path if checkpoint else None,
    )


class _quiet_lightning:
    """Lightning prints hardware banners and data-loader tips on every fit."""

    def __enter__(self) -> None:
        self._levels: dict[str, int] = {}
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", module="pytorch_lightning")
        warnings.filterwarnings("ignore", module="lightning_fabric")

    def __exit__(self, *exc: Any) -> None:
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
