"""The VAE's training objective: Gaussian NLL of the reconstruction plus a
beta-weighted KL term that keeps the latent space smooth, so that unusual
records reconstruct badly instead of being memorised."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gendetect.models.components import fill_missing, observed_only, squared_error

if TYPE_CHECKING:
    from gendetect.models.vae.torch_model import VAENetwork

# Bounds of the decoder's log-variance: a decoder free to predict a tiny
# variance would make one feature's NLL explode, a huge one would ignore it.
LOGVAR_MIN, LOGVAR_MAX = -6.0, 6.0


def gaussian_nll_terms(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-feature Gaussian NLL without its constant (n, d)."""
    return 0.5 * (squared_error(x, mean) * torch.exp(-logvar) + logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-record KL(q(z|x) || N(0, I))."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def vae_loss(net: VAENetwork, x: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative ELBO (beta-weighted), averaged over the batch; one sample of z.
    Gaps (NaN) are imputed at the encoder and left out of the likelihood:
    the decoder is never trained to reproduce an imputed value."""
    x, observed = fill_missing(x)
    mu, logvar = net.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    mean, dec_logvar = net.decode(z)
    recon = observed_only(gaussian_nll_terms(x, mean, dec_logvar), observed).sum(dim=1)
    return (recon + beta * kl_divergence(mu, logvar)).mean()
