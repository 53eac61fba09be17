"""The settings of one training run and what it returns: plain dataclasses,
without torch or Lightning, so that parameters can be read and checked (and
a bundle scored) without importing the training machinery (training.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Hardware:
    """Where and how a module trains: Lightning's Trainer settings, shared by
    the detector's parameters and the training loop's config."""

    accelerator: str = "auto"
    # e.g. accelerator="gpu", devices=2, strategy="ddp" (num_nodes for
    # several machines).
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    checkpoint_dir: str | None = None
    # Epoch n/N with the losses (EpochProgress): a bar when stderr is a
    # terminal, a `gendetect.progress` log line per epoch otherwise.
    progress: bool = False

    def hardware(self) -> dict[str, Any]:
        """These settings alone, to pass on to another Hardware subclass."""
        return {f.name: getattr(self, f.name) for f in fields(Hardware)}


@dataclass
class TrainerSettings(Hardware):
    max_epochs: int = 20
    batch_size: int = 256
    patience: int = 3
    seed: int = 0
    # Prefix of the progress lines.
    name: str = ""


@dataclass
class TrainingResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    epochs_run: int = 0
    checkpoint_path: str | None = None
    # Rank of this process in a distributed fit (0 in a single process).
    global_rank: int = 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0
