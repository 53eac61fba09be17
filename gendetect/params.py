"""The detector's parameters: one flat set of names, as `make_detector`,
the training config's `model:` section and a saved bundle's manifest spell
them. Defaults are one set for all data sets (no per-dataset tuning); why
each default is what it is: gendetect/models/README.md.

`training_schedule` turns the schedule parameters into a batch size, an
epoch budget and a patience for a given number of training rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from gendetect.models.registry import list_models
from gendetect.models.training import Hardware

SCORES = ("reconstruction", "discriminator", "combined")
AUTO_EPOCHS = 20


@dataclass
class DetectorParams(Hardware):
    hidden: tuple[int, ...] = (64, 32)
    latent_dim: int = 8
    beta: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    # None: the automatic schedule (training_schedule); a number is used as
    # given, with batch_size and patience as given.
    max_epochs: int | None = None
    batch_size: int = 256
    patience: int = 3
    min_train_steps: int = 1000
    patience_steps: int = 100
    validation_fraction: float = 0.1
    # GAN, score="reconstruction": weight of the discriminator's verdict.
    disc_weight: float = 0.0
    gan_latent_noise: float = 0.5
    gan_feature_matching: bool = False
    gan_noisy_validation: bool = True
    # None: on (1.0) where the score uses the discriminator, off where not.
    gan_reference_weight: float | None = None
    gan_reference_kind: str = "gaussian"
    # "typical" divides each feature's error by its mean training error,
    # "none" keeps it, "auto" picks by whether the errors are likelihoods.
    error_scale: str = "auto"
    learned_variance: bool = True
    soft_limit: float = 5.0
    score_top_fraction: float = 1.0
    refit_trim: float = 0.0
    refit_epochs: int = 5
    ensemble: tuple[str, ...] = ("vae", "vae_mse")
    ensemble_weights: tuple[float, ...] = (1.0, 0.5)
    score: str = "reconstruction"
    label_min_frauds: int = 20
    label_blend: float = 0.5
    seed: int = 0

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

    @property
    def uses_discriminator(self) -> bool:
        """Whether a score needs the discriminator's verdict: it is the score
        (or half of it), or it is added with a weight that is not 0."""
        return self.score != "reconstruction" or self.disc_weight != 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_schedule(n_train: int, params: DetectorParams) -> tuple[int, int, int]:
    """(batch size, max epochs, patience) for `n_train` rows: one set of
    defaults that holds from 50 rows to millions.

    The budget is counted in optimisation steps: at least 8 steps per epoch
    (smaller batches, never below 16 rows), at least `min_train_steps` steps
    in all (epochs raised, at most 25x), and a patience of at least
    `patience_steps` steps. Above about 13k training rows nothing changes.
    An explicit max_epochs turns the schedule off: batch size, epochs and
    patience are then used as given. Why: gendetect/models/README.md.
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
