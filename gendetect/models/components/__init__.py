"""Pieces every model shares: MLP blocks, the scoring interface of a torch
network and the parameters every network has. The Lightning base class is
in components/lightning.py, imported by training code only."""

from gendetect.models.components.base import GenerativeNetwork
from gendetect.models.components.blocks import fill_missing, mlp, observed_only, squared_error

__all__ = ["GenerativeNetwork", "fill_missing", "mlp", "observed_only", "squared_error"]
