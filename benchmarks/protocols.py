"""Data loading and train/test splits for the two quality-benchmark tracks.

Handbook track: the unsupervised setup of the Fraud Detection Handbook,
chapter 7 (7 training days, 7-day label delay, 7 test days; cards already known
as compromised removed from the test days). ADBench track: the split protocol
described in the shared data README (stratified 70/30, capped part sizes,
scaling fit on the training part).

Everything here is deterministic given (data, seed) so the numbers of every
detector in one run come from exactly the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

HANDBOOK_FEATURES: tuple[str, ...] = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW",
    "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW",
    "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW",
    "TERMINAL_ID_RISK_30DAY_WINDOW",
)

# First test day of each evaluated week; the first is the handbook's own
# (training 2018-07-11..17, test 2018-07-25..31).
HANDBOOK_TEST_STARTS: tuple[str, ...] = ("2018-07-25", "2018-08-01", "2018-08-08", "2018-08-15")
DELTA_TRAIN = 7
DELTA_DELAY = 7
DELTA_TEST = 7

# Raw handbook column -> project column, for the full-pipeline variant.
RAW_COLUMNS: dict[str, str] = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "timestamp",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
    "TX_FRAUD_SCENARIO": "fraud_scenario",
}


# --------------------------------------------------------------------------- handbook


def handbook_path(data_dir: Path) -> Path:
    return Path(data_dir) / "handbook" / "transactions.parquet"


def load_handbook(data_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(handbook_path(data_dir))
    # The handbook sorts by TRANSACTION_ID after loading; IDs are not in time
    # order everywhere, so keep its order to replicate row order exactly.
    return df.sort_values("TRANSACTION_ID", kind="stable").reset_index(drop=True)


def handbook_split(
    df: pd.DataFrame,
    test_start: str | dt.date,
    delta_train: int = DELTA_TRAIN,
    delta_delay: int = DELTA_DELAY,
    delta_test: int = DELTA_TEST,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test frames exactly as the handbook's `get_train_test_set`.

    Training rows: TX_DATETIME in [train_start, train_start + delta_train),
    where train_start = test_start - delta_delay - delta_train.
    Test day i (i = 0..delta_test-1) is TX_TIME_DAYS = first training day +
    delta_train + delta_delay + i. A customer is removed from test day i when
    it had a fraud in the training rows or on any day from the end of training
    up to day (first training day + delta_train + i - 1): the frauds of the
    delay period become known one day at a time, and the set only grows.
    Note the handbook's off-by-one: on test day i the newest known frauds are
    delta_delay + 1 days old, not delta_delay.
    """
    start = pd.Timestamp(test_start) - pd.Timedelta(days=delta_delay + delta_train)
    in_train = (df["TX_DATETIME"] >= start) & (
        df["TX_DATETIME"] < start + pd.Timedelta(days=delta_train)
    )
    train_df = df[in_train]
    if train_df.empty:
        raise ValueError(f"no training rows for a test week starting {test_start}")

    known = set(train_df.loc[train_df["TX_FRAUD"] == 1, "CUSTOMER_ID"])
    first_day = int(train_df["TX_TIME_DAYS"].min())
    days = df["TX_TIME_DAYS"].to_numpy()
    parts = []
    for i in range(delta_test):
        revealed_day = first_day + delta_train + i - 1
        revealed = df[(days == revealed_day) & (df["TX_FRAUD"].to_numpy() == 1)]
        known |= set(revealed["CUSTOMER_ID"])
        test_day = df[days == first_day + delta_train + delta_delay + i]
        parts.append(test_day[~test_day["CUSTOMER_ID"].isin(known)])
    test_df = pd.concat(parts)
    return (
        train_df.sort_values("TRANSACTION_ID", kind="stable"),
        test_df.sort_values("TRANSACTION_ID", kind="stable"),
    )


@dataclass(frozen=True)
class HandbookWeek:
    """One handbook train/test layout, scaled with a StandardScaler fit on the
    training rows (the handbook's `scaleData`)."""

    test_start: str
    train: pd.DataFrame
    test: pd.DataFrame
    x_train: np.ndarray
    x_test: np.ndarray
    features: tuple[str, ...]

    @property
    def y_test(self) -> np.ndarray:
        return self.test["TX_FRAUD"].to_numpy()


def handbook_week(
    df: pd.DataFrame,
    test_start: str,
    features: tuple[str, ...] = HANDBOOK_FEATURES,
    max_train_rows: int | None = None,
) -> HandbookWeek:
    """Build one week; `max_train_rows` subsamples training rows (seed 0) for
    smoke runs only, it is not part of the protocol."""
    train_df, test_df = handbook_split(df, test_start)
    if max_train_rows is not None and len(train_df) > max_train_rows:
        train_df = train_df.sample(n=max_train_rows, random_state=0).sort_values("TRANSACTION_ID")
    scaler = StandardScaler().fit(train_df[list(features)].to_numpy(np.float64))
    return HandbookWeek(
        test_start=test_start,
        train=train_df,
        test=test_df,
        x_train=scaler.transform(train_df[list(features)].to_numpy(np.float64)),
        x_test=scaler.transform(test_df[list(features)].to_numpy(np.float64)),
        features=tuple(features),
    )


def handbook_weeks(
    df: pd.DataFrame,
    test_starts: tuple[str, ...] = HANDBOOK_TEST_STARTS,
    max_train_rows: int | None = None,
) -> Iterator[HandbookWeek]:
    for start in test_starts:
        yield handbook_week(df, start, max_train_rows=max_train_rows)


def raw_pipeline_frames(
    df: pd.DataFrame, test_start: str = HANDBOOK_TEST_STARTS[0]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The "full pipeline from raw columns" variant: the same train/test rows
    as `handbook_split`, with only the raw columns renamed to the project's
    schema (transaction_id, timestamp, customer_id, terminal_id, amount,
    is_fraud, fraud_scenario) plus gendetect's OWN window features.

    The handbook's precomputed features are dropped: gendetect computes the
    behaviour features with its offline engine over the whole history (the
    first rows of a week need 30 days before it, terminal risk needs the
    labels of the delay period, used only through the 7-day delay), then the
    protocol's rows are selected. The detector's pipeline uses these columns
    as they are, exactly as `gendetect features` output would be used.
    """
    train_df, test_df = handbook_split(df, test_start)
    full = _raw_with_windows(df)
    return (
        full.loc[train_df["TRANSACTION_ID"].to_numpy()].reset_index(),
        full.loc[test_df["TRANSACTION_ID"].to_numpy()].reset_index(),
    )


_RAW_CACHE: dict[int, pd.DataFrame] = {}


def _raw_with_windows(df: pd.DataFrame) -> pd.DataFrame:
    """Raw columns + gendetect window features for the whole file, indexed by
    transaction_id; computed once per process (about 5 s for 1.75M rows)."""
    key = id(df)
    if key not in _RAW_CACHE:
        from gendetect.features.window_engine import add_window_features

        raw = df[list(RAW_COLUMNS)].rename(columns=RAW_COLUMNS)
        _RAW_CACHE.clear()
        _RAW_CACHE[key] = add_window_features(raw).set_index("transaction_id")
    return _RAW_CACHE[key]


# --------------------------------------------------------------------------- ADBench

ADBENCH_SEEDS: tuple[int, ...] = (0, 1, 2)
ADBENCH_MAX_ROWS = 50_000
# Small, fast, and of different kinds (medical, network, marketing) for --quick.
ADBENCH_QUICK: tuple[str, ...] = ("6_cardio", "16_http", "5_campaign")


@dataclass(frozen=True)
class TabularSplit:
    dataset: str
    seed: int
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def adbench_files(data_dir: Path, only: tuple[str, ...] | None = None) -> list[Path]:
    folder = Path(data_dir) / "adbench"
    files = sorted(folder.glob("*.npz"), key=lambda p: _numeric_prefix(p.stem))
    if only is not None:
        files = [p for p in files if p.stem in only]
    return files


def _numeric_prefix(stem: str) -> tuple[int, str]:
    head = stem.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1_000_000, stem)


def load_adbench(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        x = np.asarray(data["X"], dtype=np.float64)
        y = (np.asarray(data["y"]).ravel() > 0).astype(np.int8)
    return x, y


def _stratified_cap(
    x: np.ndarray, y: np.ndarray, max_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if len(y) <= max_rows:
        return x, y
    x_keep, _, y_keep, _ = train_test_split(
        x, y, train_size=max_rows, stratify=y, random_state=seed
    )
    return x_keep, y_keep


def adbench_split(
    path: Path,
    seed: int,
    max_rows: int = ADBENCH_MAX_ROWS,
    total_rows: int | None = None,
    test_size: float = 0.3,
) -> TabularSplit:
    """Stratified 70/30 split, each part capped at `max_rows` by a stratified
    subsample, StandardScaler fit on the training part. `total_rows`
    subsamples the whole file first (smoke runs only)."""
    x, y = load_adbench(path)
    if total_rows is not None:
        x, y = _stratified_cap(x, y, total_rows, seed)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    x_tr, y_tr = _stratified_cap(x_tr, y_tr, max_rows, seed)
    x_te, y_te = _stratified_cap(x_te, y_te, max_rows, seed)
    scaler = StandardScaler().fit(x_tr)
    return TabularSplit(
        dataset=path.stem,
        seed=seed,
        x_train=scaler.transform(x_tr),
        x_test=scaler.transform(x_te),
        y_train=y_tr,
        y_test=y_te,
    )


# ------------------------------------------------------------- clean-normal, few-label

# The harness: training rows capped at 20,000 (DTE and ADGym runs).
CAPPED_TRAIN_ROWS = 20_000


def clean_normal_split(
    path: Path, seed: int, max_train_rows: int = CAPPED_TRAIN_ROWS
) -> TabularSplit:
    """DTE's protocol (Livernoche et al., 2024): a random half of the normal
    rows trains (capped at `max_train_rows`), the other half and every
    anomaly test (the test part capped at ADBENCH_MAX_ROWS, stratified);
    StandardScaler fit on the training part. The training rows are all
    normal: what a team's cleared transactions give."""
    x, y = load_adbench(path)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    half = len(normal) // 2
    train = np.sort(normal[:half][:max_train_rows])
    test = np.sort(np.concatenate([normal[half:], np.flatnonzero(y == 1)]))
    x_te, y_te = _stratified_cap(x[test], y[test], ADBENCH_MAX_ROWS, seed)
    scaler = StandardScaler().fit(x[train])
    return TabularSplit(
        dataset=path.stem, seed=seed, x_train=scaler.transform(x[train]),
        x_test=scaler.transform(x_te), y_train=y[train], y_test=y_te,
    )


def few_label_split(path: Path, seed: int, max_train_rows: int = CAPPED_TRAIN_ROWS) -> TabularSplit:
    """ADGym's split: stratified 70/30, the training part capped at
    `max_train_rows` (anomalies stay in it, unlabelled unless drawn)."""
    return adbench_split(path, seed, max_rows=max_train_rows)


def few_labels(y_train: np.ndarray, k: int, draw: int) -> np.ndarray | None:
    """Training labels with `k` anomalies drawn at random (draw = the
    generator's seed) labelled 1 and every other row unknown (-1); None when
    the training part holds fewer than k anomalies."""
    anomalies = np.flatnonzero(np.asarray(y_train) == 1)
    if len(anomalies) < k:
        return None
    chosen = np.random.default_rng(draw).choice(anomalies, size=k, replace=False)
    labels = np.full(len(y_train), -1, dtype=np.int64)
    labels[chosen] = 1
    return labels
