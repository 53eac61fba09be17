"""Lightning wiring of the VAE: one optimiser, the negative ELBO as training
and validation loss (validation drives early stopping)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from gendetect.models.components import GenerativeModule
from gendetect.models.vae.loss import vae_loss
from gendetect.models.vae.torch_model import VAENetwork

if TYPE_CHECKING:
    from gendetect.params import DetectorParams


class VAE(GenerativeModule):
    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int] = (64, 32),
        latent_dim: int = 8,
        beta: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        dropout: float = 0.0,
        learned_variance: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = VAENetwork(
            n_features,
            hidden=hidden,
            latent_dim=latent_dim,
            dropout=dropout,
            learned_variance=learned_variance,
        )

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = vae_loss(self.model, batch, self.hparams.beta)
        self.log_epoch("train_loss", loss, len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log_epoch("val_loss", vae_loss(self.model, batch, self.hparams.beta), len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


def _common(params: DetectorParams) -> dict[str, object]:
    return {
        "hidden": params.hidden,
        "latent_dim": params.latent_dim,
        "beta": params.beta,
        "lr": params.lr,
        "weight_decay": params.weight_decay,
    }


def build_vae(n_features: int, params: DetectorParams) -> VAE:
    """Registry entry "vae": scored by its Gaussian NLL when learned_variance is on."""
    return VAE(n_features, learned_variance=params.learned_variance, **_common(params))  # type: ignore[arg-type]


def build_vae_mse(n_features: int, params: DetectorParams) -> VAE:
    """Registry entry "vae_mse": a fixed decoder variance, scored by its squared error."""
    return VAE(n_features, learned_variance=False, **_common(params))  # type: ignore[arg-type]
