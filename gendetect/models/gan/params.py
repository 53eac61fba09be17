"""The GAN's parameters, with their defaults (why: README.md here). In the
detector's flat names they carry the prefix "gan_" (gan_latent_noise,
gan_r1_weight, ...), except the shared network sizes and optimiser rates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Self

from gendetect.models.components.params import NetworkParams

REFERENCE_KINDS = ("gaussian", "noise", "marginals", "mix")


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
        if self.reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"gan_reference_kind must be one of {REFERENCE_KINDS}")

    def for_score(self, score: str) -> Self:
        if self.reference_weight is not None:
            return self
        weight = 0.0 if score == "reconstruction" else 1.0
        return dataclasses.replace(self, reference_weight=weight)
