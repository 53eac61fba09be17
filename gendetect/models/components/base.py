"""The two halves of every model, and the contract between them and the detector.

A model is a plain torch network (`GenerativeNetwork`, here: what is saved
in a bundle and what scores a record) wrapped by a LightningModule
(`GenerativeModule`, in lightning.py: losses, optimisers, logging; used only
while training).
Keeping the network apart means a bundle's weights are the network's own
state dict, free of training machinery, and a scoring process never needs
the Lightning side.

The detector core asks a network for two things:
- `feature_errors(x)`: per record and feature, how badly x is explained
  (n, d), never negative; the raw material of the score and of the
  explanations. `likelihood_errors` says whether these are already negative
  log-likelihoods on one scale across features (the detector then leaves them
  as they are) or plain errors that it divides by their typical size.
- `extra_score(x)`: an optional per-record score beside the errors (the GAN's
  discriminator), or None; statistics it needs beyond the weights travel
  through `extra_score_state` / `load_extra_score_state`.
- `reconstruction(x)`: what the network expects x to be (scaled space, gaps
  imputed), or None for a network without one: the explanations' expected
  values (gendetect.detector.DetectorCore.expected).
Inputs may hold NaN: a gap in a nullable field (gendetect.features.missing).
A network imputes it (blocks.fill_missing) and gives it an error of 0
(blocks.observed_only); the detector then averages over observed cells only.
A new way of scoring (another network's output, a head trained on labels)
adds to this contract rather than to branches in the detector.
"""

from __future__ import annotations

import torch
from torch import nn


class GenerativeNetwork(nn.Module):
    """Plain torch side of a model; subclasses define the scoring methods."""

    likelihood_errors: bool = False

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_score(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def extra_score_state(self) -> dict[str, list[float]] | None:
        """Statistics fitted after training that extra_score reads besides
        the weights (kept in the bundle beside them), or None."""
        return None

    def load_extra_score_state(self, state: dict[str, list[float]] | None) -> None:
        """Restore what extra_score_state gave (None: a bundle without it)."""
