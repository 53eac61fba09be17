"""The label-aware capability as one module: labels read once, the head on
the detector's public evidence, the blend and its explanations, its state."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from gendetect import label_aware, make_detector
from gendetect.detector import DetectorCore
from gendetect.label_aware import LabelAwareHead, evidence_columns, label_counts
from gendetect.params import DetectorParams

FIT = {"max_epochs": 2, "batch_size": 128, "seed": 0}


def _data(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    fraud = rng.random(n) < 0.06
    x[fraud, 0] += 1.5
    x[fraud, 1] -= 1.0
    return x, fraud.astype(np.int8)


def test_labels_are_normalised_once_per_fit() -> None:
    x, fraud = _data(600)
    real = label_aware.normalise_labels
    with mock.patch.object(label_aware, "normalise_labels", side_effect=real) as spy:
        make_detector("vae", **FIT).fit(x, np.where(fraud == 1, 1, -1))
    assert spy.call_count == 1


def test_the_detector_exposes_its_evidence_and_the_head_composes_on_it() -> None:
    x, fraud = _data()
    labels = np.where(fraud == 1, 1, -1).astype(np.int8)
    params = DetectorParams.from_dict(FIT)
    detector = DetectorCore(kind="ensemble", params=params).fit(x, labels == 1)
    evidence = detector.evidence(x[:30])
    assert evidence.z.shape == evidence.contributions.shape == (30, 5)
    assert len(evidence.member_scores) == 2
    assert evidence_columns(evidence).shape == (30, 5 + 5 + 2)
    head = LabelAwareHead(min_frauds=20, blend=0.5).fit(detector, x, labels, seed=0)
    assert head.active and head.summary_["mode"] == "label-aware"
    assert head.summary_["frauds"] == int(fraud.sum())
    score, contributions = head.score(evidence)
    assert score.shape == (30,) and (contributions > 0).all()
    # The head ranks the confirmed frauds above the rest on its training rows.
    all_scores, _ = head.score(detector.evidence(x))
    assert all_scores[fraud == 1].mean() > all_scores[fraud == 0].mean()
    again = LabelAwareHead.from_state(head.state(), min_frauds=20, blend=0.5, summary={})
    assert np.array_equal(again.score(evidence)[0], score)


def test_an_inactive_head_passes_the_detectors_score_through() -> None:
    x, _ = _data(600)
    labels = np.full(len(x), -1, dtype=np.int8)
    params = DetectorParams.from_dict(FIT)
    detector = DetectorCore(kind="vae", params=params).fit(x)
    head = LabelAwareHead(min_frauds=20, blend=0.5).fit(detector, x, labels, seed=0)
    assert not head.active and head.state() is None
    assert head.summary_ == {"frauds": 0, "genuine": 0, "unknown": len(x), "min_frauds": 20,
                             "mode": "unsupervised"}
    evidence = detector.evidence(x[:10])
    score, contributions = head.score(evidence)
    assert score is evidence.score and contributions is evidence.contributions


def test_label_summary_is_not_pyods_labels() -> None:
    x, fraud = _data(800)
    det = make_detector("vae", **FIT).fit(x, np.where(fraud == 1, 1, -1))
    assert det.label_summary_ == {k: v for k, v in det.metadata["labels"].items()
                                  if k in det.label_summary_}
    # labels_ is PyOD's: the 0/1 verdict on each training row.
    assert det.labels_.shape == (len(x),) and set(np.unique(det.labels_)) <= {0, 1}


def test_label_counts() -> None:
    assert label_counts(np.array([1, 0, -1, -1], dtype=np.int8)) == {
        "frauds": 1, "genuine": 1, "unknown": 2}
    with pytest.raises(ValueError):
        label_aware.prepare_labels(np.zeros((3, 2)), [1, 2, 0], 3)
