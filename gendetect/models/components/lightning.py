"""The Lightning side of every model (training only): a LightningModule
around the model's plain torch network (base.GenerativeNetwork)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from gendetect.models.components.base import GenerativeNetwork


class GenerativeModule(pl.LightningModule):
    """Lightning wiring around `self.model`, a GenerativeNetwork."""

    model: GenerativeNetwork
    # True where some parameters get no gradient in some backward passes (the
    # GAN's two optimisers): DDP must then look for unused parameters, or it
    # stops at the first step (training.py picks the matching strategy).
    ddp_find_unused_parameters: bool = False

    def log_epoch(self, name: str, value: torch.Tensor, batch_size: int) -> None:
        """An epoch mean. sync_dist: under DDP each rank sees its own shard, and
        early stopping and the best-epoch choice must agree on every rank (a
        no-op in a single process)."""
        self.log(name, value, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)

    def after_fit(self, x_train: np.ndarray, seed: int) -> None:
        """Training done outside the Lightning loop once the fit has ended
        (the best weights restored, on the CPU); nothing by default."""
