"""The two halves of every model, and the contract between them and the detector.

A model is a plain torch network (`GenerativeNetwork`: what is saved in a
bundle and what scores a record) wrapped by a LightningModule
(`GenerativeModule`: losses, optimisers, logging; used only while training).
Keeping the network apart means a bundle's weights are the network's own
state dict, free of training machinery, and a scoring process never needs
the Lightning side.

The detector core asks a network for two things:
- `feature_errors(x)`: per record and feature, how badly x is explained
  (n, d), never negative; the raw material of the score and of the
  explanations. `likelihood_errors` says whether these are already negative
  log-likelihoods on one scale across features (the detector then leaves them
  as they are) or plain errors that it divides by their typical size.
- `extra_score(x)`: an optional per-record score beside the errors (the GAN's
  discriminator), or None.
A new way of scoring (another network's output, a head trained on labels)
adds to this contract rather than to branches in the detector.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn


class GenerativeNetwork(nn.Module):
    """Plain torch side of a model; subclasses define the scoring methods."""

    likelihood_errors: bool = False

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_score(self, x: torch.Tensor) -> torch.Tensor | None:
        return None


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
