"""gendetect: fraud detection with generative models (VAE, GAN, ensemble)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "DETECTOR_KINDS",
    "FraudModelBundle",
    "__version__",
    "get_model",
    "list_detector_kinds",
    "list_models",
    "make_detector",
]

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle


def make_detector(kind: str, **params: Any) -> FraudModelBundle:
    """An unfitted detector with PyOD's conventions (fit / decision_function /
    predict / predict_proba) plus risk() and explain().

    kind: one of DETECTOR_KINDS: the registered models (gendetect.models.registry:
    'vae', 'vae_mse', 'gan') and 'ensemble'. params: seed, schema ('numeric' for
    plain arrays, 'transactions' for raw transactions, or a YAML path),
    alert_rate, and training settings (max_epochs, batch_size, hidden,
    latent_dim, ...; accelerator, devices, strategy, num_nodes; progress).
    """
    from gendetect.bundle import make_detector as _make

    return _make(kind, **params)


_REGISTRY_NAMES = ("DETECTOR_KINDS", "get_model", "list_detector_kinds", "list_models")


def __getattr__(name: str) -> Any:
    # Lazy: importing gendetect must not pull in torch (the CLI's --help, light tools).
    if name in _REGISTRY_NAMES:
        from gendetect.models import registry

        return getattr(registry, name)
    if name == "FraudModelBundle":
        from gendetect.bundle import FraudModelBundle

        return FraudModelBundle
    raise AttributeError(name)
