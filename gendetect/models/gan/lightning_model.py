"""Lightning wiring of the GAN: two optimisers stepped by hand (D, then G+E)
per batch, and early stopping on the reconstruction objective.

Early stopping watches the noisy reconstruction objective itself, with the
same noise draws every epoch (noisy_validation). The deterministic
reconstruction error it replaced worsens while the noisy objective still
improves, so runs stopped after 2-6 epochs at a seed-dependent point;
watching the trained objective gave handbook ROC AUC 0.841/0.843 for two
seeds instead of 0.833/0.841. Feature matching for the generator is
available (feature_matching) but off: it moved the two seeds further apart.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gendetect.models.components import fill_missing
from gendetect.models.components.lightning import GenerativeModule
from gendetect.models.gan.loss import (
    adversarial_loss,
    broadened_reference,
    discriminator_loss,
    latent_recovery_loss,
    noisy_reconstruction_loss,
    r1_penalty,
    reconstruction_loss,
)
from gendetect.models.gan.params import GANParams
from gendetect.models.gan.refine import refine_discriminator
from gendetect.models.gan.torch_model import build_gan_network


class GAN(GenerativeModule):
    # The discriminator's step leaves the generator and encoder without gradients.
    ddp_find_unused_parameters = True

    def __init__(self, n_features: int, params: GANParams) -> None:
        super().__init__()
        # Resolved by the detector (GANParams.for_score): a number here.
        assert params.reference_weight is not None
        self.params = params
        self.reference_weight = params.reference_weight
        self.automatic_optimization = False
        self.model = build_gan_network(n_features, params)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()  # type: ignore[misc]
        # The discriminator sees gaps imputed with the median (the gap
        # indicators are inputs too); the reconstruction losses take the
        # batch with its gaps and leave them out of the error.
        hp, net, x = self.params, self.model, fill_missing(batch)[0]
        z = torch.randn(len(x), hp.latent_dim, device=x.device)

        # Discriminator: real vs generated, with R1 on real records. R1 is
        # "lazy" (every r1_every steps, scaled up to match): the double
        # backward is the costliest part of a step.
        every = max(1, int(hp.r1_every))
        use_r1 = hp.r1_weight > 0 and batch_idx % every == 0
        x_real = x.detach().requires_grad_(use_r1)
        logit_real = net.discriminate(x_real)
        logit_fake = net.discriminate(net.generator(z).detach())
        d_loss = discriminator_loss(logit_real, logit_fake)
        if self.reference_weight > 0:
            # Broadened reference records as extra negatives (loss.broadened_reference).
            reference = broadened_reference(x.detach(), hp.reference_kind)
            d_loss = d_loss + self.reference_weight * F.softplus(net.discriminate(reference)).mean()
        if use_r1:
            d_loss = d_loss + 0.5 * hp.r1_weight * every * r1_penalty(logit_real, x_real)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

        # Generator + encoder: fool D, reconstruct x, and recover z.
        fake = net.generator(z)
        adv = adversarial_loss(net, x, fake, hp.feature_matching)
        recon = noisy_reconstruction_loss(net, batch, hp.latent_noise)
        latent = latent_recovery_loss(net, fake, z)
        g_loss = adv + hp.recon_weight * (recon + latent)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()

        n = len(x)
        self.log_epoch("train_loss", recon, n)
        self.log_epoch("train_d_loss", d_loss, n)
        self.log_epoch("train_g_loss", adv, n)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        # Early stopping follows reconstruction quality. With noisy_validation
        # it is the objective the encoder and generator are trained on, with
        # the same noise draws every epoch so that epochs compare fairly.
        if self.params.noisy_validation:
            gen = torch.Generator(device=batch.device).manual_seed(batch_idx)
            loss = noisy_reconstruction_loss(self.model, batch, self.params.latent_noise, gen)
        else:
            loss = reconstruction_loss(self.model, batch)
        self.log_epoch("val_loss", loss, len(batch))

    def after_fit(self, x_train: np.ndarray, seed: int) -> None:
        # The discriminator's last epochs (refine.py) and, with
        # disc_score="features", its hidden features' training statistics:
        # only where the score reads it.
        if self.reference_weight > 0:
            refine_discriminator(self.model, x_train, self.params, seed)
            if self.params.disc_score == "features":
                self.model.eval()
                self.model.fit_feature_distance(torch.as_tensor(x_train, dtype=torch.float32))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (0.5, 0.9)  # the usual GAN momentum: less overshoot in the min-max game
        hp = self.params
        disc, gen = self.model.discriminator_parameters(), self.model.generator_parameters()
        return [
            torch.optim.AdamW(disc, lr=hp.lr, betas=betas, weight_decay=hp.weight_decay),
            torch.optim.AdamW(gen, lr=hp.lr, betas=betas, weight_decay=hp.weight_decay),
        ]


def build_gan_module(n_features: int, params: GANParams) -> GAN:
    """Registry entry of "gan" for training."""
    return GAN(n_features, params)
