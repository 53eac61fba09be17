"""Gaps and learned categorical levels mean one thing on every surface: the
same records (nullable fields empty or left out, e-mail domains never seen
in training) get the same scores (1e-6 relative) from the bundle in
memory, the API's record path, `gendetect score` on Parquet and on CSV
(where a gap is an empty cell), and `mlflow.pyfunc.load_model().predict`.
A missing column that is not nullable still stops `gendetect score` with
exit 2, naming the file and the column."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from gendetect import tracking
from gendetect.bundle import FraudModelBundle
from gendetect.cli import main as cli
from gendetect.config import Settings, get_settings
from scoring import model_log
from tests.conftest import FOREIGN_ENV
from tests.gappy import gappy_frame, gappy_schema

pytestmark = pytest.mark.integration
RTOL = 1e-6


@dataclass
class Gappy:
    settings: Settings
    bundle: FraudModelBundle
    model_uri: str
    records: pd.DataFrame  # to score: gaps, a left-out column, unseen levels
    expected: np.ndarray  # the in-memory bundle's scores
    unseen: int  # e-mail domains of `records` that training never saw


def _json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """What the API hands the bundle: None for gaps and left-out fields."""
    return [{k: (None if v is None or v is pd.NA or v != v else v) for k, v in r.items()}
            for r in df.to_dict("records")]


@pytest.fixture(scope="module")
def gappy(tmp_path_factory: pytest.TempPathFactory) -> Gappy:
    home = tmp_path_factory.mktemp("gappy")
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    train = gappy_frame(1500, 0)
    bundle = FraudModelBundle("vae", schema=gappy_schema(), max_epochs=2, seed=0,
                              accelerator="cpu", alert_rate=0.05).fit(train)
    experiment = tracking.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment):
        ref = model_log.log_bundle(bundle, train.head(5), settings)
    tracking.set_alias(settings, settings.champion_alias, ref.version)
    records = gappy_frame(120, 1).drop(columns=["balance"])  # a column left out
    records.loc[:9, "email_domain"] = [f"unseen{k}.example" for k in range(10)]
    domains = records["email_domain"]
    unseen = int((domains.notna() & ~domains.isin(train["email_domain"])).sum())
    assert unseen >= 10
    return Gappy(settings, bundle, f"models:/{ref.name}/{ref.version}", records,
                 bundle.decision_function(records), unseen)


def test_the_record_path_scores_as_the_frame_path(gappy: Gappy) -> None:
    decisions = gappy.bundle.score_records(_json_records(gappy.records))
    np.testing.assert_allclose([d["score"] for d in decisions], gappy.expected, rtol=RTOL)
    assert np.isfinite(gappy.expected).all()


def test_pyfunc_predict(gappy: Gappy) -> None:
    # Booleans with gaps as objects (True/False/None), as JSON input arrives:
    # MLflow's schema enforcement cannot convert pandas' nullable "boolean"
    # dtype with NA to its boolean type.
    frame = gappy.records.astype({"is_foreign": object})
    frame["is_foreign"] = frame["is_foreign"].where(frame["is_foreign"].notna(), None)
    out = mlflow.pyfunc.load_model(gappy.model_uri).predict(frame)
    np.testing.assert_allclose(out["score"].to_numpy(float), gappy.expected, rtol=RTOL)


@pytest.fixture
def cli_env(gappy: Gappy, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENDETECT_HOME", str(gappy.settings.home))
    monkeypatch.setenv("GENDETECT_TRACKING_URI", gappy.settings.resolved_tracking_uri)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_gendetect_score(gappy: Gappy, tmp_path: Path, cli_env: None, suffix: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / f"records{suffix}"
    frame = gappy.records
    if suffix == ".csv":
        frame.to_csv(data, index=False)  # gaps are empty cells
    else:
        frame.to_parquet(data, index=False)
    out = tmp_path / f"scored{suffix}"
    assert cli(["score", "--data", str(data), "--out", str(out)]) == 0
    scored = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    np.testing.assert_allclose(scored["gd_score"].to_numpy(float), gappy.expected, rtol=RTOL)
    # The unseen e-mail domains are counted, not refused.
    err = capsys.readouterr().err
    assert f"email_domain: {gappy.unseen} value(s) of a level not seen in training" in err


def test_a_missing_required_column_is_exit_2_naming_file_and_column(
    gappy: Gappy, tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "no-amount.parquet"
    gappy.records.drop(columns=["amount"]).to_parquet(data, index=False)
    assert cli(["score", "--data", str(data), "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "amount" in err


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from scoring.spark import spark_session

    session = spark_session("local[2]", "gendetect-gaps-test",
                            {"spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_udf(gappy: Gappy, spark: Any) -> None:
    """Spark nulls (strings, booleans) and NaN (doubles) are gaps too."""
    from scoring.spark import score

    tracking.configure(gappy.settings)
    frame = gappy.records.astype({"is_foreign": object})
    frame["is_foreign"] = frame["is_foreign"].where(frame["is_foreign"].notna(), None)
    out = score(spark.createDataFrame(frame), gappy.model_uri).toPandas()
    out = out.sort_values("transaction_id")
    expected = pd.Series(gappy.expected, index=gappy.records["transaction_id"]).sort_index()
    np.testing.assert_allclose(out["gd_score"].to_numpy(float), expected.to_numpy(), rtol=RTOL)
