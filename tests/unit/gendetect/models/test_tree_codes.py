"""The head's trees scored from code tables (issue 20): the same log-odds
and path attributions as the depth-stepped traversal they replace (1e-9),
with missing values either way, after the JSON round trip and block by
block; attributions only for the rows that are explained."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from gendetect import make_detector
from gendetect.bundle import SCORE_BLOCK_ROWS, FraudModelBundle
from gendetect.detector import Evidence
from gendetect.label_aware import LabelAwareHead, evidence_column, evidence_columns
from gendetect.models.labels import BoostedHead, reference_decision
from gendetect.models.tree_codes import SMALL_ROWS, log1p_bounds

FIT = {"max_epochs": 2, "batch_size": 128, "accelerator": "cpu", "seed": 0}
TOL = 1e-9


def _head_data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Six columns with missing values: in training, so that the trees learn
    a side for them at some splits, and more at scoring time."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=n) > 1.5).astype(np.int8)
    x[rng.random(x.shape) < 0.05] = np.nan
    # Missing in column 3 mostly among positives: NaN carries signal, so some
    # splits send it left and others right.
    x[(y == 1) & (rng.random(n) < 0.5), 3] = np.nan
    return x, y


def _assert_equal_to_reference(head: BoostedHead, x: np.ndarray) -> None:
    """Column-wise (many rows) and whole-matrix (a few rows) codes alike."""
    assert len(x) > SMALL_ROWS
    for part in (x, x[:SMALL_ROWS], x[-3:], x[7:8]):
        want_logits, want_attributions = reference_decision(head, part)
        logits, attributions = head.decision(part)
        np.testing.assert_allclose(logits, want_logits, rtol=0, atol=TOL)
        np.testing.assert_allclose(attributions, want_attributions, rtol=0, atol=TOL)
        np.testing.assert_allclose(head.logits(part), want_logits, rtol=0, atol=TOL)
        np.testing.assert_allclose(head.attributions(part), want_attributions, rtol=0,
                                   atol=TOL)


def test_codes_equal_the_reference_traversal_with_missing_values() -> None:
    x, y = _head_data()
    head = BoostedHead().fit(x, y, seed=0)
    coded = head.coded()
    assert coded is not None and coded.n_trees == head.n_trees > 10
    # Both sides of the missing-value rule occur among the splits.
    internal = ~head.leaf_
    assert head.missing_left_[internal].any() and not head.missing_left_[internal].all()
    fresh, _ = _head_data(2000, seed=1)
    fresh[:5] = np.nan  # rows with every column missing
    fresh[5:10] = np.inf
    fresh[10:15] = -np.inf
    _assert_equal_to_reference(head, fresh)
    # And sklearn's own predictions, the head's source.
    reference = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=20,
        l2_regularization=10.0, early_stopping=True, validation_fraction=0.1,
        n_iter_no_change=20, random_state=0,
    ).fit(x, y)
    finite = fresh[15:]
    np.testing.assert_allclose(head.logits(finite), reference.decision_function(finite),
                               rtol=0, atol=TOL)


def test_codes_equal_the_reference_after_the_json_round_trip() -> None:
    x, y = _head_data(seed=2)
    again = BoostedHead.from_dict(BoostedHead().fit(x, y, seed=0).to_dict())
    _assert_equal_to_reference(again, _head_data(1500, seed=3)[0])


def test_columns_may_come_one_at_a_time() -> None:
    x, y = _head_data(seed=4)
    head = BoostedHead().fit(x, y, seed=0)
    asked: set[int] = set()

    def column(j: int) -> np.ndarray:
        asked.add(j)
        return np.ascontiguousarray(x[:, j])

    np.testing.assert_allclose(head.logits(column, len(x)), reference_decision(head, x)[0],
                               rtol=0, atol=TOL)
    # Only the columns some split tests are read.
    assert asked == set(np.unique(head.feature_[~head.leaf_]).tolist())


def test_trees_too_large_for_codes_use_the_reference() -> None:
    x, y = _head_data(seed=5)
    head = BoostedHead(max_leaf_nodes=16, max_iter=20).fit(x, y, seed=0)
    assert int((~head.leaf_[: head.roots_[1]]).sum()) > 8
    assert head.coded() is None
    logits, attributions = head.decision(x[:50])
    want = reference_decision(head, x[:50])
    assert np.array_equal(logits, want[0]) and np.array_equal(attributions, want[1])


def test_the_reference_stays_selectable() -> None:
    x, y = _head_data(seed=6)
    head = BoostedHead().fit(x, y, seed=0)
    head.reference = True
    assert head.coded() is None
    assert np.array_equal(head.logits(x), reference_decision(head, x)[0])


# ------------------------------------------------------- the label-aware bundle
def _todays_score(head: LabelAwareHead, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """LabelAwareHead.score before issue 20: the reference traversal on every
    row, then the blend and the explanations, as they were written."""
    assert head.trees is not None
    logits, attributions = reference_decision(head.trees, evidence_columns(ev))
    center, spread = head.unsupervised_center_spread_
    unsupervised = (ev.score - center) / spread
    contributions = ev.contributions
    d = ev.z.shape[1]
    share = contributions / np.maximum(contributions.sum(axis=1, keepdims=True), 1e-12)
    per_feature = attributions[:, :d] + attributions[:, d : 2 * d]
    per_feature = per_feature + attributions[:, 2 * d :].sum(axis=1, keepdims=True) * share
    pushed = head.blend * np.maximum(unsupervised, 0.0)[:, None] * share
    explained = np.maximum(per_feature, 0.0) + pushed
    return logits + head.blend * unsupervised, explained + 1e-6 * share


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    fraud = rng.random(n) < 0.08
    x[fraud, 0] += 1.5
    x[fraud, 1] -= 1.0
    return x, fraud.astype(np.int8)


@pytest.fixture(scope="module", params=["vae", "ensemble"])
def aware(request: pytest.FixtureRequest) -> FraudModelBundle:
    x, fraud = _data(2500, seed=0)
    bundle = make_detector(request.param, alert_rate=0.05, **FIT).fit(
        x, np.where(fraud == 1, 1, -1))
    assert bundle.label_head_.active
    return bundle


def test_label_aware_scores_and_explanations_equal_todays(aware: FraudModelBundle) -> None:
    x, _ = _data(SCORE_BLOCK_ROWS + 700, seed=1)  # two blocks
    evidence = aware.detector_.evidence(x)
    want_scores, want_contributions = _todays_score(aware.label_head_, evidence)
    head = aware.label_head_
    np.testing.assert_allclose(head.scores(evidence), want_scores, rtol=0, atol=TOL)
    np.testing.assert_allclose(head.contributions(evidence), want_contributions,
                               rtol=0, atol=TOL)
    small = aware.detector_.evidence(x[:5])
    np.testing.assert_allclose(head.scores(small), want_scores[:5], rtol=0, atol=TOL)
    np.testing.assert_allclose(head.contributions(small), want_contributions[:5],
                               rtol=0, atol=TOL)
    records = aware.score_matrix(x[:5], explain="all").records()
    np.testing.assert_allclose([r["score"] for r in records], want_scores[:5], rtol=0, atol=TOL)
    rows = np.array([3, 17, 400, 401, 1200])
    np.testing.assert_allclose(head.contributions(evidence, rows), want_contributions[rows],
                               rtol=0, atol=TOL)
    many = np.arange(0, len(x), 3)  # more than SMALL_ROWS: the column-wise path
    np.testing.assert_allclose(head.contributions(evidence, many), want_contributions[many],
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(aware.decision_function(x), want_scores, rtol=0, atol=TOL)
    scores, contributions = aware.score_parts(x)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=TOL)
    np.testing.assert_allclose(contributions, want_contributions, rtol=0, atol=TOL)
    decisions = aware.score_matrix(x, explain="flagged")
    np.testing.assert_allclose(decisions.score, want_scores, rtol=0, atol=TOL)
    flagged = np.flatnonzero(decisions.is_fraud)
    assert np.array_equal(decisions.explained, flagged) and 0 < len(flagged) < len(x)
    # The explanations of the flagged rows are those of today's contributions.
    want = aware.score_matrix(x, explain="all")
    assert np.array_equal(decisions.feature_idx, want.feature_idx[flagged])
    np.testing.assert_allclose(decisions.feature_share, want.feature_share[flagged], atol=TOL)
    from gendetect.reasons import top_share_indices

    idx, share = top_share_indices(want_contributions[flagged], aware.top_k)
    assert np.array_equal(decisions.feature_idx, idx)
    np.testing.assert_allclose(decisions.feature_share, share, rtol=0, atol=TOL)


def test_evidence_columns_on_demand_are_bit_for_bit_the_matrix(aware: FraudModelBundle) -> None:
    """The trees read columns one at a time on big blocks: the same bits as
    the evidence matrix, or a value at a split could take the other side."""
    x, _ = _data(3000, seed=3)
    evidence = aware.detector_.evidence(x)
    matrix = evidence_columns(evidence)
    rows = np.arange(1, len(x), 2)
    whole, some = evidence_column(evidence), evidence_column(evidence, rows)
    for j in range(matrix.shape[1]):
        assert np.array_equal(whole(j), matrix[:, j])
        assert np.array_equal(some(j), matrix[rows, j])


def test_log1p_bounds_give_the_tests_on_the_logarithm() -> None:
    """`v <= T` exactly when `log1p(v) <= t`, for values at, next to and far
    from the bounds, NaN and infinities included: code tables on errors
    before their log1p take the same side at every split."""
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(0, 3, 300), rng.uniform(0, 8, 300), [0.0, -0.0, 1e-300,
                        -1e-300, 700.0, -50.0, float(np.finfo(np.float64).max), np.inf,
                        -np.inf]])
    bound = log1p_bounds(t)
    with np.errstate(all="ignore"):
        near = [bound, np.nextafter(bound, np.inf), np.nextafter(bound, -np.inf), np.expm1(t)]
        v = np.concatenate([*near, rng.exponential(3, len(t)), np.full(len(t), np.nan),
                            np.full(len(t), np.inf), np.zeros(len(t))])
        tt = np.tile(t, len(v) // len(t))
        bb = np.tile(bound, len(v) // len(t))
        v = np.maximum(v, 0.0)  # the head's error columns: max(error, 0), NaN kept
        assert np.array_equal(v <= bb, np.log1p(v) <= tt)
        assert np.array_equal(v > bb, np.log1p(v) > tt)


def test_head_tables_on_errors_before_the_log(aware: FraudModelBundle) -> None:
    """Big blocks give the trees the errors before log1p and tables moved
    back through it: the same log-odds and attributions, bit for bit, as the
    tables on the logarithms."""
    head = aware.label_head_
    assert head.trees is not None
    coded = head.trees.coded()
    assert coded is not None
    x, _ = _data(3000, seed=5)
    evidence = aware.detector_.evidence(x)
    d = evidence.z.shape[1]
    # The trees split on some error columns, or the test would be empty.
    assert np.isin(coded.test_column, np.arange(d, 2 * d)).any()
    raw = coded.before_log1p(np.arange(d, 2 * d))
    logged = evidence_column(evidence)
    before = evidence_column(evidence, log_errors=False)
    assert np.array_equal(raw.codes(before, len(x)), coded.codes(logged, len(x)))
    np.testing.assert_array_equal(head.scores(evidence), head.trees.logits(
        evidence_columns(evidence)) * head.head_weight_ + head.unsupervised_blend
        * head._unsupervised(evidence.score))


def test_scores_with_contributions_equal_the_separate_calls(aware: FraudModelBundle) -> None:
    """`score` (one set of codes for both: explain="all", the API) gives the
    bits of `scores` and `contributions` called apart, on big blocks and on
    a few rows."""
    head = aware.label_head_
    x, _ = _data(3000, seed=6)
    for part in (x, x[:5]):
        evidence = aware.detector_.evidence(part)
        scores, contributions = head.score(evidence)
        assert np.array_equal(scores, head.scores(evidence))
        assert np.array_equal(contributions, head.contributions(evidence))


def test_attributions_only_for_the_rows_explained(aware: FraudModelBundle) -> None:
    x, _ = _data(SCORE_BLOCK_ROWS + 700, seed=2)
    trees = aware.label_head_.trees
    assert trees is not None
    asked: list[int] = []
    real, real_decision = BoostedHead.attributions, BoostedHead.decision

    def counting(self: BoostedHead, evidence: object, n_rows: int | None = None,
                 tables: object = None) -> np.ndarray:
        out = real(self, evidence, n_rows, tables)  # type: ignore[arg-type]
        asked.append(len(out))
        return out

    def counting_decision(self: BoostedHead, evidence: object, n_rows: int | None = None,
                          tables: object = None) -> tuple[np.ndarray, np.ndarray]:
        out = real_decision(self, evidence, n_rows, tables)  # type: ignore[arg-type]
        asked.append(len(out[1]))
        return out

    with mock.patch.object(BoostedHead, "attributions", counting), \
            mock.patch.object(BoostedHead, "decision", counting_decision):
        flagged = aware.score_matrix(x, explain="flagged")
        assert sum(asked) == flagged.n_flagged > 0
        asked.clear()
        none = aware.score_matrix(x, explain="none")
        assert asked == [] and len(none.explained) == 0
        asked.clear()
        aware.score_matrix(x, explain="all")
        assert sum(asked) == len(x)
    # Unflagged rows: empty explanation columns on every surface.
    table = flagged.to_arrow()
    lengths = np.array([len(v) for v in table.column("top_features").to_pylist()])
    assert (lengths[~flagged.is_fraud] == 0).all()
    assert (lengths[flagged.is_fraud] == aware.top_k).all()
    frame = flagged.to_pandas()
    assert all(v == [] for v in frame.loc[~frame["is_fraud"], "top_reasons"])
    assert np.array_equal(np.asarray(none.explanation_json("top_features")),
                          np.full(len(x), "[]"))
