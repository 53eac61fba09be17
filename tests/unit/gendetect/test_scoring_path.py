"""One scoring path: the detector's block scorer serves the PyOD face, the
online records and batch scoring alike, and the one decision assembly
gives a record's decision as the one-row case of a batch's."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from gendetect import bundle as bundle_module
from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.member import NeuralDetector

FIT = {"max_epochs": 1, "batch_size": 64, "seed": 0, "alert_rate": 0.05}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) * [1.0, 5.0, 0.5, 2.0] + [0.0, 20.0, 1.0, -3.0]


@pytest.fixture(scope="module", params=["ensemble", "gan"])
def fitted(request: pytest.FixtureRequest) -> FraudModelBundle:
    return make_detector(request.param, **FIT).fit(_data(800, seed=0))


def _records(x: np.ndarray) -> list[dict[str, float]]:
    return [{f"f{j}": float(v) for j, v in enumerate(row)} for row in x]


def test_online_batch_and_pyod_faces_give_the_same_decisions(fitted: FraudModelBundle) -> None:
    x = _data(50, seed=1) * 1.5
    records = fitted.score_records(_records(x))
    batch = fitted.score_batch(x, explain="all")
    assert [r["score"] for r in records] == batch.score.tolist()
    assert batch.score.tolist() == fitted.decision_function(x).tolist()
    assert records == batch.records()
    one = fitted.score_records(_records(x[:1]))[0]
    assert one["score"] == pytest.approx(records[0]["score"], rel=1e-6)
    assert set(one) == {"score", "risk", "is_fraud", "threshold", "top_features", "top_reasons"}
    assert isinstance(one["is_fraud"], bool) and isinstance(one["score"], float)


def test_blocks_of_rows_score_as_one_call(fitted: FraudModelBundle) -> None:
    x = _data(700, seed=2)
    whole = fitted.decision_function(x)
    with mock.patch.object(bundle_module, "SCORE_BLOCK_ROWS", 128):
        blocked = fitted.score_batch(x, explain="all")
        assert np.array_equal(fitted.decision_function(x), blocked.score)
    np.testing.assert_allclose(blocked.score, whole, rtol=1e-6, atol=1e-9)


def test_the_discriminator_runs_only_where_its_verdict_counts() -> None:
    x = _data(400, seed=3)
    calls: list[bool] = []
    real = NeuralDetector.raw_outputs

    def spy(self: NeuralDetector, t: object, *, with_discriminator: bool) -> object:
        calls.append(with_discriminator)
        return real(self, t, with_discriminator=with_discriminator)  # type: ignore[arg-type]

    for score, expected in (("reconstruction", False), ("discriminator", True)):
        det = make_detector("gan", score=score, **FIT).fit(x)
        calls.clear()
        with mock.patch.object(NeuralDetector, "raw_outputs", spy):
            det.decision_function(x[:10])
        assert calls == [expected]
    weighted = make_detector("gan", disc_weight=0.5, **FIT).fit(x)
    calls.clear()
    with mock.patch.object(NeuralDetector, "raw_outputs", spy):
        weighted.decision_function(x[:10])
    assert calls == [True]


def test_drift_reads_the_bundle_through_public_methods(fitted: FraudModelBundle) -> None:
    from gendetect import drift

    x = _data(600, seed=4)
    report = drift.bundle_drift(fitted, x)
    assert report is not None and report.rows == len(x)
    np.testing.assert_array_equal(fitted.features(x), x)
    assert np.array_equal(fitted.score_parts(x)[0], fitted.decision_function(x))
