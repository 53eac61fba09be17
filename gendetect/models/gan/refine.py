"""The discriminator's last epochs: trained alone, the generator frozen,
against the Gaussian reference, with a learning rate that decays to 0.

Why: scored by its verdict (score="discriminator"), the network is a
density estimate, log p_data - log p_ref plus the reference's known
-log p_ref (torch_model.GANNetwork.extra_score). During the GAN's game the
generator's samples are negatives too, so the verdict also carries p_g and
moves with the game; the early stop follows the reconstruction, not the
verdict, so it is taken wherever the game stood. A few epochs against the
reference alone (`refine_fake_weight` 0; generated records can be kept as a
share of the negatives) make the verdict the estimate the score assumes,
and the decaying rate lands it at a rest point instead of mid-step.
Measured: gendetect/models/README.md, "Discriminator".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gendetect.models.components import fill_missing
from gendetect.models.gan.loss import broadened_reference, r1_penalty
from gendetect.models.gan.params import GANParams
from gendetect.models.gan.torch_model import GANNetwork

# Rows per step: the training schedule's default batch.
REFINE_BATCH = 256


def refine_discriminator(
    net: GANNetwork, x_train: np.ndarray, params: GANParams, seed: int
) -> None:
    """Train `net`'s discriminator for params.refine_epochs epochs over
    `x_train` (scaled rows, gaps as NaN), in place; deterministic for a seed
    (the global generator is seeded here, as the fit seeds it)."""
    epochs = params.refine_epochs
    if epochs <= 0 or len(x_train) == 0:
        return
    assert params.reference_weight is not None
    torch.manual_seed(seed * 100_003 + 7)
    x_all = fill_missing(torch.as_tensor(x_train, dtype=torch.float32))[0]
    n = len(x_all)
    batch = min(REFINE_BATCH, max(16, n))
    steps_per_epoch = max(1, -(-n // batch))
    total = epochs * steps_per_epoch
    disc = net.discriminator_parameters()
    opt = torch.optim.AdamW(disc, lr=params.lr, betas=(0.5, 0.9), weight_decay=params.weight_decay)
    # Linear decay to 0: the last steps barely move the verdict.
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / total)
    every = max(1, int(params.r1_every))
    was_training = net.training
    net.train()
    for p in net.generator_parameters():
        p.requires_grad_(False)
    try:
        step = 0
        for _ in range(epochs):
            order = torch.randperm(n)
            for i in range(steps_per_epoch):
                x = x_all[order[i * batch : (i + 1) * batch]]
                use_r1 = params.r1_weight > 0 and step % every == 0
                x_real = x.requires_grad_(use_r1)
                logit_real = net.discriminate(x_real)
                loss = F.softplus(-logit_real).mean()
                if params.refine_fake_weight > 0:
                    z = torch.randn(len(x), params.latent_dim)
                    with torch.no_grad():
                        fake = net.generator(z)
                    loss = loss + params.refine_fake_weight * F.softplus(
                        net.discriminate(fake)
                    ).mean()
                if params.reference_weight > 0:
                    reference = broadened_reference(x.detach(), params.reference_kind)
                    loss = loss + params.reference_weight * F.softplus(
                        net.discriminate(reference)
                    ).mean()
                if use_r1:
                    loss = loss + 0.5 * params.r1_weight * every * r1_penalty(logit_real, x_real)
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
                step += 1
    finally:
        for p in net.generator_parameters():
            p.requires_grad_(True)
        net.train(was_training)

