"""The GAN's parameters, with their defaults (why: README.md here). In the
detector's flat names they carry the prefix "gan_" (gan_latent_noise,
gan_r1_weight, ...), except the shared network sizes and optimiser rates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Self

from gendetect.models.components.params import NetworkParams

REFERENCE_KINDS = ("gaussian", "noise", "marginals", "mix")
DISC_SCORES = ("features", "verdict")
# The discriminator's verdict settles within a few epochs; the later ones
# refine the reconstruction, which score="discriminator" does not read
# (handbook development week: 8 epochs scored as 20, README.md).
DISC_MAX_STEPS = 2000


@dataclass
class GANParams(NetworkParams):
    # Noise on the encoder's code during reconstruction training.
    latent_noise: float = 0.5
    # Generator target: feature matching instead of the discriminator's verdict.
    feature_matching: bool = False
    noisy_validation: bool = True
    r1_weight: float = 1.0
    r1_every: int = 4
    recon_weight: float = 1.0
    # Weight of broadened reference records among the discriminator's
    # negatives; None: on (1.0) where the score uses the discriminator.
    reference_weight: float | None = None
    reference_kind: str = "gaussian"
    # Epochs of discriminator-only training after the fit, the generator
    # frozen (refine.py), and the weight of generated records among its
    # negatives there; only where the score reads the discriminator.
    refine_epochs: int = 5
    refine_fake_weight: float = 0.0
    # Optimisation steps at most under the automatic schedule (never fewer
    # than its min_train_steps); None: DISC_MAX_STEPS where the score is the
    # discriminator alone, no limit otherwise.
    max_steps: int | None = None
    # What the discriminator scores with: "features", the distance of its
    # last hidden layer from the training rows' (after the refinement), or
    # "verdict", its logit plus the reference's density term.
    disc_score: str = "features"

    flat_prefix: ClassVar[str] = "gan_"

    @property
    def wide_input_tails(self) -> bool:
        return True

    def validate(self) -> None:
        super().validate()
        if self.latent_noise < 0 or self.r1_weight < 0 or self.recon_weight < 0:
            raise ValueError("gan_latent_noise, gan_r1_weight and gan_recon_weight must be >= 0")
        if self.r1_every < 1:
            raise ValueError(f"gan_r1_every must be >= 1, got {self.r1_every}")
        if self.reference_weight is not None and self.reference_weight < 0:
            raise ValueError("gan_reference_weight must be >= 0 (or None)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("gan_max_steps must be >= 1 (or None)")
        if self.refine_epochs < 0 or self.refine_fake_weight < 0:
            raise ValueError("gan_refine_epochs and gan_refine_fake_weight must be >= 0")
        if self.disc_score not in DISC_SCORES:
            raise ValueError(f"gan_disc_score must be one of {DISC_SCORES}")
        if self.reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"gan_reference_kind must be one of {REFERENCE_KINDS}")

    @property
    def max_train_steps(self) -> int | None:
        return self.max_steps

    def for_score(self, score: str) -> Self:
        resolved = self
        if resolved.max_steps is None and score == "discriminator":
            resolved = dataclasses.replace(resolved, max_steps=DISC_MAX_STEPS)
        if resolved.reference_weight is None:
            weight = 0.0 if score == "reconstruction" else 1.0
            resolved = dataclasses.replace(resolved, reference_weight=weight)
        return resolved
