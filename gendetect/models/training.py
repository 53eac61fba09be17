"""One training run: a Lightning Trainer with seeds, early stopping on the
validation loss, optional checkpoints, a per-epoch loss history for MLflow,
and the hardware settings (accelerator, devices, strategy, num_nodes).

Scaling out: the loaders are standard DataLoaders (models/data.py), so with
`strategy="ddp"` and `devices`/`num_nodes` > 1 Lightning shards the training
rows with a DistributedSampler and averages gradients across processes; the
logged losses are averaged across ranks (GenerativeModule.log_epoch), so
early stopping and the best epoch agree everywhere. Only rank 0's result is
meant to be used: with "ddp" the caller's process is rank 0 and trains its
module in place; Lightning starts the other ranks by running the caller's
script again, and in those `TrainingResult.global_rank` is not 0 (callers
that save or register a model check `is_global_zero`; a job that does work
before training, such as opening an MLflow run, checks
`is_rank_zero_process()` first). With the spawning strategies the weights and
history come back from rank 0 into the caller's module (callbacks.BestWeights).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint

from gendetect.models.callbacks import BestWeights, EpochProgress
from gendetect.models.data import train_loader, validation_loader
from gendetect.models.settings import TrainerSettings, TrainingResult


def fit_module(
    module: pl.LightningModule,
    x_train: np.ndarray,
    x_val: np.ndarray,
    config: TrainerSettings,
) -> TrainingResult:
    """Train `module` in place and leave it holding the weights of its best
    validation epoch, in eval mode, on the CPU (where the detector scores)."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    train = train_loader(x_train, config.batch_size, config.seed)
    val = validation_loader(x_val)
    history = BestWeights()
    callbacks: list[Callback] = [
        history,
        EarlyStopping(monitor="val_loss", patience=config.patience, mode="min"),
    ]
    if config.progress:
        callbacks.append(EpochProgress(config.name))
    checkpoint: ModelCheckpoint | None = None
    if config.checkpoint_dir:
        checkpoint = ModelCheckpoint(
            dirpath=config.checkpoint_dir, monitor="val_loss", save_top_k=1, filename="best-{epoch}"
        )
        callbacks.append(checkpoint)
    with _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=config.max_epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=_strategy_for(module, config.strategy),
            num_nodes=config.num_nodes,
            deterministic=True,
            logger=False,
            enable_checkpointing=checkpoint is not None,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            num_sanity_val_steps=0,
        )
        started = time.perf_counter()
        trainer.fit(module, train, val)
        seconds = time.perf_counter() - started
    history.recover(trainer)
    module.eval()
    module.cpu()
    return TrainingResult(
        history=history.rows,
        best_epoch=history.best_epoch,
        best_val_loss=history.best_val,
        seconds=seconds,
        epochs_run=max(trainer.current_epoch, len(history.rows)),
        checkpoint_path=checkpoint.best_model_path if checkpoint else None,
        global_rank=trainer.global_rank,
    )


# Global rank variables of the launchers: torchrun, SLURM, LSF.
_GLOBAL_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_rank_zero_process() -> bool:
    """Whether this process is (or will be) global rank 0, from the
    environment alone, so it can be asked before any Trainer exists.

    Under "ddp" Lightning runs the caller's command again for the other
    ranks, with LOCAL_RANK (and NODE_RANK on other machines) set; torchrun
    and SLURM set a global rank. A plain process has none of these.
    """
    for name in _GLOBAL_RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name]) == 0
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _strategy_for(module: pl.LightningModule, strategy: str) -> str:
    """The DDP variant that finds unused parameters, for modules that need it:
    "ddp" -> "ddp_find_unused_parameters_true" (likewise ddp_spawn, ddp_fork,
    ddp_notebook). Other strategies and explicit variants pass unchanged."""
    if not getattr(module, "ddp_find_unused_parameters", False):
        return strategy
    if strategy in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"):
        return f"{strategy}_find_unused_parameters_true"
    return strategy


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
