"""Building blocks shared by the models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def mlp(
    sizes: Sequence[int],
    *,
    activation: type[nn.Module] = nn.LeakyReLU,
    dropout: float = 0.0,
    spectral_norm: bool = False,
    final_activation: bool = False,
) -> nn.Sequential:
    """A plain multilayer perceptron: Linear -> activation (-> dropout) per layer."""
    layers: list[nn.Module] = []
    pairs = list(itertools.pairwise(sizes))
    for i, (n_in, n_out) in enumerate(pairs):
        linear: nn.Module = nn.Linear(n_in, n_out)
        if spectral_norm:
            linear = nn.utils.parametrizations.spectral_norm(linear)
        layers.append(linear)
        if i < len(pairs) - 1 or final_activation:
            layers.append(activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def fill_missing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NaN in a scaled input marks a gap (a nullable field without a value,
    gendetect.features.missing). Returns x with 0 there (the training
    median: the scaler centres every column on it) and the mask of observed
    cells as 0/1 floats, or None when nothing is missing (then x is returned
    as it is, so complete records score exactly as before gaps existed)."""
    missing = torch.isnan(x)
    if not bool(missing.any()):
        return x, None
    return torch.where(missing, torch.zeros_like(x), x), (~missing).to(x.dtype)


def observed_only(terms: torch.Tensor, observed: torch.Tensor | None) -> torch.Tensor:
    """Per-feature error or likelihood terms with the gaps' cells set to 0:
    a value the record does not have is neither well nor badly explained,
    so it adds nothing to the loss, the score or the explanations."""
    return terms if observed is None else terms * observed


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-record, per-feature squared error (n, d): the raw material of both
    the anomaly score and the explanations."""
    return (x - x_hat).pow(2)
