"""Drift: the population stability index (PSI) of each model input and of
the score, between the training reference kept in the bundle and a recent
window of traffic.

The reference is made at fit time (FraudModelBundle.fit): for every model
input, the interior deciles of its training values as bin edges and the
share of training rows in each bin; for the score, the same over the
validation rows' scores (the rows the calibration and the threshold come
from: training rows score optimistically low). Both are plain lists in the
bundle's JSON metadata, so they travel with every registered version.

PSI = sum over bins of (a - e) * ln(a / e), with e the reference share and a
the recent share of a bin (both floored at 1e-4 so that an empty bin is a
large but finite term). The usual reading, which `DEFAULT_LEVEL` follows:
below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one; 0.2 is
the default level that marks drift (callers pass their own: the training
config's `drift.level`, the API's setting GENDETECT_DRIFT_LEVEL). Deciles
because they need no tuning per feature and leave ~10% of the rows per bin,
so that a few thousand recent rows give a PSI whose noise (about bins /
rows) is far below the level. A feature with few distinct values (a weekend flag) gets fewer,
wider bins: its edges are the distinct deciles.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_BINS = 10
DEFAULT_LEVEL = 0.2
_FLOOR = 1e-4
SCORE = "score"


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([], dtype=np.float64)
    # Observed values as edges (no interpolation): a flag gets the edges 0, 1.
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
    return np.unique(qs)


def shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of the finite `values` in each bin (len(edges) + 1 bins: below
    the first edge, between edges, from the last edge on)."""
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(edges, finite, side="right"),
                         minlength=len(edges) + 1).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _entry(values: np.ndarray, bins: int) -> dict[str, list[float]]:
    edges = _edges(values, bins)
    return {"edges": edges.tolist(), "expected": shares(edges, values).tolist()}


def make_reference(x: np.ndarray, names: list[str], scores: np.ndarray,
                   bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The training reference: bins and shares per model input and for the score."""
    x = np.asarray(x, dtype=np.float64)
    return {
        "bins": bins,
        "rows": len(x),
        "features": {name: _entry(x[:, j], bins) for j, name in enumerate(names)},
        SCORE: _entry(np.asarray(scores, dtype=np.float64), bins),
    }


@dataclass
class DriftReport:
    """PSI per model input and for the score; `drifted`: those at or above the level."""

    features: dict[str, float]
    score: float
    level: float
    rows: int
    drifted: list[str] = field(default_factory=list)

    @property
    def max_psi(self) -> float:
        return max([self.score, *self.features.values()], default=0.0)

    @property
    def detected(self) -> bool:
        return bool(self.drifted)

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "rows": self.rows, "score": self.score,
                "features": self.features, "drifted": self.drifted, "max_psi": self.max_psi,
                "detected": self.detected}

    def as_metrics(self, prefix: str = "drift.") -> dict[str, float]:
        out = {f"{prefix}{name}": value for name, value in self.features.items()}
        out.update({f"{prefix}score": self.score, f"{prefix}max_psi": self.max_psi,
                    f"{prefix}n_drifted": float(len(self.drifted))})
        return out


def compare(reference: dict[str, Any], x: np.ndarray, names: list[str], scores: np.ndarray,
            level: float = DEFAULT_LEVEL) -> DriftReport:
    """PSI of recent model inputs `x` (columns `names`) and scores against
    `reference` (make_reference). Inputs the reference lacks are skipped."""
    x = np.asarray(x, dtype=np.float64)
    features: dict[str, float] = {}
    for j, name in enumerate(names):
        entry = reference["features"].get(name)
        if entry is None:
            continue
        features[name] = psi(entry["expected"], shares(np.asarray(entry["edges"]), x[:, j]))
    ref = reference[SCORE]
    score = psi(ref["expected"], shares(np.asarray(ref["edges"]),
                                        np.asarray(scores, dtype=np.float64)))
    drifted = [n for n, v in features.items() if v >= level]
    if score >= level:
        drifted.append(SCORE)
    return DriftReport(features, score, level, len(x), drifted)


def bundle_drift(bundle: Any, X: Any, level: float = DEFAULT_LEVEL) -> DriftReport | None:
    """Drift of the records `X` against a fitted bundle's training reference
    (None when the bundle predates drift references)."""
    reference = bundle.metadata.get("drift_reference")
    if not reference:
        return None
    x = bundle.features(X)
    scores = bundle.score_parts(x)[0]
    return compare(reference, x, bundle.feature_names, scores, level)


class RecentWindow:
    """The last `size` scored records' model inputs and scores (a ring, thread
    safe), and their PSI against a reference, recomputed every `every`
    records (the API's /metrics gauges read the last result)."""

    def __init__(self, reference: dict[str, Any], names: list[str], *, size: int = 5000,
                 every: int = 500, level: float = DEFAULT_LEVEL, min_rows: int = 500) -> None:
        self.reference = reference
        self.names = list(names)
        self.level = level
        self.every = every
        self.min_rows = min_rows
        self._rows: deque[np.ndarray] = deque(maxlen=size)
        self._scores: deque[float] = deque(maxlen=size)
        self._since = 0
        self._lock = threading.Lock()
        self.last: DriftReport | None = None

    def add(self, x: np.ndarray, scores: np.ndarray) -> DriftReport | None:
        """Add rows; returns a new report when one was computed."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        with self._lock:
            self._rows.extend(x)
            self._scores.extend(np.asarray(scores, dtype=np.float64).ravel().tolist())
            self._since += len(x)
            if self._since < self.every or len(self._rows) < self.min_rows:
                return None
            self._since = 0
            rows, recent = np.stack(self._rows), np.asarray(self._scores)
        report = compare(self.reference, rows, self.names, recent, self.level)
        self.last = report
        return report


class LiveDrift:
    """Drift of the records a served bundle scores: the last `size` records'
    model inputs and scores, compared with the bundle's training reference
    every `size // 10` records. `on_report` gets each new report (the
    /metrics gauges).

    Cheap on the request path, and incremental off it: a request only
    appends its records (as the API validated them, with their online
    behaviour features) to a pending list. Every `every` records a
    background thread builds the model inputs of the pending records only
    (the bundle's own vectorised pipeline, in slices of `SLICE` records so
    that no single call holds the interpreter lock for long) into a ring of
    model inputs, and compares the ring with the reference. Each record is
    thus transformed once, not once per report (a tenth of the cost it had
    when the whole window was rebuilt for each report).

    The window should hold about a day of traffic: a shorter one sees a few
    hours only, and the time-of-day inputs drift by construction."""

    SLICE = 128

    def __init__(self, bundle: Any, *, size: int = 5000, level: float = DEFAULT_LEVEL,
                 on_report: Any = None) -> None:
        self.bundle = bundle
        self.reference = bundle.metadata.get("drift_reference")
        self.level = level
        self.size = size
        self.every = max(10, size // 10)
        self.on_report = on_report
        # Not yet transformed (request threads append, the computing thread takes).
        self._records: list[Any] = []
        self._windows: list[Any] = []
        self._scores: list[float] = []
        # Transformed: the model inputs and scores of the last `size` records.
        self._x: deque[np.ndarray] = deque(maxlen=size)
        self._recent_scores: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._busy = False
        self.last: DriftReport | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.reference)

    def add(self, records: Any, windows: Any, scores: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._records.extend(records)
            self._windows.extend(windows if windows is not None else [None] * len(records))
            self._scores.extend(float(s) for s in scores)
            if len(self._records) < self.every or self._busy:
                return
            # Not before the window is half full: a few dozen rows give noise.
            if len(self._x) + len(self._records) < self.size // 2:
                return
            self._busy = True
            taken = (self._records, self._windows, self._scores)
            self._records, self._windows, self._scores = [], [], []
        threading.Thread(target=self._compute, args=taken, daemon=True,
                         name="gendetect-drift").start()

    def _compute(self, records: list[Any], windows: list[Any], scores: list[float]) -> None:
        try:
            # Only the newest `size` matter: a burst larger than the window
            # is not transformed in full.
            records, windows, scores = (records[-self.size:], windows[-self.size:],
                                        scores[-self.size:])
            for i in range(0, len(records), self.SLICE):
                x = self._inputs(records[i:i + self.SLICE], windows[i:i + self.SLICE])
                self._x.extend(x)
                time.sleep(0)  # let a waiting request thread take the interpreter lock
            self._recent_scores.extend(scores)
            self.last = compare(self.reference, np.stack(self._x), self.bundle.feature_names,
                                np.asarray(self._recent_scores), self.level)
            if self.on_report is not None:
                self.on_report(self.last)
        finally:
            with self._lock:
                self._busy = False

    def _inputs(self, records: list[Any], windows: list[Any]) -> np.ndarray:
        pipeline = self.bundle.pipeline
        given = None if any(w is None for w in windows) else windows
        # Scored already (and counted): not a second count of unseen levels.
        return np.atleast_2d(np.asarray(
            pipeline.transform(pipeline.columns_from_records(records, given),
                               count_unseen=False),
            dtype=np.float64))

    def compute(self, records: list[Any], windows: list[Any],
                scores: list[float]) -> DriftReport:
        """The report of these records alone (their inputs built at once)."""
        return compare(self.reference, self._inputs(records, windows),
                       self.bundle.feature_names, np.asarray(scores), self.level)
