"""Pieces every model shares: MLP blocks, the scoring interface of a torch
network and the parameters every network has. The Lightning base class is
in components/lightning.py, imported by training code only.

The torch pieces are imported on first use (PEP 562): `components.params`
(no torch) is read when a training config is validated, and importing it
runs this file first; an eager torch import here made a config typo take
seconds to report.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gendetect.models.components.base import GenerativeNetwork
    from gendetect.models.components.blocks import (
        fill_missing,
        mlp,
        observed_only,
        squared_error,
    )

__all__ = ["GenerativeNetwork", "fill_missing", "mlp", "observed_only", "squared_error"]

_WHERE = {
    "GenerativeNetwork": "gendetect.models.components.base",
    "fill_missing": "gendetect.models.components.blocks",
    "mlp": "gendetect.models.components.blocks",
    "observed_only": "gendetect.models.components.blocks",
    "squared_error": "gendetect.models.components.blocks",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
