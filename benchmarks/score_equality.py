"""Same scores before and after a change that should not change behaviour.

    python benchmarks/score_equality.py record --data ../shared/data --out before.npz
    (change the code, or run the line above from the old checkout's folder)
    python benchmarks/score_equality.py compare before.npz after.npz [--tolerance 1e-9]

`record` fits every gendetect variant the quality benchmark reports (the
kinds, the VAE+GAN ensemble, the GAN scored by its discriminator or both,
the label-aware ensemble with all labels and with 10% of the frauds) on the
handbook protocol's first week and on ADBench files, with fixed seeds, and
stores what a user sees of each: raw scores, risks, flags and the
per-feature explanation shares, through the PyOD face (`decision_function`,
`risk`, `explain`) and the batch path (`score_batch`). `compare` prints the
largest relative difference per array and exits 1 beyond the tolerance.
It uses only the public API, so it runs on old and new checkouts alike.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path.cwd()))

VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("vae", "vae", {}),
    ("vae_mse", "vae_mse", {}),
    ("gan", "gan", {}),
    ("ensemble", "ensemble", {}),
    ("vae_gan", "ensemble", {"ensemble": ("vae", "gan"), "ensemble_weights": (1.0, 1.0)}),
    ("gan_disc", "gan", {"score": "discriminator"}),
    ("gan_combined", "gan", {"score": "combined"}),
)
ADBENCH = ("6_cardio", "38_thyroid", "29_Pima", "4_breastw")
HANDBOOK_TRAIN_ROWS = 20_000
ADBENCH_ROWS = 5_000


def _outputs(det: Any, x: Any, prefix: str) -> dict[str, np.ndarray]:
    shares = det.explain(x, top_k=len(det.feature_names))
    by_name = np.array([[dict(row).get(f, 0.0) for f in det.feature_names] for row in shares])
    batch = det.score_batch(x, explain="all")
    return {
        f"{prefix}/score": np.asarray(det.decision_function(x), dtype=np.float64),
        f"{prefix}/risk": np.asarray(det.risk(x), dtype=np.float64),
        f"{prefix}/predict": np.asarray(det.predict(x), dtype=np.float64),
        f"{prefix}/shares": by_name,
        f"{prefix}/batch_score": np.asarray(batch.score, dtype=np.float64),
        f"{prefix}/batch_feature_share": np.asarray(batch.feature_share, dtype=np.float64),
    }


def record(data: Path, out: Path) -> None:
    import gendetect
    from benchmarks import protocols

    arrays: dict[str, np.ndarray] = {}
    df = protocols.load_handbook(data)
    week = protocols.handbook_week(df, protocols.HANDBOOK_TEST_STARTS[0],
                                   max_train_rows=HANDBOOK_TRAIN_ROWS)
    y_train = week.train["TX_FRAUD"].to_numpy()
    tables = [("handbook", week.x_train, week.x_test, y_train)]
    for path in protocols.adbench_files(data, ADBENCH):
        split = protocols.adbench_split(path, seed=0, total_rows=ADBENCH_ROWS)
        tables.append((path.stem, split.x_train, split.x_test, split.y_train))
    for table, x_train, x_test, labels in tables:
        for name, kind, extra in VARIANTS:
            started = time.perf_counter()
            det = gendetect.make_detector(kind, seed=0, **extra).fit(x_train)
            arrays.update(_outputs(det, x_test, f"{table}/{name}"))
            print(f"{table} {name}: {time.perf_counter() - started:.1f} s", flush=True)
        if table != "handbook":
            continue
        rng = np.random.default_rng(0)
        frauds = np.flatnonzero(labels == 1)
        tenth = np.full(len(labels), -1)
        tenth[rng.choice(frauds, size=max(20, len(frauds) // 10), replace=False)] = 1
        for name, y in (("labels_all", labels), ("labels_10pct", tenth)):
            det = gendetect.make_detector("ensemble", seed=0).fit(x_train, y)
            arrays.update(_outputs(det, x_test, f"{table}/{name}"))
            print(f"{table} {name}: done", flush=True)
    np.savez_compressed(out, **arrays)
    print(f"{len(arrays)} arrays written to {out}")


def compare(before: Path, after: Path, tolerance: float) -> int:
    a, b = np.load(before), np.load(after)
    worst = 0.0
    missing = sorted(set(a.files) ^ set(b.files))
    for key in sorted(set(a.files) & set(b.files)):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            print(f"{key}: shapes differ {x.shape} vs {y.shape}")
            worst = np.inf
            continue
        diff = np.abs(x - y) / np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-12)
        largest = float(diff.max()) if diff.size else 0.0
        worst = max(worst, largest)
        if largest > tolerance:
            print(f"{key}: largest relative difference {largest:.3g}")
    print(f"{len(set(a.files) & set(b.files))} arrays compared; largest relative difference "
          f"{worst:.3g} (tolerance {tolerance:g}); only in one file: {missing or 'none'}")
    return 0 if worst <= tolerance and not missing else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--data", type=Path, default=Path("../shared/data"))
    rec.add_argument("--out", type=Path, required=True)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    cmp_.add_argument("--tolerance", type=float, default=1e-9)
    args = p.parse_args(argv)
    if args.command == "record":
        record(args.data, args.out)
        return 0
    return compare(args.before, args.after, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
