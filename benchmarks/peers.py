"""Registry of detectors compared by the quality benchmark.

Every entry is a name plus a factory `seed -> detector`; a detector has
`fit(X)` (unlabelled rows) and `decision_function(X)` returning one score per
row, higher = more anomalous. Peers wrap scikit-learn and PyOD; the gendetect
rows are discovered at run time from `gendetect.make_detector`, so they appear
as soon as the library provides it, with no change here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.ensemble import IsolationForest

from benchmarks.protocols import HANDBOOK_FEATURES

HANDBOOK = "handbook"
ADBENCH = "adbench"
ALL_TRACKS = frozenset({HANDBOOK, ADBENCH})
# DTE's clean-normal protocol: the peers it compares (IsolationForest, kNN,
# ECOD, PyOD's VAE) beside gendetect.
CLEAN_NORMAL = "clean_normal"
CLEAN_NORMAL_PEERS: tuple[str, ...] = ("iforest_100", "pyod_knn", "pyod_ecod", "pyod_vae")
GENDETECT_KINDS: tuple[str, ...] = ("vae", "gan", "ensemble")


class Detector(Protocol):
    def fit(self, x: Any) -> Any: ...

    def decision_function(self, x: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    factory: Callable[[int], Detector]
    tracks: frozenset[str] = ALL_TRACKS
    # "features": fit/score on the scaled feature matrix of the track.
    # "raw": handbook only, fit/score on `protocols.raw_pipeline_frames` frames
    # (the detector computes its own features).
    input: str = "features"
    family: str = "peer"
    params: dict[str, Any] = field(default_factory=dict)


class _IsolationForest:
    """sklearn's IsolationForest with the sign flipped: its score_samples is
    higher for normal points."""

    def __init__(self, n_estimators: int, seed: int) -> None:
        self._model = IsolationForest(n_estimators=n_estimators, random_state=seed, n_jobs=1)

    def fit(self, x: np.ndarray) -> _IsolationForest:
        self._model.fit(x)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return -self._model.score_samples(x)


class TwoColumnRule:
    """z(amount) + z(terminal 7-day risk): the simplest score that targets the
    two fraud signals a card simulator plants (large amounts, compromised
    terminals). z-scores use the training rows' mean and std, so it is correct
    whether or not the input was already standardised."""

    def __init__(self, columns: tuple[int, ...]) -> None:
        self._columns = list(columns)
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> TwoColumnRule:
        cols = np.asarray(x, dtype=np.float64)[:, self._columns]
        self._mean = cols.mean(axis=0)
        std = cols.std(axis=0)
        self._std = np.where(std > 0, std, 1.0)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        if self._mean is None or self._std is None:
            raise RuntimeError("fit first")
        cols = np.asarray(x, dtype=np.float64)[:, self._columns]
        return ((cols - self._mean) / self._std).sum(axis=1)


def _pyod(cls_path: str, seeded: bool, **kwargs: Any) -> Callable[[int], Detector]:
    module_name, cls_name = cls_path.rsplit(".", 1)

    def factory(seed: int) -> Detector:
        # Imported lazily: PyOD pulls in torch, and a run restricted to other
        # detectors should not pay for it.
        import importlib

        cls = getattr(importlib.import_module(module_name), cls_name)
        return cls(**kwargs, **({"random_state": seed} if seeded else {}))

    return factory


def _pyod_deep(cls_path: str) -> Callable[[int], Detector]:
    # Library defaults otherwise (epochs, layers, batch size): the anchors are
    # "PyOD defaults". verbose=0 silences the per-epoch progress bar; the
    # device is pinned so a visible GPU cannot change the numbers.
    return _pyod(cls_path, seeded=True, verbose=0, device="cpu")


def peer_specs() -> list[DetectorSpec]:
    amount = HANDBOOK_FEATURES.index("TX_AMOUNT")
    risk7 = HANDBOOK_FEATURES.index("TERMINAL_ID_RISK_7DAY_WINDOW")
    return [
        DetectorSpec(
            "iforest_100",
            lambda seed: _IsolationForest(100, seed),
            params={"n_estimators": 100},
        ),
        DetectorSpec(
            # The handbook's own anchor uses 10 trees.
            "iforest_10",
            lambda seed: _IsolationForest(10, seed),
            tracks=frozenset({HANDBOOK}),
            params={"n_estimators": 10},
        ),
        DetectorSpec("pyod_autoencoder", _pyod_deep("pyod.models.auto_encoder.AutoEncoder")),
        DetectorSpec("pyod_vae", _pyod_deep("pyod.models.vae.VAE")),
        # ECOD is deterministic and takes no random_state.
        DetectorSpec("pyod_ecod", _pyod("pyod.models.ecod.ECOD", seeded=False, n_jobs=1)),
        # DTE's kNN: PyOD's defaults (5 neighbours, largest distance); the
        # clean-normal track only (quadratic on the other tracks' rows).
        DetectorSpec(
            "pyod_knn",
            _pyod("pyod.models.knn.KNN", seeded=False, n_jobs=1),
            tracks=frozenset({CLEAN_NORMAL}),
            params={"n_neighbors": 5},
        ),
        DetectorSpec(
            "two_column_rule",
            lambda seed: TwoColumnRule((amount, risk7)),
            tracks=frozenset({HANDBOOK}),
            family="baseline",
            params={"columns": ["TX_AMOUNT", "TERMINAL_ID_RISK_7DAY_WINDOW"]},
        ),
    ]


def gendetect_specs() -> tuple[list[DetectorSpec], list[str]]:
    """gendetect rows, or none plus a note while `make_detector` is missing.

    Only the import is checked here; a kind that make_detector rejects is
    reported as skipped by the harness when it first tries to build it.
    """
    try:
        import gendetect

        make_detector = gendetect.make_detector
    except (ImportError, AttributeError) as exc:
        return [], [f"gendetect rows skipped: gendetect.make_detector unavailable ({exc})"]

    def factory_for(kind: str) -> Callable[[int], Detector]:
        return lambda seed: make_detector(kind, seed=seed)

    vae_gan = {"ensemble": ("vae", "gan"), "ensemble_weights": (1.0, 1.0)}
    # (row name suffix, kind, extra parameters). "vae_gan" is the ensemble the
    # product promises by name: VAE + GAN, equal weights (the default
    # ensemble is VAE-NLL + plain-error VAE, which scores better).
    variants: list[tuple[str, str, dict[str, Any]]] = [
        *((kind, kind, {}) for kind in GENDETECT_KINDS),
        ("vae_gan", "ensemble", vae_gan),
        # The GAN scored by its discriminator, alone and with the reconstruction.
        ("gan_disc", "gan", {"score": "discriminator"}),
        ("gan_combined", "gan", {"score": "combined"}),
    ]

    def build(kind: str, extra: dict[str, Any]) -> Callable[[int], Detector]:
        return lambda seed: make_detector(kind, seed=seed, **extra)

    specs = [
        DetectorSpec(
            f"gendetect_{name}",
            build(kind, extra),
            family="gendetect",
            params={
                k: list(v) if isinstance(v, tuple) else v
                for k, v in extra.items()
                if k in ("ensemble", "score")
            },
        )
        for name, kind, extra in variants
    ]
    # The full pipeline: raw columns in, gendetect's own features.
    specs += [
        DetectorSpec(
            f"gendetect_{name}_raw",
            build(kind, {**extra, "schema": "transactions"}),
            tracks=frozenset({HANDBOOK}),
            input="raw",
            family="gendetect",
            params={"schema": "transactions",
                    **{k: list(v) for k, v in extra.items() if k == "ensemble"}},
        )
        for name, kind, extra in variants
    ]
    return specs, []


# --------------------------------------------------------------------------- labelled track
#
# Detectors of the labelled track take fit(X, y) with y = 1 (labelled fraud),
# 0 (labelled genuine) or -1 (unknown). gendetect takes y as it is; the
# supervised peers cannot tell unknown from genuine and see -1 as 0 (the
# usual positive-unlabelled reading).


class _Supervised:
    """A scikit-learn style classifier scored by its fraud probability."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Supervised:
        self._model.fit(x, (np.asarray(y) == 1).astype(np.int64))
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        proba = np.asarray(self._model.predict_proba(x))
        # XGBOD returns the fraud probability alone, sklearn both columns.
        return proba if proba.ndim == 1 else proba[:, 1]


def _hgb(seed: int) -> Detector:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Library defaults (early stopping on a tenth above 10k rows).
    return _Supervised(HistGradientBoostingClassifier(random_state=seed))


def _xgbod(seed: int) -> Detector:
    # Members that finish on 67k rows: XGBOD's default list includes
    # quadratic detectors (kNN, LOF) that gave no result in 30 minutes.
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest
    from pyod.models.xgbod import XGBOD

    members = [IForest(random_state=seed, n_jobs=1), HBOS(), ECOD()]
    return _Supervised(XGBOD(estimator_list=members, random_state=seed, n_jobs=1))


def _catboost(seed: int) -> Detector:
    from catboost import CatBoostClassifier

    # ADGym's strongest few-label peer: library defaults, a fixed seed, one
    # thread (the shared machine), no console output.
    return _Supervised(
        CatBoostClassifier(random_seed=seed, thread_count=1, verbose=0, allow_writing_files=False)
    )


def _handbook_xgboost(seed: int) -> Detector:
    from xgboost import XGBClassifier

    # The Fraud Detection Handbook's XGBoost (chapter 5, "Model selection":
    # grid max_depth {3, 6, 9} x n_estimators {25, 50, 100} x learning_rate
    # {0.1, 0.3}, chosen by prequential validation; the chapters after it
    # train 100 trees of depth 6 at learning rate 0.1). One thread, seeded.
    return _Supervised(
        XGBClassifier(
            n_estimators=100, max_depth=6, learning_rate=0.1, random_state=seed, n_jobs=1,
            verbosity=0,
        )
    )


FEW_LABEL = "few_label"


def _xgbod_spec(track: str) -> DetectorSpec:
    """PyOD's XGBOD (its unsupervised stack: IForest, HBOS, ECOD) in `track`."""
    return DetectorSpec("pyod_xgbod", _xgbod, tracks=frozenset({track}), family="supervised",
                        params={"estimator_list": ["IForest", "HBOS", "ECOD"]})


def few_label_specs() -> list[DetectorSpec]:
    """The few-label track's peers (ADGym's setting: unknown rows read as
    normal); gendetect's label-aware rows are fitted by the harness on top of
    one unsupervised fit per (file, seed)."""
    return [
        DetectorSpec("catboost", _catboost, tracks=frozenset({FEW_LABEL}), family="supervised"),
        _xgbod_spec(FEW_LABEL),
    ]


def labelled_specs() -> list[DetectorSpec]:
    """Rows of the labelled track: gendetect's label-aware kinds and the
    supervised peers, on the same scaled handbook features."""
    specs = [
        DetectorSpec("hgb_classifier", _hgb, tracks=frozenset({HANDBOOK}), family="supervised"),
        _xgbod_spec(HANDBOOK),
        DetectorSpec(
            "handbook_xgboost",
            _handbook_xgboost,
            tracks=frozenset({HANDBOOK}),
            family="supervised",
            params={"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1},
        ),
    ]
    try:
        import gendetect

        make_detector = gendetect.make_detector
    except (ImportError, AttributeError):
        return specs

    def build(kind: str) -> Callable[[int], Detector]:
        return lambda seed: make_detector(kind, seed=seed)

    specs += [
        DetectorSpec(
            f"gendetect_{kind}_labels", build(kind), tracks=frozenset({HANDBOOK}),
            family="gendetect",
        )
        for kind in GENDETECT_KINDS
    ]
    return specs


def all_specs(only: set[str] | None = None) -> tuple[list[DetectorSpec], list[str]]:
    gen, notes = gendetect_specs()
    specs = peer_specs() + gen
    if only is not None:
        unknown = only - {s.name for s in specs}
        if unknown:
            notes.append(f"unknown or unavailable detectors ignored: {sorted(unknown)}")
        specs = [s for s in specs if s.name in only]
    return specs, notes
