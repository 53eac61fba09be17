"""A bundle on disk: a JSON manifest (plain state: parameters, schema,
scaler, per-network statistics, the label-aware head as arrays, calibration,
metadata) plus one weights file per network, read with torch's weights_only
so that loading never executes code from the artifact, and the cleared
rows' neighbour reference as a plain .npy array (read without pickle). No
pickle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gendetect.calibration import EmpiricalCalibrator
from gendetect.detector import DetectorCore
from gendetect.features.scaling import RobustScaler
from gendetect.features.tails import MarginalTails
from gendetect.label_aware import LabelAwareHead
from gendetect.member import NeuralDetector
from gendetect.models.neighbours import NormalNeighbours
from gendetect.schema import Schema

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
NEIGHBOURS = "neighbours.npy"


def save(bundle: FraudModelBundle, path: str | Path) -> Path:
    """Write to a temporary folder beside `path`, then rename it into place."""
    if not bundle.is_fitted:
        raise RuntimeError("cannot save an unfitted bundle")
    detector, head = bundle.detector_, bundle.label_head_
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    members = []
    for i, member in enumerate(detector.members):
        state = member.state()
        (tmp / f"weights_{i}.pt").write_bytes(state.pop("weights"))
        members.append(state)
    neighbours = {}
    if detector.neighbours is not None:
        neighbours, reference = detector.neighbours.to_state()
        np.save(tmp / NEIGHBOURS, reference, allow_pickle=False)
    manifest = {
        "format": BUNDLE_FORMAT,
        "kind": bundle.kind,
        "schema": bundle.schema.to_dict(),
        "alert_rate": bundle.alert_rate,
        "top_k": bundle.top_k,
        "params": bundle.params.to_dict(),
        "threshold": bundle.threshold_,
        "calibrator": bundle.calibrator_.to_dict(),
        "scaler": detector.scaler.to_dict(),
        **({"tails": detector.tails.to_dict()} if detector.tails is not None else {}),
        **({"neighbours": neighbours} if neighbours else {}),
        # The feature pipeline's fitted state: learned categorical levels and
        # their training counts (plain JSON), so serving encodes as training did.
        "features": bundle.pipeline.state() if bundle.pipeline is not None else {},
        "members": members,
        "label_head": head.state(),
        "metadata": bundle.metadata,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def load(path: str | Path, cls: type[FraudModelBundle]) -> FraudModelBundle:
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no fraud model bundle at {folder}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"unsupported bundle format {manifest.get('format')}")
    schema = Schema.from_dict(manifest["schema"])
    bundle = cls(
        manifest["kind"],
        schema=schema,
        alert_rate=manifest["alert_rate"],
        top_k=manifest["top_k"],
        **manifest["params"],
    )
    params = bundle.params
    detector = DetectorCore(
        kind=bundle.kind, params=params, scaler=RobustScaler.from_dict(manifest["scaler"]),
        # Bundles from before the tail term have none: their scores stay the networks'.
        tails=MarginalTails.from_dict(manifest["tails"]) if "tails" in manifest else None,
        # Only fits given cleared rows have the neighbour term.
        neighbours=(
            NormalNeighbours.from_state(
                manifest["neighbours"], np.load(folder / NEIGHBOURS, allow_pickle=False)
            )
            if "neighbours" in manifest
            else None
        ),
    )
    for i, state in enumerate(manifest["members"]):
        state = {**state, "weights": (folder / f"weights_{i}.pt").read_bytes()}
        detector.members.append(NeuralDetector.from_state(state, params))
    metadata = manifest["metadata"]
    head = LabelAwareHead.from_state(
        manifest.get("label_head"), min_frauds=params.label_min_frauds,
        blend=params.label_blend, summary=metadata.get("labels", {}),
    )
    return bundle.restore(
        schema=schema, detector=detector, head=head,
        calibrator=EmpiricalCalibrator.from_dict(manifest["calibrator"]),
        threshold=float(manifest["threshold"]), metadata=metadata,
        # Bundles from before learned levels have none (and need none).
        features=manifest.get("features"),
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
