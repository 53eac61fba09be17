"""The generative models, one package each (anomalib's layout).

    models/
      registry.py      names -> builders: get_model, list_models, DETECTOR_KINDS
      components/      shared MLP blocks, the network/Lightning base classes
      vae/             torch_model.py, loss.py, lightning_model.py  ("vae", "vae_mse")
      gan/             torch_model.py, loss.py, lightning_model.py  ("gan")
      data.py          training/validation DataLoaders (seeded, shardable)
      callbacks.py     best-weights/history and per-epoch progress callbacks
      training.py      the Lightning Trainer run (devices, strategy, early stopping)

A new model is a new package plus one register_model line in registry.py.
Importing this package does not import torch.
"""

from gendetect.models.registry import (
    DETECTOR_KINDS,
    ENSEMBLE,
    MODEL_KINDS,
    get_model,
    list_detector_kinds,
    list_models,
    register_model,
)

__all__ = [
    "DETECTOR_KINDS",
    "ENSEMBLE",
    "MODEL_KINDS",
    "get_model",
    "list_detector_kinds",
    "list_models",
    "register_model",
]
