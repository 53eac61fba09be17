"""The generative models, one package each (anomalib's layout).

    models/
      registry.py      names -> parameters, network and Lightning builders
      components/      shared MLP blocks, NetworkParams, the network base
                       (torch) and the Lightning base (components/lightning.py)
      vae/             params.py, torch_model.py, loss.py, lightning_model.py
                       ("vae", "vae_mse")
      gan/             params.py, torch_model.py, loss.py, lightning_model.py ("gan")
      labels.py        label conventions and the boosted head's trees
      settings.py      a training run's settings and result (plain dataclasses)
      data.py          training/validation DataLoaders (seeded, shardable)
      callbacks.py     best-weights/history and per-epoch progress callbacks
      training.py      the Lightning Trainer run (devices, strategy, early stopping)

A new model is a new package (its parameters, network and Lightning module)
plus one register_model call in registry.py. Importing this package does not
import torch; scoring imports torch but never Lightning. Why the defaults
are what they are: README.md here and in each model's folder.
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
