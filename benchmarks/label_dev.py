"""Development harness for the label-aware head (issue 21): decisions on
development data only, never on the quality tracks' test weeks or splits.

    python benchmarks/label_dev.py cache-handbook --setting all_labels
    python benchmarks/label_dev.py cache-handbook --setting frauds_10pct
    python benchmarks/label_dev.py cache-adbench
    python benchmarks/label_dev.py blend

Handbook: the development week (train 2018-07-04..07-10, test
2018-07-18..07-24, before every protocol test week). ADBench: a stratified
30% validation part of seed 0's training part (ADGym's split); the test part
is never read. `cache-*` fit the default ensemble once (handbook: as
`fit(X, y)` does; ADBench: unsupervised, as the few-label track does) and
save the evidence; `blend` fits the real LabelAwareHead on the saved evidence
(seconds per head) for several unsupervised weights and prints mean ROC AUC
/ AP (/ card precision@100 on the handbook).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import protocols  # noqa: E402
from benchmarks.quality import training_labels  # noqa: E402
from gendetect import metrics  # noqa: E402
from gendetect.detector import Evidence  # noqa: E402

DEV_TEST_START = "2018-07-18"
ADBENCH_DEV_FILES: tuple[str, ...] = (
    "6_cardio", "38_thyroid", "23_mammography", "30_satellite", "28_pendigits", "2_annthyroid",
    "44_Wilt", "29_Pima", "4_breastw", "18_Ionosphere",
)
_PARTS = ("z", "score", "contributions", "members")


def _save(path: Path, train_index: np.ndarray, ev: Evidence, test: Evidence,
          **extra: np.ndarray) -> None:
    def parts(e: Evidence) -> list[np.ndarray]:
        return [e.z, e.score, e.contributions, np.column_stack(e.member_scores)]

    arrays = dict(zip(_PARTS, parts(ev), strict=True))
    arrays |= {f"t_{k}": v for k, v in zip(_PARTS, parts(test), strict=True)}
    np.savez(path, train_index=train_index, **arrays, **extra)


def cache_handbook(data: Path, out: Path, setting: str, draw: int, seed: int) -> None:
    from gendetect import make_detector

    week = protocols.handbook_week(protocols.load_handbook(data), DEV_TEST_START)
    y_true = week.train["TX_FRAUD"].to_numpy()
    labels = training_labels(y_true, setting, draw)
    t0 = time.perf_counter()
    bundle = make_detector("ensemble", seed=seed).fit(week.x_train, labels)
    print(f"fit {setting} draw {draw}: {time.perf_counter() - t0:.1f}s", flush=True)
    det = bundle.detector_
    _save(out / f"dev_{setting}_{draw}.npz", det.train_index_,
          det.evidence(bundle.features(week.x_train)), det.evidence(bundle.features(week.x_test)),
          labels=labels, y_true=y_true, y_test=week.y_test,
          t_days=week.test["TX_TIME_DAYS"].to_numpy(),
          t_customers=week.test["CUSTOMER_ID"].to_numpy())


def cache_adbench(data: Path, out: Path, files: Sequence[str]) -> None:
    from sklearn.model_selection import train_test_split

    from gendetect import make_detector

    for name in files:
        split = protocols.few_label_split(data / "adbench" / f"{name}.npz", 0)
        inner, val = train_test_split(np.arange(len(split.y_train)), test_size=0.3,
                                      stratify=split.y_train, random_state=0)
        bundle = make_detector("ensemble", seed=0).fit(split.x_train[inner])
        det = bundle.detector_
        _save(out / f"adb_{name}.npz", det.train_index_,
              det.evidence(bundle.features(split.x_train[inner])),
              det.evidence(bundle.features(split.x_train[val])),
              y_true=split.y_train[inner], y_test=split.y_train[val])
        print(name, len(inner), int(split.y_train[inner].sum()), flush=True)


@dataclass
class _Cached:
    """Stands in for a fitted DetectorCore: rows are given by their index."""

    train_index_: np.ndarray
    arrays: dict[str, np.ndarray]

    def evidence(self, rows: np.ndarray, prefix: str = "") -> Evidence:
        idx = np.asarray(rows).ravel().astype(np.intp)
        a = self.arrays
        members = a[f"{prefix}members"][idx]
        return Evidence(z=a[f"{prefix}z"][idx], score=a[f"{prefix}score"][idx],
                        contributions=a[f"{prefix}contributions"][idx],
                        member_scores=list(members.T))


def head_scores(path: Path, labels: np.ndarray, seed: int, blend: float,
                unsupervised_weight: float | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The test part's label-aware scores of the real head fitted on the
    cached evidence; `unsupervised_weight` overrides the fitted one."""
    from gendetect.label_aware import LabelAwareHead

    arrays = dict(np.load(path))
    det = _Cached(arrays["train_index"], arrays)
    rows = np.arange(len(labels))[:, None]
    head = LabelAwareHead(1, blend).fit(det, rows, labels.astype(np.int8), seed)  # type: ignore[arg-type]
    head.unsupervised_weight_ = unsupervised_weight
    test = det.evidence(np.arange(len(arrays["y_test"])), prefix="t_")
    return arrays, head.scores(test)


def blend(out: Path, weights: Sequence[float], ks: Sequence[int], draws: Sequence[int]) -> None:
    for w in weights:
        cells = []
        for k in ks:
            values = []
            for name in ADBENCH_DEV_FILES:
                path = out / f"adb_{name}.npz"
                y_true = np.load(path)["y_true"]
                for draw in draws:
                    labels = protocols.few_labels(y_true, k, draw)
                    if labels is None:
                        continue
                    arrays, s = head_scores(path, labels, draw, 0.5, w)
                    values.append((metrics.roc_auc(arrays["y_test"], s),
                                   metrics.average_precision(arrays["y_test"], s)))
            hb = out / "dev_frauds_10pct_0.npz"
            hb_values = []
            for draw in draws:
                labels = protocols.few_labels(np.load(hb)["y_true"], k, draw)
                arrays, s = head_scores(hb, labels, draw, 0.5, w)  # type: ignore[arg-type]
                hb_values.append((metrics.roc_auc(arrays["y_test"], s),
                                  metrics.average_precision(arrays["y_test"], s)))
            a, h = np.mean(values, axis=0), np.mean(hb_values, axis=0)
            cells.append(f"k={k}: ADBench {a[0]:.3f}/{a[1]:.3f} handbook {h[0]:.3f}/{h[1]:.3f}")
        print(f"unsupervised weight {w}: " + "; ".join(cells), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["cache-handbook", "cache-adbench", "blend"])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("/tmp/h21labels"))
    p.add_argument("--setting", default="all_labels")
    p.add_argument("--draw", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="0.5,1.0,1.5")
    p.add_argument("--ks", default="5,10")
    p.add_argument("--draws", type=int, default=2)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.command == "cache-handbook":
        cache_handbook(a.data, a.out, a.setting, a.draw, a.seed)
    elif a.command == "cache-adbench":
        cache_adbench(a.data, a.out, ADBENCH_DEV_FILES)
    else:
        blend(a.out, [float(w) for w in a.weights.split(",")],
              [int(k) for k in a.ks.split(",")], range(a.draws))


if __name__ == "__main__":
    main()
