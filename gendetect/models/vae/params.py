"""The VAE's parameters, with their defaults (why: README.md here)."""

from __future__ import annotations

from dataclasses import dataclass

from gendetect.models.components.params import NetworkParams


@dataclass
class VAEParams(NetworkParams):
    beta: float = 1.0
    dropout: float = 0.0
    learned_variance: bool = True

    @property
    def wide_input_tails(self) -> bool:
        # The learned variance absorbs a long tail; the plain squared error
        # (vae_mse) spends its capacity on it instead.
        return self.learned_variance

    def validate(self) -> None:
        super().validate()
        if self.beta < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("beta must be >= 0 and dropout in [0, 1)")
