"""Models found by name.

Each model lives in its own package (gendetect/models/<name>/: the plain
torch network, its losses, its Lightning wiring) and is registered here
under one or more names, each with a builder `(n_features, DetectorParams)
-> GenerativeModule`. The detector core, the CLI's choices and the tests
read this table; nothing else lists the kinds.

The table names builders as "module:function" strings and imports them on
first use, so reading the names (`gendetect --help`) does not import torch.

Detector kinds are the registered models plus "ensemble", a detector-level
combination of registered models (DetectorParams.ensemble), not a model of
its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gendetect.models.components import GenerativeModule
    from gendetect.params import DetectorParams

ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str  # "module:function" of the builder
    description: str

    @property
    def build(self) -> Callable[[int, DetectorParams], GenerativeModule]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, target: str, description: str) -> ModelSpec:
    """Add a model under `name`; `target` is "module:function" of its builder."""
    if name == ENSEMBLE or not name.isidentifier():
        raise ValueError(f"invalid model name {name!r}")
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise ValueError(f"model {name!r} is already registered as {_REGISTRY[name].target}")
    spec = ModelSpec(name, target, description)
    _REGISTRY[name] = spec
    return spec


register_model(
    "vae",
    "gendetect.models.vae:build_vae",
    "variational autoencoder scored by its per-feature Gaussian NLL (learned decoder variance)",
)
register_model(
    "vae_mse",
    "gendetect.models.vae:build_vae_mse",
    "variational autoencoder with a fixed decoder variance, scored by its squared error",
)
register_model(
    "gan",
    "gendetect.models.gan:build_gan",
    "GAN with an encoder, scored by its reconstruction error (optionally its discriminator)",
)


def list_models() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_REGISTRY)


def list_detector_kinds() -> tuple[str, ...]:
    """Every kind a detector can be made of: the models and the ensemble."""
    return (*_REGISTRY, ENSEMBLE)


def get_model(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {list_models()}") from None


# Snapshots for static uses (argparse choices); the functions above see later
# registrations too.
MODEL_KINDS: tuple[str, ...] = list_models()
DETECTOR_KINDS: tuple[str, ...] = list_detector_kinds()
