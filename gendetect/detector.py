"""Generative detectors on a numeric matrix: scaling, training, scoring.

A detector turns feature rows into a raw anomaly score (higher = more
anomalous) and per-feature contributions. For the VAE (learned decoder
variance) a contribution is the feature's Gaussian negative log-likelihood,
already on one scale across features. For the GAN (and a VAE without learned
variance) it is the squared reconstruction error divided by that feature's
typical error on training data: otherwise features that are merely hard to
reconstruct everywhere would drown the ones whose error is unusual. The GAN
can add its discriminator's verdict (disc_weight), or be scored by it
(score="discriminator" / "combined", see models/gan).

An ensemble takes a weighted mean of its members' scores after putting each
on a common scale fitted on training rows (median 0, 99th percentile 1). The
default pairs the NLL-scored VAE with a fixed-variance VAE scored by its
squared error: the likelihood ranks the bulk well (ROC AUC), the plain error
keeps large absolute deviations at the top (precision), and the mean beats
both on the handbook data. The GAN is not in the default: its score has a
long tail of false alarms that crowds the top of any combination.

A second, short training pass without the highest-scoring training rows
(refit_trim) is available against contaminated training data, but off: on
the handbook week (0.8% frauds in training) trimming 2% lowered the NLL
VAE's average precision from 0.25 to 0.19 and changed the fixed-variance
VAE by less than the seed-to-seed spread.

With labels (`fit(x, y)`, y = 1 / 0 / -1), confirmed frauds are left out
of everything that learns "normal", and with enough of them a boosted head
on the generative evidence gives the score (gendetect.models.labels).

Which networks exist, and how each is built, is the model registry's
business (gendetect.models.registry); this module only reads what a network
says about its own outputs (GenerativeNetwork.likelihood_errors,
extra_score). The ensemble is a detector-level combination of registered
models.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from gendetect.features.scaling import RobustScaler, fallback_spread, robust_center_spread
from gendetect.models.components import GenerativeModule
from gendetect.models.labels import FRAUD, BoostedHead, label_summary, normalise_labels
from gendetect.models.registry import ENSEMBLE, get_model, list_detector_kinds, list_models
from gendetect.models.training import Hardware, TrainingConfig, TrainingResult, fit_module

logger = logging.getLogger(__name__)

SCORES = ("reconstruction", "discriminator", "combined")

# Stand-in for a non-finite network output: the largest float32, so such a
# record ranks as the most anomalous instead of poisoning the score with NaN.
_MAX_OUTPUT = float(np.finfo(np.float32).max)


@dataclass
class DetectorParams(Hardware):
    """Defaults are one set for all data sets (no per-dataset tuning)."""

    hidden: tuple[int, ...] = (64, 32)
    latent_dim: int = 8
    beta: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    # None: the automatic schedule (20 epochs, more on small data, see
    # training_schedule); a number is used as given, with batch_size and
    # patience as given.
    max_epochs: int | None = None
    batch_size: int = 256
    patience: int = 3
    # Automatic schedule on small data: a floor on the optimisation steps and
    # on the patience, in steps (see training_schedule; 0 turns them off).
    min_train_steps: int = 1000
    patience_steps: int = 100
    validation_fraction: float = 0.1
    # GAN: weight of the discriminator's verdict next to reconstruction.
    disc_weight: float = 0.0
    # GAN: noise on the encoder's code during reconstruction training, and
    # the generator's adversarial target (feature matching or D's verdict).
    gan_latent_noise: float = 0.5
    gan_feature_matching: bool = False
    gan_noisy_validation: bool = True
    # GAN: weight of broadened reference records among the discriminator's
    # negatives (gan/loss.broadened_reference) and their kind. None = on
    # (1.0) where the score uses the discriminator, off where it does not:
    # the reconstruction-scored GAN keeps the training it was measured with.
    gan_reference_weight: float | None = None
    # Development week (07-18, 20k training rows, seed 0), score="discriminator":
    # ROC AUC 0.146 without a reference, 0.416 "mix", 0.781 "noise", 0.832
    # "gaussian"; score="combined" with "gaussian": 0.847.
    gan_reference_kind: str = "gaussian"
    # How per-feature errors are put on one scale before they are averaged:
    # "typical" divides by each feature's mean training error, "none" keeps them.
    error_scale: str = "auto"
    # VAE: decoder predicts a per-feature variance.
    learned_variance: bool = True
    # Input scaler: values beyond this many robust spreads are log-compressed.
    soft_limit: float = 5.0
    # A member's score is the mean of its largest per-feature contributions,
    # over this fraction of the features (1.0: all of them). See _top_mean.
    score_top_fraction: float = 1.0
    # Robustness to contaminated training data: after the first fit, drop
    # this fraction of the highest-scoring training rows and train on for
    # refit_epochs more epochs (0 turns the second pass off).
    refit_trim: float = 0.0
    refit_epochs: int = 5
    # Ensemble: its members and their weights. Each member's score is put on
    # a common scale first (median 0, 99th training percentile 1).
    ensemble: tuple[str, ...] = ("vae", "vae_mse")
    ensemble_weights: tuple[float, ...] = (1.0, 0.5)
    # What a network's score is made of: "reconstruction" (per-feature errors),
    # "discriminator" (the GAN's verdict alone, on the common scale) or
    # "combined" (both, equal weights on the common scale). The last two need
    # a network with a discriminator (the GAN).
    score: str = "reconstruction"
    # Label-aware mode (fit(X, y)): with at least this many confirmed frauds a
    # boosted head on the generative evidence learns what the labels teach;
    # with fewer the detector stays unsupervised and says so. 20 because the
    # head's early stopping holds out a stratified tenth (2 frauds at 20) and
    # a leaf needs several frauds: below that the head fits noise, and the
    # generative score alone ranks better (see labels.py).
    label_min_frauds: int = 20
    # Label-aware score = head log-odds + label_blend * the unsupervised score
    # on its common scale (median 0, 99th training percentile 1): the head
    # ranks the top of the list, the generative score orders the bulk the
    # trees leave flat. Development week (see models/labels.py): with all
    # labels blend 0 / 1 gave AP 0.711 / 0.692, with 10% of the frauds
    # labelled ROC AUC 0.870 / 0.879 at equal AP; 0.5 sits between.
    label_blend: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        # Scoring paths that skip the discriminator when disc_weight is 0 (the
        # bundle's batch blocks) must still run it where the score is made of
        # it; disc_weight itself only weighs it in score="reconstruction".
        if self.score in ("discriminator", "combined") and self.disc_weight == 0:
            self.disc_weight = 1.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DetectorParams:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown detector parameter(s): {sorted(unknown)}")
        values = dict(raw)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        if "ensemble" in values:
            values["ensemble"] = tuple(str(k) for k in values["ensemble"])
        if "ensemble_weights" in values:
            values["ensemble_weights"] = tuple(float(w) for w in values["ensemble_weights"])
        if isinstance(values.get("devices"), tuple):
            values["devices"] = list(values["devices"])
        params = cls(**values)
        params.validate()
        return params

    def validate(self) -> None:
        models = list_models()
        unknown = [k for k in self.ensemble if k not in models]
        if unknown or len(set(self.ensemble)) != len(self.ensemble) or not self.ensemble:
            raise ValueError(
                f"ensemble members must be distinct, from {models}: got {self.ensemble}"
            )
        if len(self.ensemble_weights) != len(self.ensemble):
            raise ValueError("ensemble_weights needs one weight per ensemble member")
        if any(w < 0 for w in self.ensemble_weights) or sum(self.ensemble_weights) <= 0:
            raise ValueError("ensemble_weights must be non-negative with a positive sum")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError("max_epochs must be >= 1 (or None for the automatic schedule)")
        if not 0.0 <= self.refit_trim < 1.0:
            raise ValueError("refit_trim must be in [0, 1)")
        if not 0.0 < self.score_top_fraction <= 1.0:
            raise ValueError("score_top_fraction must be in (0, 1]")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.label_min_frauds < 1 or self.label_blend < 0:
            raise ValueError("label_min_frauds must be >= 1 and label_blend >= 0")
        if not 0 <= self.seed < 2**32:  # numpy's and torch's generators
            raise ValueError(f"seed must be within 0..{2**32 - 1}, got {self.seed}")

    @property
    def gan_reference_weight_resolved(self) -> float:
        if self.gan_reference_weight is not None:
            return float(self.gan_reference_weight)
        return 0.0 if self.score == "reconstruction" else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AUTO_EPOCHS = 20


def training_schedule(n_train: int, params: DetectorParams) -> tuple[int, int, int]:
    """(batch size, max epochs, patience) for `n_train` rows: one set of
    defaults that holds from 50 rows to millions.

    The defaults (batch 256, 20 epochs, patience 3) were set on tens of
    thousands of rows, where an epoch is hundreds of steps. On 60 rows the
    same settings are one step per epoch: 20 steps in all, and a patience of
    3 steps on a 6-row validation set stops on noise, so the network is
    scored almost as initialised. Here the budget is counted in steps: at
    least 8 steps per epoch (smaller batches, never below 16 rows), at least
    `min_train_steps` steps in all (epochs raised, at most 25x), and a
    patience of at least `patience_steps` steps. Above about 13k training
    rows (20 epochs of 256-row batches already exceed the minimum) nothing
    changes, so the handbook figures stay as they were. An explicit
    max_epochs turns the schedule off: batch size, epochs and patience are
    then used as given.
    """
    if params.max_epochs is not None:
        return params.batch_size, params.max_epochs, params.patience
    batch = int(min(params.batch_size, max(16, math.ceil(n_train / 8))))
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = AUTO_EPOCHS
    if params.min_train_steps > 0:
        needed = math.ceil(params.min_train_steps / steps_per_epoch)
        epochs = min(max(epochs, needed), 25 * AUTO_EPOCHS)
    patience = max(params.patience, math.ceil(params.patience_steps / steps_per_epoch))
    return batch, int(epochs), int(patience)


def _top_mean(contributions: np.ndarray, fraction: float) -> np.ndarray:
    """Per row, the mean of the largest ceil(fraction * d) contributions.

    A fraud usually breaks a few features (an amount, a terminal's risk);
    averaging over all of them dilutes that with the noise of the features it
    leaves alone. Measured (ensemble, seed 0, four handbook weeks), pooling
    over the top two thirds changed average precision by +0.013 on the 15
    handbook features and by -0.012 on gendetect's own 20 features, at equal
    ROC AUC, and the ADBench mean ROC AUC by +0.001: no gain that holds
    across feature sets, so the default stays the plain mean (fraction 1.0).
    A mean rather than a sum keeps the scale independent of the feature count.
    """
    d = contributions.shape[1]
    k = max(1, math.ceil(fraction * d - 1e-9))
    if k >= d:
        return contributions.mean(axis=1)
    top = np.partition(contributions, d - k, axis=1)[:, d - k :]
    return top.mean(axis=1)


def _center_tail_spread(values: np.ndarray, q: float = 0.99) -> tuple[float, float]:
    """Median and the distance from it to the q-quantile.

    Scores are compared where it matters, in the upper tail: a member whose
    bulk is narrow but whose tail is long would dominate a combination scaled
    by the IQR, and push its own false alarms to the top.
    """
    median, high = np.quantile(values, [0.5, q])
    return float(median), float(fallback_spread(high - median, values, axis=None))


@dataclass
class NeuralDetector:
    """One registered network with the statistics that turn its outputs into a score."""

    kind: str
    params: DetectorParams
    n_features: int
    module: GenerativeModule | None = None
    feature_error_scale_: np.ndarray | None = None
    disc_center_spread_: tuple[float, float] = (0.0, 1.0)
    # The reconstruction score's median and robust spread on training rows:
    # its scale beside the discriminator's in score="combined".
    recon_center_spread_: tuple[float, float] = (0.0, 1.0)
    score_center_spread_: tuple[float, float] = (0.0, 1.0)
    training_: TrainingResult = field(default_factory=TrainingResult)

    def build(self) -> GenerativeModule:
        return get_model(self.kind).build(self.n_features, self.params)

    def fit(self, x_train: np.ndarray, x_val: np.ndarray) -> NeuralDetector:
        torch.manual_seed(self.params.seed)
        self.module = self.build()
        p = self.params
        batch_size, max_epochs, patience = training_schedule(len(x_train), p)
        config = TrainingConfig(
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            seed=p.seed,
            name=self.kind,
            **p.hardware(),
        )
        self.training_ = fit_module(self.module, x_train, x_val, config)
        if p.refit_trim > 0 and p.refit_epochs > 0:
            scores = self._fit_score_statistics(x_train)
            keep = scores <= np.quantile(scores, 1.0 - p.refit_trim)
            config.max_epochs = p.refit_epochs
            second = fit_module(self.module, x_train[keep], x_val, config)
            self.training_ = _merge(self.training_, second)
        self.score_center_spread_ = _center_tail_spread(self._fit_score_statistics(x_train))
        return self

    def _fit_score_statistics(self, x_train: np.ndarray) -> np.ndarray:
        """Fit the per-feature error scale (and the discriminator's centre)
        on training rows and return their scores: one forward pass for both,
        which is a third of a short fit's time on a million rows."""
        errors, disc = self._raw_outputs(x_train)
        self._set_error_scale(errors, disc)
        return self._score_from(errors, disc)[0]

    def _set_error_scale(self, errors: np.ndarray, disc: np.ndarray | None) -> None:
        mode = self.params.error_scale
        if mode == "auto":
            # A likelihood (the VAE with learned variance) is already on one scale.
            assert self.module is not None
            mode = "none" if self.module.model.likelihood_errors else "typical"
        if mode == "none":
            self.feature_error_scale_ = np.ones(errors.shape[1])
        elif mode == "typical":
            self.feature_error_scale_ = np.maximum(errors.mean(axis=0), 1e-8)
        else:
            q = float(mode.removeprefix("q"))
            self.feature_error_scale_ = np.maximum(np.quantile(errors, q, axis=0), 1e-8)
        if disc is not None:
            center, spread = robust_center_spread(disc, axis=None)
            self.disc_center_spread_ = (float(center), float(spread))
        elif self.params.score != "reconstruction":
            raise ValueError(
                f"score={self.params.score!r} needs a network with a discriminator "
                f"(the GAN); {self.kind!r} has none"
            )
        recon = _top_mean(errors / self.feature_error_scale_, self.params.score_top_fraction)
        center, spread = robust_center_spread(recon, axis=None)
        self.recon_center_spread_ = (float(center), float(spread))

    def _raw_outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        assert self.module is not None, "detector is not fitted"
        network = self.module.model
        with torch.inference_mode():
            t = torch.as_tensor(x, dtype=torch.float32)
            errors = _finite(network.feature_errors(t).numpy().astype(np.float64))
            extra = network.extra_score(t)
        return errors, None if extra is None else _finite(extra.numpy().astype(np.float64))

    def score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw score (n,), per-feature contributions (n, d))."""
        return self._score_from(*self._raw_outputs(x))

    def _score_from(
        self, errors: np.ndarray, disc: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.feature_error_scale_ is not None
        contributions = errors / self.feature_error_scale_
        score = _top_mean(contributions, self.params.score_top_fraction)
        if disc is None:
            return score, contributions
        center, spread = self.disc_center_spread_
        verdict = (disc - center) / spread
        mode = self.params.score
        if mode == "discriminator":
            # The explanations stay the per-feature errors: the verdict is
            # one number per record and says nothing about which feature.
            return verdict, contributions
        if mode == "combined":
            r_center, r_spread = self.recon_center_spread_
            return (score - r_center) / r_spread + verdict, contributions
        return score + self.params.disc_weight * verdict, contributions

    # ------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """What a bundle stores. The weights are the plain torch network's
        state dict (the same keys as before the models moved into packages)."""
        assert self.module is not None and self.feature_error_scale_ is not None
        buffer = io.BytesIO()
        torch.save(self.module.model.state_dict(), buffer)
        return {
            "kind": self.kind,
            "n_features": self.n_features,
            "feature_error_scale": self.feature_error_scale_.tolist(),
            "disc_center_spread": list(self.disc_center_spread_),
            "recon_center_spread": list(self.recon_center_spread_),
            "score_center_spread": list(self.score_center_spread_),
            "weights": buffer.getvalue(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], params: DetectorParams) -> NeuralDetector:
        det = cls(kind=state["kind"], params=params, n_features=int(state["n_features"]))
        det.module = det.build()
        # weights_only: loading never executes code from the artifact.
        weights = torch.load(io.BytesIO(state["weights"]), weights_only=True, map_location="cpu")
        det.module.model.load_state_dict(weights)
        det.module.eval()
        det.feature_error_scale_ = np.asarray(state["feature_error_scale"], dtype=np.float64)
        det.disc_center_spread_ = tuple(state["disc_center_spread"])  # type: ignore[assignment]
        det.score_center_spread_ = tuple(state["score_center_spread"])  # type: ignore[assignment]
        # Bundles written before score="combined" existed lack it (and never use it).
        det.recon_center_spread_ = tuple(state.get("recon_center_spread", (0.0, 1.0)))  # type: ignore[assignment]
        return det


@dataclass
class DetectorCore:
    """Scaler + one or more neural detectors (+ a label-aware head when the
    labels allow one): the numeric heart of a bundle."""

    kind: str
    params: DetectorParams
    scaler: RobustScaler = field(default_factory=RobustScaler)
    members: list[NeuralDetector] = field(default_factory=list)
    # Label-aware mode: the head, and the unsupervised score's common scale.
    head: BoostedHead | None = None
    unsupervised_center_spread_: tuple[float, float] = (0.0, 1.0)
    labels_: dict[str, Any] = field(default_factory=dict)

    def fit(self, x: np.ndarray, y: Any = None) -> DetectorCore:
        """Fit on rows `x`; `y` holds 1 (confirmed fraud), 0 (confirmed
        genuine), -1 / NaN (unknown), or is None. Confirmed frauds are left
        out of everything that learns "normal" (scaler, networks, the
        calibration rows); with at least label_min_frauds of them a
        boosted head learns from the labels on top of the networks."""
        kinds = list_detector_kinds()
        if self.kind not in kinds:
            raise ValueError(f"unknown detector kind {self.kind!r}; choose from {kinds}")
        labels = normalise_labels(y, len(x))
        # All-unknown labels select every row: exactly the unlabelled fit.
        normal = np.flatnonzero(labels != FRAUD)
        if len(normal) < 2:
            raise ValueError("fit needs at least 2 rows that are not confirmed frauds")
        self.scaler = RobustScaler(soft_limit=self.params.soft_limit).fit(x[normal])
        z = self.scaler.transform(x)
        train_rel, val_rel = _split(len(normal), self.params.validation_fraction, self.params.seed)
        train_idx, val_idx = normal[train_rel], normal[val_rel]
        members = list(self.params.ensemble) if self.kind == ENSEMBLE else [self.kind]
        self.members = [
            NeuralDetector(kind=k, params=self.params, n_features=z.shape[1]).fit(
                z[train_idx], z[val_idx]
            )
            for k in members
        ]
        self.validation_index_ = val_idx
        self.head = None
        self._fit_head(z, labels, train_idx)
        return self

    def _fit_head(self, z: np.ndarray, labels: np.ndarray, train_idx: np.ndarray) -> None:
        summary = label_summary(labels)
        n_frauds, need = summary["frauds"], self.params.label_min_frauds
        self.labels_ = {**summary, "min_frauds": need}
        if n_frauds < need:
            self.labels_["mode"] = "unsupervised"
            if n_frauds or summary["genuine"]:
                self.labels_["reason"] = (
                    f"{n_frauds} confirmed fraud(s), fewer than label_min_frauds={need}: "
                    "the labels only kept those frauds out of the normal training data"
                )
                logger.warning("label-aware mode off: %s", self.labels_["reason"])
            return
        # The head learns on the networks' training rows (unknown and genuine
        # as negatives) plus every confirmed fraud. The validation rows stay
        # out: they calibrate the risk and the threshold, and a head that had
        # seen them would put the threshold too low.
        frauds = np.flatnonzero(labels == FRAUD)
        rows = np.sort(np.concatenate([train_idx, frauds]))
        _, contributions, member_scores = self._unsupervised(z[rows])
        evidence = self._evidence(z[rows], contributions, member_scores)
        target = (labels[rows] == FRAUD).astype(np.int8)
        head = BoostedHead().fit(evidence, target, self.params.seed)
        self.head = head
        train_scores = self._unsupervised(z[train_idx])[0]
        self.unsupervised_center_spread_ = _center_tail_spread(train_scores)
        self.labels_.update({"mode": "label-aware", "head": "boosting", "trees": head.n_trees})
        logger.info(
            "label-aware mode: %d confirmed fraud(s), %d genuine, %d unknown; %d trees",
            n_frauds,
            summary["genuine"],
            summary["unknown"],
            head.n_trees,
        )

    @property
    def label_aware(self) -> bool:
        return self.head is not None

    def score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self.scaler.transform(x)
        score, contributions, member_scores = self._unsupervised(z)
        if self.head is None:
            return score, contributions
        logits, attributions = self.head.decision(self._evidence(z, contributions, member_scores))
        center, spread = self.unsupervised_center_spread_
        unsupervised = (score - center) / spread
        blend = self.params.label_blend
        # Per-feature explanations of the label-aware score: the head's path
        # attributions of a feature's own columns (its value and its error),
        # the member-score columns and the blended unsupervised part shared
        # out by the generative contributions. Only the parts that push the
        # score up explain an alert; a tiny share of the generative
        # contributions keeps every row's total positive.
        d = z.shape[1]
        share = contributions / np.maximum(contributions.sum(axis=1, keepdims=True), 1e-12)
        per_feature = attributions[:, :d] + attributions[:, d : 2 * d]
        per_feature = per_feature + attributions[:, 2 * d :].sum(axis=1, keepdims=True) * share
        pushed = blend * np.maximum(unsupervised, 0.0)[:, None] * share
        explained = np.maximum(per_feature, 0.0) + pushed
        return logits + blend * unsupervised, explained + 1e-6 * share

    def _unsupervised(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(score, contributions, each member's score on its common scale)."""
        if len(self.members) == 1:
            member = self.members[0]
            s, contrib = member.score_parts(z)
            center, spread = member.score_center_spread_
            return s, contrib, [(s - center) / spread]
        weights = self._weights()
        score = np.zeros(len(z))
        contributions = np.zeros(z.shape)
        scaled = []
        for member, weight in zip(self.members, weights, strict=True):
            s, contrib = member.score_parts(z)
            center, spread = member.score_center_spread_
            scaled.append((s - center) / spread)
            score += weight * scaled[-1]
            contributions += weight * contrib / spread
        return score, contributions, scaled

    @staticmethod
    def _evidence(
        z: np.ndarray, contributions: np.ndarray, member_scores: list[np.ndarray]
    ) -> np.ndarray:
        """The head's columns: scaled features, log generative error per
        feature (the log tames NLL tails for the trees' binning), and each
        member's score. Column order is what attributions map back by."""
        return np.column_stack([z, np.log1p(np.maximum(contributions, 0.0)), *member_scores])

    def label_state(self) -> dict[str, Any] | None:
        """What a bundle stores of the label-aware mode (None when unsupervised)."""
        if self.head is None:
            return None
        return {
            "head": self.head.to_dict(),
            "unsupervised_center_spread": list(self.unsupervised_center_spread_),
            "labels": self.labels_,
        }

    def load_label_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.head = BoostedHead.from_dict(state["head"])
        self.unsupervised_center_spread_ = tuple(state["unsupervised_center_spread"])  # type: ignore[assignment]
        self.labels_ = dict(state.get("labels", {}))

    def _weights(self) -> np.ndarray:
        by_kind = dict(zip(self.params.ensemble, self.params.ensemble_weights, strict=True))
        weights = np.array([by_kind.get(m.kind, 1.0) for m in self.members], dtype=np.float64)
        return weights / weights.sum()

    def training_results(self) -> dict[str, TrainingResult]:
        return {m.kind: m.training_ for m in self.members}

    @property
    def is_global_zero(self) -> bool:
        """False in the other ranks of a distributed fit, whose copy of the
        detector should not be saved or registered (rank 0's is the result)."""
        return all(m.training_.is_global_zero for m in self.members)


def _finite(values: np.ndarray) -> np.ndarray:
    """Network outputs with NaN or +inf as the largest float32 (most
    anomalous) and -inf as its negative. Inputs are clipped by the scaler
    (scaling.CLIP_ROBUST_UNITS), so this is the last guard, not a path that
    validated records take."""
    if np.isfinite(values).all():
        return values
    return np.nan_to_num(values, nan=_MAX_OUTPUT, posinf=_MAX_OUTPUT, neginf=-_MAX_OUTPUT)


def _merge(first: TrainingResult, second: TrainingResult) -> TrainingResult:
    """One record of a two-pass fit: histories concatenated, epochs renumbered."""
    offset = first.epochs_run
    rows = [*first.history, *({**r, "epoch": r["epoch"] + offset} for r in second.history)]
    return TrainingResult(
        history=rows,
        best_epoch=second.best_epoch + offset,
        best_val_loss=second.best_val_loss,
        seconds=first.seconds + second.seconds,
        epochs_run=offset + second.epochs_run,
        checkpoint_path=second.checkpoint_path or first.checkpoint_path,
    )


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split; validation holds at least one row."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * fraction)), n - 1) if n > 1 else 0
    if n_val == 0:
        return order, order
    return np.sort(order[n_val:]), np.sort(order[:n_val])
