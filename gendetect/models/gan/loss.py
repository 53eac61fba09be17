"""The GAN's objectives.

The non-saturating GAN loss with spectral normalisation on the
discriminator and an R1 gradient penalty on real records. Spectral norm
bounds the discriminator's Lipschitz constant and R1 keeps it from growing
sharp peaks on the training data; together they are the standard recipe for
GAN training that converges without per-dataset babysitting, and they cost
one forward/backward each, unlike WGAN-GP's several critic steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from gendetect.models.components import fill_missing, observed_only, squared_error

if TYPE_CHECKING:
    from gendetect.models.gan.torch_model import GANNetwork


def discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def r1_penalty(logit_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at real records (x_real requires grad)."""
    (grad,) = torch.autograd.grad(logit_real.sum(), x_real, create_graph=True)
    return grad.pow(2).sum(dim=1).mean()


def adversarial_loss(
    net: GANNetwork, x: torch.Tensor, fake: torch.Tensor, feature_matching: bool
) -> torch.Tensor:
    """The generator's adversarial term.

    Non-saturating loss by default. With feature_matching, the generator
    instead matches the mean and spread of the discriminator's hidden
    features on real records (Salimans et al., 2016): a target that does
    not move as abruptly as D's verdict, so runs with different seeds end
    closer together.
    """
    if not feature_matching:
        return F.softplus(-net.discriminate(fake)).mean()
    real_h = net.disc_body(x).detach()
    fake_h = net.disc_body(fake)
    mean_gap = (real_h.mean(dim=0) - fake_h.mean(dim=0)).pow(2).sum()
    std_gap = (real_h.std(dim=0) - fake_h.std(dim=0)).pow(2).sum()
    return mean_gap + std_gap


def reconstruction_loss(net: GANNetwork, x: torch.Tensor) -> torch.Tensor:
    x, observed = fill_missing(x)
    return observed_only(squared_error(x, net.reconstruct(x)), observed).sum(dim=1).mean()


def noisy_reconstruction_loss(
    net: GANNetwork,
    x: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reconstruction through a noisy code, plus a pull of codes to the prior.

    A deterministic encoder with 8 latent units can memorise rare
    patterns, which then reconstruct well and score low. Noise of fixed
    scale on the code (with the code's size penalised, as a VAE's KL term
    does for a fixed posterior variance) limits how much each code can
    carry, so only structure shared by many records is reconstructed.
    """
    x, observed = fill_missing(x)  # gaps: imputed in, left out of the error
    code = net.encoder(x)
    if sigma <= 0:
        return observed_only(squared_error(x, net.generator(code)), observed).sum(dim=1).mean()
    noise = torch.randn(code.shape, generator=generator, device=code.device)
    noisy = code + sigma * noise
    recon = observed_only(squared_error(x, net.generator(noisy)), observed).sum(dim=1)
    prior = 0.5 * code.pow(2).sum(dim=1)
    return (recon + prior).mean()


def latent_recovery_loss(net: GANNetwork, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """E(G(z)) should recover z: ties the encoder to the generator's code."""
    return (net.encoder(fake) - z).pow(2).sum(dim=1).mean()


# Standard deviation of the "gaussian" reference, in the scaler's robust
# units (the bulk of the data has spread 1).
GAUSSIAN_REFERENCE_SCALE = 2.0


def broadened_reference(
    x: torch.Tensor, kind: str = "mix", scale: float = 1.0
) -> torch.Tensor:
    """Records from a reference distribution broader than the data, shown to
    the discriminator as "not data" beside the generator's samples.

    Without them the discriminator only ever sees real records in the tails
    (the generator under-covers them) and learns "extreme = real": scored by
    its verdict, anomalies ranked as the most normal (handbook ROC AUC ~0.19).
    With them it estimates how much denser the data is than a smoothed copy
    of itself: high in the bulk, low in the tails and in combinations of
    values that never occur together. "gaussian" = N(0, 2^2) in the robust
    units, a known density: the verdict then estimates log p_data - log
    p_ref (noise-contrastive estimation) and the score adds back -log p_ref
    (GANNetwork.extra_score), a density estimate that grows in every tail.
    Two kinds, half of the batch each in "mix": "noise" = records plus
    Gaussian noise (a per-record scale drawn up to 2 * `scale`, in the
    scaler's robust units), the data smoothed;
    "marginals" = each feature taken from another record of the batch, the
    product of the marginals, which keeps every single value plausible and
    breaks only the dependencies between features.
    """
    n, d = x.shape
    if kind == "gaussian":
        # A known density, wider than the scaled data: see GANNetwork.extra_score.
        return GAUSSIAN_REFERENCE_SCALE * scale * torch.randn_like(x)
    if kind == "noise":
        sigma = scale * 2.0 * torch.rand(n, 1, device=x.device)
        return x + sigma * torch.randn_like(x)
    if kind == "marginals":
        idx = torch.randint(0, n, (n, d), device=x.device)
        return x.gather(0, idx)
    if kind != "mix":
        raise ValueError(f"unknown reference kind {kind!r}")
    half = n // 2
    return torch.cat(
        [
            broadened_reference(x[:half], "noise", scale),
            broadened_reference(x, "marginals", scale)[: n - half],
        ]
    )

