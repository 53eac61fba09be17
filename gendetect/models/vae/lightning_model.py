"""Variational autoencoder for tabular records.

Anomaly score: the reconstruction error of the posterior mean, per feature.
Using the mean (no sampling) makes scores deterministic; the KL term during
training (beta-weighted) keeps the latent space smooth so that unusual
records reconstruct badly instead of being memorised.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from gendetect.models.blocks import mlp, squared_error

LOGVAR_MIN, LOGVAR_MAX = -6.0, 6.0


class VAE(pl.LightningModule):
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
        hidden = list(hidden)
        self.encoder = mlp([n_features, *hidden], dropout=dropout, final_activation=True)
        self.to_mu = nn.Linear(hidden[-1], latent_dim)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)
        # With a learned variance the decoder predicts, per record and feature,
        # how precisely that feature can be reconstructed: features that are
        # noisy for this kind of record count less, precise ones count more.
        n_out = 2 * n_features if learned_variance else n_features
        self.decoder = mlp([latent_dim, *reversed(hidden), n_out], dropout=dropout)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(x | z); log-variance 0 without learned variance."""
        out = self.decoder(z)
        if not self.hparams.learned_variance:
            return out, torch.zeros_like(out)
        mean, logvar = out.chunk(2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def _nll_terms(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean, logvar = self.decode(z)
        return 0.5 * (squared_error(x, mean) * torch.exp(-logvar) + logvar)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self._nll_terms(x, z).sum(dim=1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return (recon + self.hparams.beta * kl).mean()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), on_epoch=True, batch_size=len(batch))

    @torch.no_grad()
    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Per-feature negative log-likelihood of x under the decoder of the
        posterior mean, shifted to be non-negative (plain squared error
        without a learned variance).

        Both halves of the Gaussian NLL matter: the error in units of the
        predicted variance, and the log-variance itself. Dropping the latter
        lets a record "explain away" its anomaly: the decoder predicts a wide
        variance for unusual codes, and the scaled error stays small.
        """
        mu, _ = self.encode(x)
        mean, logvar = self.decode(mu)
        err = squared_error(x, mean)
        if not self.hparams.learned_variance:
            return err
        # logvar >= LOGVAR_MIN, so each term is >= 0.
        return 0.5 * (err * torch.exp(-logvar) + logvar - LOGVAR_MIN)

    @torch.no_grad()
    def extra_score(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
