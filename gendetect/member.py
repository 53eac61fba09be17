"""One network of a detector, with the statistics that turn its outputs
into a score.

For the VAE with learned decoder variance a per-feature contribution is the
feature's Gaussian negative log-likelihood, already on one scale across
features. For the GAN (and a VAE without learned variance) it is the squared
reconstruction error divided by that feature's typical error on training
data: otherwise features that are merely hard to reconstruct everywhere
would drown the ones whose error is unusual. The GAN can add its
discriminator's verdict (disc_weight), or be scored by it
(score="discriminator" / "combined", see models/gan).

Which networks exist, and how each is built, is the model registry's
business (gendetect.models.registry); this module only reads what a network
says about its own outputs (GenerativeNetwork.likelihood_errors,
extra_score).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gendetect.features.scaling import fallback_spread, robust_center_spread
from gendetect.models.components import GenerativeNetwork
from gendetect.models.registry import get_model
from gendetect.models.settings import TrainerSettings, TrainingResult
from gendetect.params import DetectorParams, training_schedule

# Stand-in for a non-finite network output: the largest float32, so such a
# record ranks as the most anomalous instead of poisoning the score with NaN.
_MAX_OUTPUT = float(np.finfo(np.float32).max)


@dataclass
class NeuralDetector:
    kind: str
    params: DetectorParams
    n_features: int
    # The plain torch network: what scores (a LightningModule wraps it only
    # while it trains).
    network: GenerativeNetwork | None = None
    feature_error_scale_: np.ndarray | None = None
    disc_center_spread_: tuple[float, float] = (0.0, 1.0)
    # The reconstruction score's median and robust spread on training rows:
    # its scale beside the discriminator's in score="combined".
    recon_center_spread_: tuple[float, float] = (0.0, 1.0)
    # Median and tail spread of the score on training rows: the ensemble's
    # and the label-aware blend's common scale.
    score_center_spread_: tuple[float, float] = (0.0, 1.0)
    # The power of the mean over features (params.score_power), fixed at fit
    # and kept in the bundle: a bundle saved before it existed pools with
    # the plain mean (1) whatever the default has become since.
    score_power_: float = 1.0
    training_: TrainingResult = field(default_factory=TrainingResult)

    def fit(self, x_train: np.ndarray, x_val: np.ndarray) -> NeuralDetector:
        # Lightning is imported by training only: a scoring process never needs it.
        from gendetect.models.training import fit_module

        torch.manual_seed(self.params.seed)
        self.score_power_ = float(self.params.score_power)
        spec = get_model(self.kind)
        model_params = self.params.model_params(self.kind)
        module = spec.build_module(self.n_features, model_params)
        self.network = module.model
        p = self.params
        batch_size, max_epochs, patience = training_schedule(len(x_train), p)
        limit = model_params.max_train_steps
        if limit is not None and p.max_epochs is None:
            # The model's own step budget, never below the schedule's minimum.
            steps_per_epoch = max(1, math.ceil(len(x_train) / batch_size))
            budget = max(limit, p.min_train_steps)
            max_epochs = min(max_epochs, max(1, math.ceil(budget / steps_per_epoch)))
        settings = TrainerSettings(
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            seed=p.seed,
            name=self.kind,
            **p.hardware(),
        )
        self.training_ = fit_module(module, x_train, x_val, settings)
        if p.refit_trim > 0 and p.refit_epochs > 0:
            scores = self._fit_score_statistics(x_train)
            keep = scores <= np.quantile(scores, 1.0 - p.refit_trim)
            settings.max_epochs = p.refit_epochs
            second = fit_module(module, x_train[keep], x_val, settings)
            self.training_ = _merge(self.training_, second)
        module.after_fit(x_train, p.seed)
        self.score_center_spread_ = center_tail_spread(self._fit_score_statistics(x_train))
        return self

    def _fit_score_statistics(self, x_train: np.ndarray) -> np.ndarray:
        """Fit the per-feature error scale (and the discriminator's centre)
        on training rows and return their scores: one forward pass for both."""
        t = torch.as_tensor(x_train, dtype=torch.float32)
        errors, disc = self.raw_outputs(t, with_discriminator=True)
        observed = observed_cells(x_train)
        self._set_error_scale(errors, disc, observed)
        return self.score_from(errors, disc, observed)[0]

    def _set_error_scale(
        self, errors: np.ndarray, disc: np.ndarray | None, observed: np.ndarray | None = None
    ) -> None:
        mode = self.params.error_scale
        if mode == "auto":
            # A likelihood (the VAE with learned variance) is already on one scale.
            assert self.network is not None
            mode = "none" if self.network.likelihood_errors else "typical"
        if mode == "none":
            self.feature_error_scale_ = np.ones(errors.shape[1])
        elif observed is not None:
            # A feature's typical error over the rows that have a value.
            seen = np.where(observed, errors, np.nan)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a column of gaps only
                typical = (np.nanmean(seen, axis=0) if mode == "typical"
                           else np.nanquantile(seen, float(mode.removeprefix("q")), axis=0))
            self.feature_error_scale_ = np.maximum(np.nan_to_num(typical, nan=1.0), 1e-8)
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
        recon = top_mean(errors / self.feature_error_scale_, self.params.score_top_fraction,
                         observed, self.score_power_)
        center, spread = robust_center_spread(recon, axis=None)
        self.recon_center_spread_ = (float(center), float(spread))

    def raw_outputs(
        self, t: torch.Tensor, *, with_discriminator: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-feature errors and (when asked for and the network has one)
        the discriminator's raw verdict, for a float32 block `t`."""
        network = self.network
        assert network is not None, "detector is not fitted"
        with torch.inference_mode():
            errors = finite(network.feature_errors(t).numpy().astype(np.float64))
            extra = network.extra_score(t) if with_discriminator else None
        return errors, None if extra is None else finite(extra.numpy().astype(np.float64))

    def expected(self, t: torch.Tensor) -> np.ndarray | None:
        """The network's reconstruction of a float32 block `t` (scaled
        space), None for a network without one."""
        network = self.network
        assert network is not None, "detector is not fitted"
        with torch.inference_mode():
            recon = network.reconstruction(t)
        return None if recon is None else recon.numpy().astype(np.float64)

    def score_from(
        self, errors: np.ndarray, disc: np.ndarray | None, observed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw score (n,), per-feature contributions (n, d)) from the
        outputs; with `observed` (False at gaps, whose errors are 0) the
        score averages over the observed cells only."""
        assert self.feature_error_scale_ is not None
        contributions = errors / self.feature_error_scale_
        score = top_mean(contributions, self.params.score_top_fraction, observed,
                         self.score_power_)
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
        assert self.network is not None and self.feature_error_scale_ is not None
        buffer = io.BytesIO()
        torch.save(self.network.state_dict(), buffer)
        return {
            "kind": self.kind,
            "n_features": self.n_features,
            "feature_error_scale": self.feature_error_scale_.tolist(),
            "disc_center_spread": list(self.disc_center_spread_),
            "recon_center_spread": list(self.recon_center_spread_),
            "score_center_spread": list(self.score_center_spread_),
            "score_power": self.score_power_,
            **({"extra_score": extra} if (extra := self.network.extra_score_state()) else {}),
            "weights": buffer.getvalue(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], params: DetectorParams) -> NeuralDetector:
        det = cls(kind=state["kind"], params=params, n_features=int(state["n_features"]))
        spec = get_model(det.kind)
        det.network = spec.build_network(det.n_features, params.model_params(det.kind))
        # weights_only: loading never executes code from the artifact.
        weights = torch.load(io.BytesIO(state["weights"]), weights_only=True, map_location="cpu")
        det.network.load_state_dict(weights)
        # Older bundles (and networks without such statistics) have none.
        det.network.load_extra_score_state(state.get("extra_score"))
        det.network.eval()
        det.feature_error_scale_ = np.asarray(state["feature_error_scale"], dtype=np.float64)
        det.disc_center_spread_ = tuple(state["disc_center_spread"])  # type: ignore[assignment]
        det.score_center_spread_ = tuple(state["score_center_spread"])  # type: ignore[assignment]
        # Bundles written before score="combined" existed lack it (and never use it).
        det.recon_center_spread_ = tuple(state.get("recon_center_spread", (0.0, 1.0)))  # type: ignore[assignment]
        # Bundles written before score_power pool with the plain mean.
        det.score_power_ = float(state.get("score_power", 1.0))
        return det


def observed_cells(x: np.ndarray) -> np.ndarray | None:
    """False where a scaled input is a gap (NaN); None when there is none."""
    missing = np.isnan(x)
    return None if not missing.any() else ~missing


def top_mean(
    contributions: np.ndarray,
    fraction: float,
    observed: np.ndarray | None = None,
    power: float = 1.0,
) -> np.ndarray:
    """Per row, the mean of the largest ceil(fraction * d) contributions (a
    mean, not a sum: the scale does not depend on the feature count). With
    `observed`, d is the row's number of observed cells and only they count:
    a gap neither raises the score (it has no error) nor lowers it (it is
    not averaged in as a perfect reconstruction). With `power` p != 1, the
    power mean (mean of c^p)^(1/p) of the same contributions (non-negative:
    errors, shifted likelihoods; a negative one counts as 0)."""
    if power != 1.0:
        raised = np.maximum(contributions, 0.0) ** power
        return top_mean(raised, fraction, observed) ** (1.0 / power)
    if observed is not None and not observed.all():
        return _observed_top_mean(contributions, fraction, observed)
    d = contributions.shape[1]
    k = max(1, math.ceil(fraction * d - 1e-9))
    if k >= d:
        return contributions.mean(axis=1)
    top = np.partition(contributions, d - k, axis=1)[:, d - k :]
    return top.mean(axis=1)


def _observed_top_mean(
    contributions: np.ndarray, fraction: float, observed: np.ndarray
) -> np.ndarray:
    n_observed = np.maximum(observed.sum(axis=1), 1)
    if fraction >= 1.0:
        return np.where(observed, contributions, 0.0).sum(axis=1) / n_observed
    k = np.maximum(1, np.ceil(fraction * n_observed - 1e-9).astype(np.int64))
    ordered = -np.sort(-np.where(observed, contributions, -np.inf), axis=1)
    cumulative = np.cumsum(np.where(np.isfinite(ordered), ordered, 0.0), axis=1)
    return cumulative[np.arange(len(k)), k - 1] / k


def center_tail_spread(values: np.ndarray, q: float = 0.99) -> tuple[float, float]:
    """Median and the distance from it to the q-quantile: scores are compared
    where it matters, in the upper tail."""
    median, high = np.quantile(values, [0.5, q])
    return float(median), float(fallback_spread(high - median, values, axis=None))


def finite(values: np.ndarray) -> np.ndarray:
    """Network outputs with NaN or +inf as the largest float32 (most
    anomalous) and -inf as its negative. Inputs are clipped by the scaler,
    so this is the last guard, not a path that validated records take."""
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
