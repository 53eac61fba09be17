"""The parameters every network has, and how a model's parameters are
spelt in the detector's one flat set of names (make_detector's keywords,
the training config's `model:` section, a bundle's manifest).

A model's parameters are a dataclass subclassing `NetworkParams`, declared
once in its folder (gendetect/models/<name>/params.py) with the defaults.
The shared fields keep their names in the flat set; the model's own fields
are prefixed with its `flat_prefix` ("gan_latent_noise"). No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

SHARED = ("hidden", "latent_dim", "lr", "weight_decay")


@dataclass
class NetworkParams:
    hidden: tuple[int, ...] = (64, 32)
    latent_dim: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5

    flat_prefix: ClassVar[str] = ""

    @classmethod
    def flat_name(cls, name: str) -> str:
        return name if name in SHARED else cls.flat_prefix + name

    @classmethod
    def flat_fields(cls) -> dict[str, dataclasses.Field[Any]]:
        """The flat name of every field, with its field."""
        return {cls.flat_name(f.name): f for f in dataclasses.fields(cls)}

    @classmethod
    def from_flat(cls, flat: dict[str, Any], fixed: dict[str, Any] | None = None) -> Self:
        """The model's parameters from flat names (others are ignored), then
        `fixed` (what a registered variant always sets), checked."""
        values = {f.name: flat[n] for n, f in cls.flat_fields().items() if n in flat}
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        params = cls(**{**values, **(fixed or {})})
        params.validate()
        return params

    def validate(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be one or more positive sizes, got {self.hidden}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")

    @property
    def wide_input_tails(self) -> bool:
        """Whether the network reads the input with the scaler's wide tail
        limits (wide_soft_limit_quantile) instead of the default ones; each
        model says, measured: gendetect/models/README.md "Input tails"."""
        return False

    @property
    def max_train_steps(self) -> int | None:
        """Optimisation steps at most under the automatic schedule (None: the
        schedule's epochs); a model that needs fewer says so."""
        return None

    def for_score(self, score: str) -> Self:
        """These parameters for a detector scored by `score` (the GAN's
        discriminator is trained differently when the score uses it)."""
        return self
