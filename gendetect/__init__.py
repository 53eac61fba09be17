"""gendetect: fraud detection with generative models (VAE, GAN, ensemble)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FraudModelBundle", "__version__", "make_detector"]

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle


def make_detector(kind: str, **params: Any) -> FraudModelBundle:
    """An unfitted detector with PyOD's conventions (fit / decision_function /
    predict / predict_proba) plus risk() and explain().

    kind: 'vae', 'gan' or 'ensemble'. params: seed, schema ('numeric' for plain
    arrays, 'transactions' for raw transactions, or a YAML path), alert_rate,
    and training settings (max_epochs, batch_size, hidden, latent_dim, ...).
    """
    from gendetect.bundle import make_detector as _make

    return _make(kind, **params)


def __getattr__(name: str) -> Any:
    # Lazy: importing gendetect must not pull in torch (the CLI's --help, light tools).
    if name == "FraudModelBundle":
        from gendetect.bundle import FraudModelBundle

        return FraudModelBundle
    raise AttributeError(name)
