"""Lightning callbacks of a fit: best weights and loss history, and the
epochs' progress (a bar on a terminal, a log line per epoch otherwise)."""

from __future__ import annotations

import copy
import math
import time
from typing import Any, TextIO

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from gendetect.progress import ProgressReport

# Prefix of the callback metrics that carry the history out of a spawned
# rank 0 (see BestWeights.on_train_end).
_CARRY = "gendetect_history/"


class BestWeights(Callback):
    """Keeps per-epoch losses and the best weights (in memory, no disk round
    trip) and puts those weights back into the module when training ends.

    Restoring inside the fit (not after it) matters with the spawning
    strategies (ddp_spawn, ddp_notebook): the trainer then runs in worker
    processes and sends rank 0's final weights back to the caller's module,
    so the final weights must already be the best. The callback object in
    the caller never sees an epoch there, so rank 0 also leaves the history
    in the callback metrics, the one thing Lightning sends back besides the
    weights; `recover` reads it. With "ddp" the caller is rank 0 itself and
    its module and callback are the ones that trained.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val = float("inf")
        self.best_epoch = -1

    # on_train_epoch_end runs after the epoch's validation, when both the
    # epoch's training and validation losses are in callback_metrics.
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith(_CARRY)
        }
        row = {"epoch": float(trainer.current_epoch), **metrics}
        self.rows.append(row)
        val = metrics.get("val_loss", float("inf"))
        if val < self.best_val:
            self.best_val, self.best_epoch = val, trainer.current_epoch
            self.best_state = copy.deepcopy(module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
        if trainer.is_global_zero and self.rows:
            keys = sorted({k for row in self.rows for k in row})
            carry = trainer.callback_metrics
            for key in keys:
                values = [row.get(key, math.nan) for row in self.rows]
                carry[_CARRY + key] = torch.tensor(values, dtype=torch.float64)
            carry[_CARRY + "best"] = torch.tensor([self.best_epoch, self.best_val])

    def recover(self, trainer: pl.Trainer) -> None:
        """After a spawned fit: the history rank 0 left in the callback metrics."""
        metrics = trainer.callback_metrics
        if self.rows or _CARRY + "epoch" not in metrics:
            return
        columns = {
            k.removeprefix(_CARRY): v.tolist()
            for k, v in metrics.items()
            if k.startswith(_CARRY) and k != _CARRY + "best"
        }
        n = len(columns["epoch"])
        self.rows = [
            {k: float(v[i]) for k, v in columns.items() if not math.isnan(v[i])} for i in range(n)
        ]
        best_epoch, self.best_val = metrics[_CARRY + "best"].tolist()
        self.best_epoch = int(best_epoch)


class EpochProgress(Callback):
    """Epoch n/N with the training and validation losses and the epoch's
    seconds: a live bar when stderr is a terminal, otherwise one log line per
    epoch (`gendetect.progress`, INFO). Reported by rank 0 only.
    """

    def __init__(self, name: str = "", stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.name = name
        self.stream = stream
        self.live = live
        self._report: ProgressReport | None = None
        self._started = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._report = ProgressReport(self.name, trainer.max_epochs, unit="epoch",
                                          percent=False, stream=self.stream, live=self.live)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._report is None:
            return
        metrics = trainer.callback_metrics
        parts = [f"{key} {_fmt(metrics[key])}" for key in ("train_loss", "val_loss")
                 if key in metrics]
        parts.append(f"{time.perf_counter() - self._started:.1f} s")
        self._report.update(trainer.current_epoch + 1, "  ".join(parts))

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._report is not None:
            self._report.close()
            self._report = None

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule,
                     exception: BaseException) -> None:
        self.on_train_end(trainer, module)


def _fmt(value: Any) -> str:
    return f"{float(value):.4f}"
