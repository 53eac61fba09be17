"""The fraud model bundle through its public API: PyOD's detector contract,
determinism, persistence, input errors and explanations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from gendetect import make_detector
from gendetect.bundle import FraudModelBundle
from gendetect.errors import InputError
from gendetect.member import top_mean

KINDS = ("vae", "gan", "ensemble")
N_FEATURES = 6
ALERT_RATE = 0.05
FIT = {"max_epochs": 3, "batch_size": 128, "accelerator": "cpu", "alert_rate": ALERT_RATE}

_MIX = np.random.default_rng(123).normal(size=(2, N_FEATURES))
_OFFSET = np.array([10.0, -3.0, 0.0, 100.0, 1.0, 0.5])
_SPREAD = np.array([1.0, 0.1, 5.0, 20.0, 1.0, 0.3])


def normal_data(n: int, seed: int) -> np.ndarray:
    """Rows on a noisy 2-D plane in 6-D, features on different scales."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = z @ _MIX + 0.1 * rng.normal(size=(n, N_FEATURES))
    return _OFFSET + _SPREAD * x


def fit(kind: str, x: np.ndarray | pd.DataFrame, seed: int = 0) -> FraudModelBundle:
    return make_detector(kind, seed=seed, **FIT).fit(x)


@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    return normal_data(3000, seed=0)


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    return normal_data(4000, seed=1)


@pytest.fixture(scope="module")
def fitted(train_x: np.ndarray) -> dict[str, FraudModelBundle]:
    return {kind: fit(kind, train_x) for kind in KINDS}


# ------------------------------------------------------------- PyOD contract
@pytest.mark.parametrize("kind", KINDS)
def test_pyod_contract(kind: str, fitted: dict[str, FraudModelBundle], test_x: np.ndarray) -> None:
    bundle = fitted[kind]
    assert bundle.is_fitted
    assert bundle.feature_names == [f"f{i}" for i in range(N_FEATURES)]
    scores = bundle.decision_function(test_x)
    assert scores.shape == (len(test_x),)
    assert np.isfinite(scores).all()

    labels = bundle.predict(test_x)
    assert labels.shape == (len(test_x),)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores >= bundle.threshold_).astype(int))
    # Threshold calibrated on held-out rows: fresh normal data is flagged at
    # about the alert rate (300 validation rows: a few points of slack).
    assert 0.5 * ALERT_RATE <= labels.mean() <= 2.0 * ALERT_RATE

    proba = bundle.predict_proba(test_x)
    assert proba.shape == (len(test_x), 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], bundle.risk(test_x))
    # Risk ranks like the score.
    order = np.argsort(scores)
    assert (np.diff(proba[order, 1]) >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_explain(kind: str, fitted: dict[str, FraudModelBundle], test_x: np.ndarray) -> None:
    bundle = fitted[kind]
    rows = test_x[:20]
    explanations = bundle.explain(rows)
    assert len(explanations) == len(rows)
    for row in explanations:
        assert len(row) == bundle.top_k
        names = [name for name, _ in row]
        shares = [share for _, share in row]
        assert set(names) <= set(bundle.feature_names)
        assert len(set(names)) == len(names)
        assert all(0.0 <= s <= 1.0 for s in shares)
        assert shares == sorted(shares, reverse=True)
    # Over all features, the shares of one record add up to 1.
    for row in bundle.explain(rows, top_k=N_FEATURES):
        assert len(row) == N_FEATURES
        assert sum(share for _, share in row) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("planted", [1, 4])
def test_planted_anomaly_is_detected_and_explained(
    kind: str, planted: int, fitted: dict[str, FraudModelBundle], test_x: np.ndarray
) -> None:
    bundle = fitted[kind]
    rows = test_x[:50].copy()
    rows[:, planted] = _OFFSET[planted] + 12.0 * _SPREAD[planted]  # far off in one feature
    scores = bundle.decision_function(rows)
    normal_scores = bundle.decision_function(test_x)
    assert np.median(scores) > np.quantile(normal_scores, 0.99)
    assert bundle.predict(rows).mean() > 0.9
    top = [row[0][0] for row in bundle.explain(rows)]
    assert top.count(f"f{planted}") >= 45, top


# -------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_same_seed_same_scores_other_seed_other_scores(
    kind: str, fitted: dict[str, FraudModelBundle], train_x: np.ndarray, test_x: np.ndarray
) -> None:
    reference = fitted[kind].decision_function(test_x)
    again = fit(kind, train_x, seed=0)
    np.testing.assert_array_equal(again.decision_function(test_x), reference)
    assert again.threshold_ == fitted[kind].threshold_
    other = fit(kind, train_x, seed=1)
    assert not np.allclose(other.decision_function(test_x), reference)


# -------------------------------------------------------------- persistence
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(
    kind: str, fitted: dict[str, FraudModelBundle], test_x: np.ndarray, tmp_path: Path
) -> None:
    bundle = fitted[kind]
    path = bundle.save(tmp_path / "bundle")
    loaded = FraudModelBundle.load(path)
    assert loaded.kind == kind
    assert loaded.feature_names == bundle.feature_names
    assert loaded.threshold_ == bundle.threshold_
    np.testing.assert_array_equal(
        loaded.decision_function(test_x), bundle.decision_function(test_x)
    )
    np.testing.assert_array_equal(loaded.predict(test_x), bundle.predict(test_x))
    np.testing.assert_array_equal(loaded.risk(test_x), bundle.risk(test_x))
    assert loaded.explain(test_x[:10]) == bundle.explain(test_x[:10])
    # Saving over an existing bundle replaces it.
    bundle.save(path)
    np.testing.assert_array_equal(
        FraudModelBundle.load(path).decision_function(test_x), bundle.decision_function(test_x)
    )


def test_load_of_a_folder_without_bundle(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FraudModelBundle.load(tmp_path)


# ----------------------------------------------------- DataFrames and arrays
def test_dataframe_and_array_give_the_same_model(
    fitted: dict[str, FraudModelBundle], train_x: np.ndarray, test_x: np.ndarray
) -> None:
    names = ["amount", "age", "balance", "n_tx", "delta", "ratio"]
    train_df = pd.DataFrame(train_x, columns=names)
    from_frame = fit("vae", train_df)
    assert from_frame.feature_names == names
    test_df = pd.DataFrame(test_x, columns=names)
    expected = fitted["vae"].decision_function(test_x)
    np.testing.assert_array_equal(from_frame.decision_function(test_df), expected)
    # Column order and extra columns of a frame do not matter; a label is no feature.
    shuffled = test_df[names[::-1]].assign(label=0, comment="x")
    np.testing.assert_array_equal(from_frame.decision_function(shuffled), expected)
    # A frame-fitted bundle also takes a plain array in feature order.
    np.testing.assert_array_equal(from_frame.decision_function(test_x), expected)
    # And an array-fitted bundle takes a frame with its f0.. columns.
    f_cols = pd.DataFrame(test_x, columns=[f"f{i}" for i in range(N_FEATURES)])
    np.testing.assert_array_equal(fitted["vae"].decision_function(f_cols), expected)
    out = from_frame.score_frame(test_df.iloc[:5])
    assert list(out.index) == list(test_df.index[:5])
    np.testing.assert_array_equal(out["score"].to_numpy(), expected[:5])


def test_label_column_is_not_a_feature(train_x: np.ndarray) -> None:
    df = pd.DataFrame(train_x[:400], columns=[f"x{i}" for i in range(N_FEATURES)])
    df["label"] = 0
    bundle = make_detector("vae", seed=0, **{**FIT, "max_epochs": 1}).fit(df)
    assert "label" not in bundle.feature_names
    assert bundle.decision_function(df.drop(columns=["label"])).shape == (400,)


# ---------------------------------------------------------------- bad input
def test_nan_in_array_names_the_column(
    fitted: dict[str, FraudModelBundle], test_x: np.ndarray
) -> None:
    bad = test_x[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError) as info:
        fitted["vae"].decision_function(bad)
    assert info.value.field == "f2"
    assert "column 'f2'" in str(info.value)
    bad[3, 2] = np.inf
    with pytest.raises(InputError, match="column 'f2'"):
        fitted["vae"].predict(bad)


def test_nan_in_dataframe_names_the_column(
    fitted: dict[str, FraudModelBundle], test_x: np.ndarray
) -> None:
    df = pd.DataFrame(test_x[:10], columns=[f"f{i}" for i in range(N_FEATURES)])
    df.loc[4, "f5"] = np.nan
    with pytest.raises(InputError) as info:
        fitted["gan"].decision_function(df)
    assert info.value.field == "f5"


def test_missing_column_in_dataframe(
    fitted: dict[str, FraudModelBundle], test_x: np.ndarray
) -> None:
    df = pd.DataFrame(test_x[:10], columns=[f"f{i}" for i in range(N_FEATURES)])
    with pytest.raises(InputError) as info:
        fitted["vae"].decision_function(df.drop(columns=["f3"]))
    assert info.value.field == "f3"


@pytest.mark.parametrize("n_columns", [N_FEATURES - 1, N_FEATURES + 1])
def test_wrong_number_of_columns(
    n_columns: int, fitted: dict[str, FraudModelBundle], test_x: np.ndarray
) -> None:
    x = np.zeros((5, n_columns))
    with pytest.raises(InputError) as info:
        fitted["vae"].decision_function(x)
    assert f"{N_FEATURES} numeric feature columns" in str(info.value)
    assert "f0" in str(info.value)


def test_one_dimensional_input(fitted: dict[str, FraudModelBundle], test_x: np.ndarray) -> None:
    with pytest.raises(InputError, match="2-D"):
        fitted["vae"].decision_function(test_x[0])
    with pytest.raises(InputError, match="2-D"):
        make_detector("vae", **FIT).fit(test_x[:, 0])


def test_nan_at_fit_time_names_the_column(train_x: np.ndarray) -> None:
    bad = train_x[:100].copy()
    bad[10, 4] = np.nan
    with pytest.raises(InputError) as info:
        make_detector("vae", **FIT).fit(bad)
    assert info.value.field == "f4"


def test_unfitted_bundle_says_so(test_x: np.ndarray) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        make_detector("vae").decision_function(test_x)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="alert_rate"):
        make_detector("vae", alert_rate=1.5)
    with pytest.raises(ValueError, match="unknown detector parameter"):
        make_detector("vae", max_epoch=3)
    with pytest.raises(ValueError, match="unknown detector kind"):
        make_detector("flow", **FIT).fit(normal_data(50, 0))


def test_score_top_fraction_pools_the_largest_contributions() -> None:
    contributions = np.array([[1.0, 5.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    assert top_mean(contributions, 1.0) == pytest.approx([2.25, 2.0])
    assert top_mean(contributions, 0.5) == pytest.approx([4.0, 2.0])
    assert top_mean(contributions, 0.01) == pytest.approx([5.0, 2.0])
    with pytest.raises(ValueError, match="score_top_fraction"):
        make_detector("vae", score_top_fraction=0.0)
    # The estimator itself checks its parameters in fit (scikit-learn's convention).
    unchecked = FraudModelBundle("vae", score_top_fraction=0.0)
    with pytest.raises(ValueError, match="score_top_fraction"):
        unchecked.fit(np.zeros((10, 2)))
