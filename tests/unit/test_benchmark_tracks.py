"""The quality benchmark's clean-normal and few-label tracks: their splits,
their label draws, their report and the merge that adds them beside the
existing tracks (issue 21)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from benchmarks import protocols, quality, report


def _npz(tmp_path: Path, n: int = 400, anomalies: int = 30) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = np.zeros(n, dtype=np.int8)
    y[rng.choice(n, size=anomalies, replace=False)] = 1
    x[y == 1] += 3.0
    folder = tmp_path / "adbench"
    folder.mkdir()
    path = folder / "1_toy.npz"
    np.savez(path, X=x, y=y)
    return path


def test_clean_normal_split_trains_on_half_the_normal_rows(tmp_path: Path) -> None:
    path = _npz(tmp_path)
    split = protocols.clean_normal_split(path, seed=0)
    assert (split.y_train == 0).all() and len(split.y_train) == (400 - 30) // 2
    assert split.y_test.sum() == 30 and len(split.y_test) == 400 - len(split.y_train)
    again = protocols.clean_normal_split(path, seed=0)
    assert np.array_equal(split.x_train, again.x_train)
    capped = protocols.clean_normal_split(path, seed=1, max_train_rows=50)
    assert len(capped.y_train) == 50


def test_few_labels_draws_k_anomalies_and_leaves_the_rest_unknown() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    labels = protocols.few_labels(y, 2, draw=3)
    assert labels is not None and (labels == 1).sum() == 2 and (labels == 0).sum() == 0
    assert (y[labels == 1] == 1).all()
    assert np.array_equal(labels, protocols.few_labels(y, 2, draw=3))
    assert protocols.few_labels(y, 5, draw=0) is None


PROTOCOL = {"split": "s", "draws": [0], "unknown_labels": "u", "gendetect": "g"}


def _results(track: str, runs: list[dict]) -> dict:
    return {
        "environment": {"timestamp": "t", "git_commit": "c", "python": "3", "versions": {},
                        "cpu_count": 2, "torch_threads": 1},
        "config": {"command": "cmd", "quick": False},
        track: {"protocol": PROTOCOL, "runs": runs, "sources": [], "datasets": {}, "max_rows": 9},
    }


def test_new_tracks_merge_beside_the_existing_ones(tmp_path: Path) -> None:
    old = _results("adbench", [{"detector": "iforest_100", "dataset": "a", "seed": 0,
                                "fit_seconds": 1.0,
                                "metrics": {"roc_auc": 0.5, "average_precision": 0.1}}])
    report.write_reports(old, tmp_path, "quality")
    run = {"detector": "catboost", "dataset": "a", "seed": 0, "k": 5, "draw": 0,
           "metrics": {"roc_auc": 0.9, "average_precision": 0.5}}
    new = _results("few_label", [run])
    merged = quality._merge_previous(new, tmp_path / "quality.json", {"catboost"})
    assert merged["adbench"]["runs"] == old["adbench"]["runs"]
    assert merged["few_label"]["runs"] == [run]
    # A later run at another k (--ks 1) keeps the runs at k = 5.
    report.write_reports(merged, tmp_path, "quality")
    one = {**run, "k": 1, "metrics": {"roc_auc": 0.7, "average_precision": 0.2}}
    again = quality._merge_previous(_results("few_label", [one]), tmp_path / "quality.json",
                                    {"catboost"})
    assert sorted(r["k"] for r in again["few_label"]["runs"]) == [1, 5]
    other_seed = {**run, "seed": 1}
    third = quality._merge_previous(_results("few_label", [other_seed]), tmp_path / "quality.json",
                                    {"catboost"})
    assert sorted(r["seed"] for r in third["few_label"]["runs"]) == [0, 1]
    other_draw = {**run, "draw": 3}
    fourth = quality._merge_previous(_results("few_label", [other_draw]),
                                     tmp_path / "quality.json", {"catboost"})
    assert sorted(r["draw"] for r in fourth["few_label"]["runs"]) == [0, 3]


def test_few_label_report_compares_the_rows_per_k() -> None:
    runs = []
    for det, auc in (("gendetect_ensemble_labels", 0.9), ("catboost", 0.8)):
        for ds in ("a", "b"):
            runs.append({"detector": det, "dataset": ds, "seed": 0, "k": 5, "draw": 0,
                         "metrics": {"roc_auc": auc, "average_precision": auc - 0.3}})
    runs.append({"detector": "gendetect_ensemble", "dataset": "a", "seed": 0, "k": 0,
                 "draw": 0, "metrics": {"roc_auc": 0.7, "average_precision": 0.2}})
    track = {"runs": runs, "protocol": PROTOCOL}
    text = "\n".join(report._few_label_sections(track))
    assert "| 5 | gendetect_ensemble_labels | 2 (1 seed-draws) | 0.900 | 0.600 | 1.00 |" in text
    assert "| 5 | catboost | 2 (1 seed-draws) | 0.800 | 0.500 | 2.00 |" in text


class _Recorder:
    """A detector that remembers the labels its fit was given."""

    seen: ClassVar[list[object]] = []

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> _Recorder:
        _Recorder.seen.append(None if y is None else np.asarray(y).copy())
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, 0]


def test_clean_normal_tells_gendetect_its_training_rows_are_cleared(tmp_path: Path) -> None:
    from benchmarks.peers import DetectorSpec

    _npz(tmp_path)
    _Recorder.seen = []
    specs = [
        DetectorSpec("peer", lambda seed: _Recorder()),
        DetectorSpec("gendetect_x", lambda seed: _Recorder(), family="gendetect"),
    ]
    track = quality.run_clean_normal(tmp_path, specs, [0], [])
    assert len(track["runs"]) == 2
    peer, gendetect = _Recorder.seen
    assert peer is None  # the peers' fit takes no labels
    assert isinstance(gendetect, np.ndarray) and len(gendetect) == (400 - 30) // 2
    assert (gendetect == 0).all()  # every training row cleared
