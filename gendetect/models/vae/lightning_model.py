"""Lightning wiring of the VAE (training only): one optimiser, the negative
ELBO as training and validation loss (validation drives early stopping)."""

from __future__ import annotations

import torch

from gendetect.models.components.lightning import GenerativeModule
from gendetect.models.vae.loss import vae_loss
from gendetect.models.vae.params import VAEParams
from gendetect.models.vae.torch_model import build_vae_network


class VAE(GenerativeModule):
    def __init__(self, n_features: int, params: VAEParams) -> None:
        super().__init__()
        self.params = params
        self.model = build_vae_network(n_features, params)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = vae_loss(self.model, batch, self.params.beta)
        self.log_epoch("train_loss", loss, len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log_epoch("val_loss", vae_loss(self.model, batch, self.params.beta), len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.params.lr, weight_decay=self.params.weight_decay
        )


def build_vae_module(n_features: int, params: VAEParams) -> VAE:
    """Registry entry of "vae" and "vae_mse" for training."""
    return VAE(n_features, params)
