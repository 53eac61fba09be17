"""Models found by name.

Each model lives in its own package (gendetect/models/<name>/): its
parameters with their defaults (params.py), the plain torch network and its
builder (torch_model.py: what a bundle stores and what scores a record), its
losses, and its Lightning wiring (lightning_model.py: training only). It is
registered here under one or more names, each naming the three by
"module:attribute" strings, imported on first use: reading the names
(`gendetect --help`) does not import torch, and scoring never imports
Lightning. The detector core, the CLI's choices and the tests read this
table; nothing else lists the kinds.

Detector kinds are the registered models plus "ensemble", a detector-level
combination of registered models (DetectorParams.ensemble), not a model of
its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gendetect.models.components import GenerativeNetwork
    from gendetect.models.components.lightning import GenerativeModule
    from gendetect.models.components.params import NetworkParams

ENSEMBLE = "ensemble"


def _resolve(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params_target: str  # "module:Class" of its parameters (a NetworkParams)
    network_target: str  # "module:function": (n_features, params) -> torch network
    module_target: str  # "module:function": (n_features, params) -> LightningModule
    description: str
    # Parameters this registered variant always sets (vae_mse: no learned variance).
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> type[NetworkParams]:
        return _resolve(self.params_target)  # type: ignore[no-any-return]

    def params_from(self, flat: Mapping[str, Any], score: str = "reconstruction") -> NetworkParams:
        """Its parameters from the detector's flat names, checked."""
        return self.params.from_flat(dict(flat), dict(self.fixed)).for_score(score)

    def build_network(self, n_features: int, params: NetworkParams) -> GenerativeNetwork:
        return _resolve(self.network_target)(n_features, params)  # type: ignore[no-any-return]

    def build_module(self, n_features: int, params: NetworkParams) -> GenerativeModule:
        return _resolve(self.module_target)(n_features, params)  # type: ignore[no-any-return]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    params: str,
    network: str,
    module: str,
    description: str,
    fixed: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Add a model under `name`; the targets are "module:attribute" strings."""
    if name == ENSEMBLE or not name.isidentifier():
        raise ValueError(f"invalid model name {name!r}")
    spec = ModelSpec(name, params, network, module, description, dict(fixed or {}))
    if name in _REGISTRY and _REGISTRY[name] != spec:
        raise ValueError(f"model {name!r} is already registered differently")
    _REGISTRY[name] = spec
    return spec


register_model(
    "vae",
    params="gendetect.models.vae.params:VAEParams",
    network="gendetect.models.vae.torch_model:build_vae_network",
    module="gendetect.models.vae.lightning_model:build_vae_module",
    description="variational autoencoder scored by its per-feature Gaussian NLL "
    "(learned decoder variance)",
)
register_model(
    "vae_mse",
    params="gendetect.models.vae.params:VAEParams",
    network="gendetect.models.vae.torch_model:build_vae_network",
    module="gendetect.models.vae.lightning_model:build_vae_module",
    description="variational autoencoder with a fixed decoder variance, scored by its "
    "squared error",
    fixed={"learned_variance": False},
)
register_model(
    "gan",
    params="gendetect.models.gan.params:GANParams",
    network="gendetect.models.gan.torch_model:build_gan_network",
    module="gendetect.models.gan.lightning_model:build_gan_module",
    description="GAN with an encoder, scored by its reconstruction error "
    "(optionally its discriminator)",
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


def model_flat_names(name: str) -> frozenset[str]:
    """The flat parameter names of a model, minus what its variant fixes."""
    spec = get_model(name)
    return frozenset(n for n, f in spec.params.flat_fields().items() if f.name not in spec.fixed)


# Snapshots for static uses (argparse choices); the functions above see later
# registrations too.
MODEL_KINDS: tuple[str, ...] = list_models()
DETECTOR_KINDS: tuple[str, ...] = list_detector_kinds()
