"""Getting a freshly loaded model ready for traffic before it serves.

One synthetic record pays for lazy initialisation (torch kernels, numpy
dispatch), and the heap alive after loading is moved out of the cyclic
garbage collector's view, so neither lands on a real request's latency.
"""

from __future__ import annotations

import gc
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle

log = logging.getLogger("gendetect.serving")


def freeze_heap(first_load: bool) -> None:
    """Move the objects alive now (torch, MLflow, the model: over half a
    million) out of the cyclic garbage collector's view. Otherwise each full
    collection walks them all and stalls the event loop for hundreds of ms,
    straight into the tail latency. The first load also collects first (no
    traffic is served yet); a reload only freezes, so that requests never
    wait on a collection: objects of a replaced model are still freed by
    reference counting, only cyclic garbage among them stays."""
    if first_load:
        gc.collect()
    gc.freeze()


def warm_up(bundle: FraudModelBundle, online: bool) -> None:
    """Score one synthetic record so the first real request does not pay for
    lazy initialisation (torch kernels, numpy dispatch)."""
    record: dict[str, Any] = {}
    for f in bundle.schema.input_fields:
        record[f.name] = _placeholder(f.kind, f.min, f.categories or _learned(bundle, f.name))
    window = None
    if online and bundle.pipeline is not None:
        window = [dict.fromkeys(bundle.pipeline.window_feature_names, 0.0)]
    try:
        bundle.score_records([record], window)
    except Exception as exc:  # a warm-up failure must not stop serving
        log.debug("warm-up skipped: %s", exc)


def _learned(bundle: FraudModelBundle, name: str) -> tuple[str, ...] | None:
    """The most frequent training level of a categorical feature whose levels
    were learned, so that the warm-up is not counted as an unseen level."""
    pipeline = bundle.pipeline
    try:
        counts = pipeline.encoder(name).counts if pipeline is not None else {}
    except (KeyError, RuntimeError):
        return None
    return (next(iter(counts)),) if counts else None


def _placeholder(kind: str, minimum: float | None, categories: tuple[str, ...] | None) -> Any:
    if kind == "timestamp":
        return datetime(2024, 1, 1)
    if kind == "categorical" and categories:
        return categories[0]
    if kind == "boolean":
        return False
    if kind in ("entity", "id"):
        return 0
    return float(minimum) if minimum is not None else 0.0
