"""The detector's parameters, in one flat set of names: `make_detector`'s
keywords, the training config's `model:` section and a saved bundle's
manifest spell them the same way.

`DetectorSettings` holds the detector-level ones: the training schedule,
the ensemble, the score mode, the label-aware mode, the seed and the
hardware. Each model declares its own (gendetect/models/<name>/params.py);
`DetectorParams` is the settings plus every registered model's parameters
under their flat names, with the defaults the models declare (generated from
the registry: no default is written twice). `model_params(name)` gives a
model its own dataclass back. Why each default is what it is:
gendetect/models/README.md.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gendetect.models.components.params import NetworkParams
from gendetect.models.registry import (
    ENSEMBLE,
    get_model,
    list_detector_kinds,
    list_models,
    model_flat_names,
)
from gendetect.models.settings import Hardware

SCORES = ("reconstruction", "discriminator", "combined")
AUTO_EPOCHS = 20
# The tail term's weight where tail_weight is None: beside the networks'
# reconstruction scores, and beside the discriminator alone.
TAIL_WEIGHT = 0.5
DISC_TAIL_WEIGHT = 0.0


@dataclass
class DetectorSettings(Hardware):
    # None: the automatic schedule (training_schedule); a number is used as
    # given, with batch_size and patience as given.
    max_epochs: int | None = None
    batch_size: int = 256
    patience: int = 3
    min_train_steps: int = 1000
    patience_steps: int = 100
    validation_fraction: float = 0.1
    # A network with a discriminator (the GAN), score="reconstruction":
    # the weight of the discriminator's verdict beside the errors.
    disc_weight: float = 0.0
    # "typical" divides each feature's error by its mean training error,
    # "none" keeps it, "auto" picks by whether the errors are likelihoods.
    error_scale: str = "auto"
    # Input tails (features/scaling.RobustScaler): a column compresses beyond
    # the larger of soft_limit and this quantile of its training |z|; the
    # second for networks that read the wide input (NetworkParams.
    # wide_input_tails). None: soft_limit alone. Why: models/README.md.
    soft_limit: float = 5.0
    soft_limit_quantile: float | None = 0.99
    wide_soft_limit_quantile: float | None = 0.999
    # Weight of the tail term (features/tails.py: how far out in its own
    # training tail each feature lies) beside the networks' score, both on
    # the common scale; 0 turns it off. None: TAIL_WEIGHT, or
    # DISC_TAIL_WEIGHT where the score is the discriminator alone
    # (effective_tail_weight). Why: models/README.md, "Tail term".
    tail_weight: float | None = None
    score_top_fraction: float = 1.0
    # A network's score is the power mean of its per-feature contributions
    # (1: the plain mean; 2: the root mean square, where one feature far off
    # counts more than several slightly off). Why: models/README.md.
    score_power: float = 1.0
    refit_trim: float = 0.0
    refit_epochs: int = 5
    ensemble: tuple[str, ...] = ("vae", "vae_mse")
    ensemble_weights: tuple[float, ...] = (1.0, 0.5)
    score: str = "reconstruction"
    # One confirmed fraud turns the head on (few-label mode below 20:
    # gendetect.models.labels.EARLY_STOP_MIN_FRAUDS).
    label_min_frauds: int = 1
    # Confirmed-genuine (cleared) rows count this many times in the
    # networks' training rows (1 = like any unlabelled row).
    label_genuine_weight: int = 2
    label_blend: float = 0.5
    # Weight of the cleared rows' neighbour term (models/neighbours.py:
    # distance to the k-th nearest cleared row) on the common scale, fitted
    # when fit(X, y) is given cleared rows (y == 0) and no confirmed fraud;
    # 0 turns it off. Why this value: models/README.md "Cleared rows".
    neighbour_weight: float = 4.0
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> typing.Self:
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
        for q in (self.soft_limit_quantile, self.wide_soft_limit_quantile):
            if q is not None and not 0.0 <= q <= 1.0:
                raise ValueError("soft_limit quantiles must be in [0, 1] (or None)")
        if self.tail_weight is not None and not self.tail_weight >= 0:
            raise ValueError(f"tail_weight must be >= 0 (or None), got {self.tail_weight}")
        if not 0.0 < self.score_top_fraction <= 1.0:
            raise ValueError("score_top_fraction must be in (0, 1]")
        if not self.neighbour_weight >= 0:
            raise ValueError(f"neighbour_weight must be >= 0, got {self.neighbour_weight}")
        if not 1.0 <= self.score_power <= 8.0:
            raise ValueError(f"score_power must be in [1, 8], got {self.score_power}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.label_min_frauds < 1 or self.label_blend < 0 or self.label_genuine_weight < 1:
            raise ValueError(
                "label_min_frauds and label_genuine_weight must be >= 1, label_blend >= 0"
            )
        if not 0 <= self.seed < 2**32:  # numpy's and torch's generators
            raise ValueError(f"seed must be within 0..{2**32 - 1}, got {self.seed}")
        for name in models:
            self.model_params(name)

    def model_params(self, name: str) -> NetworkParams:
        """Model `name`'s own parameters (its dataclass), checked."""
        return get_model(name).params_from(self.to_dict(), self.score)

    @property
    def effective_tail_weight(self) -> float:
        """The tail term's weight: tail_weight as given, else by the score
        mode. Bundles saved before the mode-dependent default hold their
        weight (0.5) explicitly, so they score as before."""
        if self.tail_weight is not None:
            return self.tail_weight
        return DISC_TAIL_WEIGHT if self.score == "discriminator" else TAIL_WEIGHT

    @property
    def uses_discriminator(self) -> bool:
        """Whether a score needs the discriminator's verdict: it is the score
        (or half of it), or it is added with a weight that is not 0."""
        return self.score != "reconstruction" or self.disc_weight != 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detector_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(DetectorSettings))


def _model_fields() -> list[tuple[str, Any, Any]]:
    """Every registered model's fields under their flat names; a name two
    models share must have one default."""
    out: dict[str, tuple[str, Any, Any]] = {}
    for name in list_models():
        cls = get_model(name).params
        hints = typing.get_type_hints(cls)
        for flat, f in cls.flat_fields().items():
            if flat in out and out[flat][2].default != f.default:
                raise ValueError(f"models disagree on the default of {flat!r}")
            out[flat] = (flat, hints[f.name], dataclasses.field(default=f.default))
    return list(out.values())


DetectorParams = dataclasses.make_dataclass(
    "DetectorParams", _model_fields(), bases=(DetectorSettings,)
)
DetectorParams.__module__ = __name__
DetectorParams.__doc__ = "The detector-level settings plus every model's parameters, flat."


def validate_params(kind: str | None, mapping: Mapping[str, Any]) -> None:
    """Check a detector's flat parameters (a training config's `model:`
    section) for `kind`, or for any kind when None: unknown keys, the
    detector's own checks, and each model's. A ValueError's message starts
    with the offending key where there is one."""
    raw = dict(mapping)
    kinds = list_detector_kinds() if kind is None else (kind,)
    if kind is not None and kind not in kinds:
        raise ValueError(f"unknown detector kind {kind!r}; choose from {list_detector_kinds()}")
    params = DetectorParams.from_dict(raw)
    models: set[str] = set()
    for k in kinds:
        models.update(params.ensemble if k == ENSEMBLE else (k,))
    allowed = set(detector_field_names()).union(*(model_flat_names(m) for m in models))
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{key} is not a parameter of a {kind!r} detector")
    for m in sorted(models):
        get_model(m).params_from(raw, params.score)


def training_schedule(n_train: int, params: DetectorSettings) -> tuple[int, int, int]:
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
