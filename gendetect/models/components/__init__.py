"""Pieces every model shares: MLP blocks, the scoring interface of a torch
network, and the Lightning base class."""

from gendetect.models.components.base import GenerativeModule, GenerativeNetwork
from gendetect.models.components.blocks import mlp, squared_error

__all__ = ["GenerativeModule", "GenerativeNetwork", "mlp", "squared_error"]
