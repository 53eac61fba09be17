"""The VAE as a plain torch network: encoder, latent heads, decoder.

Attribute names are the state-dict keys saved in bundles (encoder.*, to_mu.*,
to_logvar.*, decoder.*): renaming one makes older bundles unloadable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gendetect.models.components import (
    GenerativeNetwork,
    fill_missing,
    mlp,
    observed_only,
    squared_error,
)
from gendetect.models.vae.loss import LOGVAR_MAX, LOGVAR_MIN
from gendetect.models.vae.params import VAEParams


class VAENetwork(GenerativeNetwork):
    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int],
        latent_dim: int,
        dropout: float,
        learned_variance: bool,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        self.learned_variance = learned_variance
        # With a learned variance the errors are Gaussian NLLs: one scale across features.
        self.likelihood_errors = learned_variance
        # Creation order fixes the random initialisation for a seed: keep it.
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
        if not self.learned_variance:
            return out, torch.zeros_like(out)
        mean, logvar = out.chunk(2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @torch.no_grad()
    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Per-feature negative log-likelihood of x under the decoder of the
        posterior mean, shifted to be non-negative (plain squared error
        without a learned variance).

        The posterior mean, not a sample: scores are deterministic. Both
        halves of the Gaussian NLL matter: the error in units of the
        predicted variance, and the log-variance itself. Dropping the latter
        lets a record "explain away" its anomaly: the decoder predicts a wide
        variance for unusual codes, and the scaled error stays small.
        """
        x, observed = fill_missing(x)
        mu, _ = self.encode(x)
        mean, logvar = self.decode(mu)
        err = squared_error(x, mean)
        if not self.learned_variance:
            return observed_only(err, observed)
        # logvar >= LOGVAR_MIN, so each term is >= 0.
        return observed_only(0.5 * (err * torch.exp(-logvar) + logvar - LOGVAR_MIN), observed)

    @torch.no_grad()
    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean at the posterior mean (gaps imputed)."""
        x, _ = fill_missing(x)
        mu, _ = self.encode(x)
        return self.decode(mu)[0]


def build_vae_network(n_features: int, params: VAEParams) -> VAENetwork:
    """Registry entry of "vae" and "vae_mse" for scoring: the plain network."""
    return VAENetwork(
        n_features,
        hidden=params.hidden,
        latent_dim=params.latent_dim,
        dropout=params.dropout,
        learned_variance=params.learned_variance,
    )
