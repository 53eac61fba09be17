"""The tail term alone (gendetect.features.tails.MarginalTails.contributions)
against the code of another checkout, in one process: the same fitted state
scores the same rows with both, interleaved, best of --repeats by CPU time
(the machine is shared), in the detector's 8,192-row blocks.

    python benchmarks/tail_term.py --data ../shared/data --before-src DIR
        [--rows 300000] [--train-rows 100000] [--repeats 5]

Rows: the handbook's 15 numeric columns (amount and the 12 window features
as the handbook defines them, weekend, night) plus their per-customer
ratios, standardised by a RobustScaler fitted on the training rows (the
detector's robust units): heavy tails, point masses (binary and count
columns) and values past the training extremes, as in production. Prints
both timings, the speed ratio, the largest difference of the terms and the
load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gendetect.bundle import SCORE_BLOCK_ROWS
from gendetect.features import tails as after
from gendetect.features.scaling import RobustScaler

HANDBOOK_COLUMNS = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"] + [
    f"{key}_{what}_{days}DAY_WINDOW"
    for key, what in (("CUSTOMER_ID", "NB_TX"), ("CUSTOMER_ID", "AVG_AMOUNT"),
                      ("TERMINAL_ID", "NB_TX"), ("TERMINAL_ID", "RISK"))
    for days in (1, 7, 30)
]


def load_module(src: Path) -> ModuleType:
    """gendetect/features/tails.py of the checkout `src`, as its own module."""
    path = src / "gendetect" / "features" / "tails.py"
    spec = importlib.util.spec_from_file_location("before_tails", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["before_tails"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def matrix(data: Path) -> np.ndarray:
    path = data / "handbook" / "transactions.parquet"
    if not path.is_file():
        sys.exit(f"handbook data not found: {path} (pass --data <shared data folder>)")
    df = pd.read_parquet(path, columns=HANDBOOK_COLUMNS)
    x = df.to_numpy(dtype=np.float64)
    amount = x[:, :1]
    averages = x[:, 6:9]  # the customer's average amounts over 1, 7, 30 days
    return np.hstack([x, (1.0 + amount) / (1.0 + averages)])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="shared data folder")
    p.add_argument("--before-src", type=Path, required=True,
                   help="the checkout to compare with (e.g. a git worktree)")
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--train-rows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    before = load_module(args.before_src)
    x = matrix(args.data)
    # Training rows from the middle of the file, scored rows from its start.
    train = x[len(x) // 2 : len(x) // 2 + args.train_rows]
    scaler = RobustScaler().fit(train)
    state = after.MarginalTails().fit(scaler.standardise(train)).to_dict()
    models = {"before": before.MarginalTails.from_dict(state),
              "after": after.MarginalTails.from_dict(state)}
    z = scaler.standardise(x[: args.rows])
    blocks = [z[s : s + SCORE_BLOCK_ROWS] for s in range(0, len(z), SCORE_BLOCK_ROWS)]
    terms = {k: np.vstack([m.contributions(b) for b in blocks]) for k, m in models.items()}
    diff = np.abs(terms["after"] - terms["before"])
    scale = np.maximum(np.abs(terms["before"]), 1.0)
    best = dict.fromkeys(models, np.inf)
    for _ in range(args.repeats):
        for key, model in models.items():
            t0 = time.process_time()
            for block in blocks:
                model.contributions(block)
            best[key] = min(best[key], time.process_time() - t0)
    print(f"{len(z):,} rows x {z.shape[1]} columns in {len(blocks)} blocks; best of "
          f"{args.repeats}, CPU time: before ({args.before_src}) {best['before']:.3f} s, after "
          f"{best['after']:.3f} s, speed x{best['before'] / best['after']:.2f}; largest "
          f"difference {diff.max():.3g} (relative to max(|term|, 1): {(diff / scale).max():.3g}); "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
