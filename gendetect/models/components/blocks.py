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


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-record, per-feature squared error (n, d): the raw material of both
    the anomaly score and the explanations."""
    return (x - x_hat).pow(2)
