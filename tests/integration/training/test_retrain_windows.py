"""Retraining windows against a real (SQLite-backed) MLflow store, through
the CLI's `main()` in this process:

- `gendetect retrain --since --until` trains on the window, compares with
  the champion on the same held-out period after it, logs the comparison in
  one run (challengers nested), and exits 0 promoted / 3 kept;
- a rerun of the same window with the same data and config reuses its
  version (no pile-up);
- labels: the file's own column counts only once its delay has passed by
  the end of the window; a labels file and the verdict store count only
  when labelled before the end of the window;
- accountability: datasets (log_input with digest, source, time window),
  the code version, version tags and description.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sqlalchemy import insert

from gendetect.cli import main as cli
from gendetect.config import get_settings
from gendetect.data.simulator import simulate_transactions
from gendetect.stores import migrate
from gendetect.stores.database import make_engine
from gendetect.stores.tables import verdicts
from gendetect.tracking import configure
from training import retrain as retrain_module
from training.config import load_config
from training.data import prepare_data
from training.labels import LabelSources

pytestmark = pytest.mark.integration

MODEL = "gendetect"
SINCE, UNTIL = "2024-01-10", "2024-01-24"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("retrain-data") / "tx.parquet"
    simulate_transactions(n_customers=100, n_terminals=200, days=30, seed=0,
                          age_groups=True).to_parquet(path)
    return path


def _config(tmp: Path, name: str, **sections: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"model": {"max_epochs": 1, "seed": 0}, **sections}))
    return path


def _retrain(data: Path, config: Path, *extra: str) -> int:
    get_settings.cache_clear()
    return cli(["retrain", "--data", str(data), "--models", "vae", "--config", str(config),
                "--since", SINCE, "--until", UNTIL, "-q", *extra])


def _versions(client: MlflowClient) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))


def _alias(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias(MODEL, alias).version)


def _retrain_runs(client: MlflowClient) -> list:  # type: ignore[type-arg]
    experiment = client.get_experiment_by_name("gendetect")
    return client.search_runs([experiment.experiment_id],
                              filter_string="tags.`gendetect.job` = 'retrain'",
                              order_by=["attributes.start_time DESC"])


def test_windows_promote_keep_and_reuse(
    gendetect_home: Path, tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "base")
    # 1. No champion yet: promoted (exit 0), both aliases on version 1.
    assert _retrain(data_file, config) == retrain_module.EXIT_PROMOTED
    out = capsys.readouterr().out
    assert "promoted to 'champion': no champion yet" in out
    client = configure(get_settings())
    assert _versions(client) == [1]
    assert _alias(client, "champion") == _alias(client, "challenger") == "1"

    # The retraining run: window, comparison and its label count, nested challenger.
    parent = _retrain_runs(client)[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["window.since"] == "2024-01-10T00:00:00"
    assert parent.data.params["window.until"] == "2024-01-24T00:00:00"
    assert parent.data.params["window.holdout_end"] == "2024-01-31T00:00:00"
    local = client.download_artifacts(parent.info.run_id, "comparison.json", str(tmp_path))
    comparison = json.loads(Path(local).read_text())
    assert comparison["promoted"] is True
    assert comparison["n_labels"] > 0 and 0 < comparison["n_frauds"] < comparison["n_labels"]
    assert parent.data.metrics["decision/n_labels"] == comparison["n_labels"]
    _assert_parent_pages(client, parent, tmp_path)
    # Drift of the held-out period against the serving model's training reference.
    assert "drift/max_psi" in parent.data.metrics and "drift/amount" in parent.data.metrics
    assert parent.data.tags["gendetect.drift"]
    experiment = parent.info.experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags["gendetect.kind"] for c in children] == ["vae"]

    # Accountability: the datasets with digest, source and time window; code version.
    child = children[0]
    contexts = {}
    for dataset_input in child.inputs.dataset_inputs:
        tags = {t.key: t.value for t in dataset_input.tags}
        contexts[tags["mlflow.data.context"]] = (dataset_input.dataset, tags)
    assert set(contexts) == {"training", "evaluation"}
    training, tags = contexts["training"]
    assert training.source_type == "local" and str(data_file.name) in training.source
    assert len(tags["sha256"]) == 64 and training.digest == tags["sha256"][:16]
    assert (tags["since"], tags["until"]) == ("2024-01-10T00:00:00", "2024-01-24T00:00:00")
    assert contexts["evaluation"][1]["until"] == "2024-01-31T00:00:00"
    assert child.data.tags["gendetect.code_version"].startswith("0.")
    assert parent.data.tags["gendetect.code_version"] == child.data.tags["gendetect.code_version"]
    # The version: tags set with it, a description (the model card's head).
    mv = client.get_model_version(MODEL, "1")
    assert mv.tags["gendetect.kind"] == "vae"
    assert mv.tags["gendetect.window.until"] == "2024-01-24T00:00:00"
    assert float(mv.tags["gendetect.metric.average_precision"]) > 0
    assert len(mv.tags["gendetect.training_key"]) == 64
    assert mv.description.startswith("# gendetect vae detector")
    # Fairness: flag and false-positive rates per age band of the held-out
    # period, in the run and in the model card (the version's description).
    for band in ("18-34", "35-54", "55_"):
        assert 0 <= child.data.metrics[f"fairness/customer_age_group.{band}.flag_rate"] <= 1
        assert f"fairness/customer_age_group.{band}.false_positive_rate" in child.data.metrics
    card = Path(client.download_artifacts(child.info.run_id, "model_card.md", str(tmp_path)))
    text = card.read_text()
    assert "## Fairness (held-out period)" in text and "`customer_age_group`" in text
    assert "| 55+ |" in mv.description
    assert "| window | trained on [2024-01-10T00:00:00, 2024-01-24T00:00:00)" in text

    # 2. Same window, data and config: the version is reused (no pile-up);
    # it is the champion already, so the champion is kept (exit 3).
    assert _retrain(data_file, config) == retrain_module.EXIT_KEPT
    out = capsys.readouterr().out
    assert "(reused: same inputs)" in out and "the best challenger is the champion" in out
    assert _versions(client) == [1]

    # 3. Another seed, an impossible margin: a new version, challenger only.
    strict = _config(tmp_path, "strict", promotion={"min_improvement": 1e9})
    assert _retrain(data_file, strict, "--seed", "1") == retrain_module.EXIT_KEPT
    out = capsys.readouterr().out
    assert "does not beat champion" in out
    assert _versions(client) == [1, 2]
    assert (_alias(client, "champion"), _alias(client, "challenger")) == ("1", "2")
    # Champion and challenger were measured on the same held-out rows.
    local = client.download_artifacts(_retrain_runs(client)[0].info.run_id, "comparison.json",
                                      str(tmp_path / "c2"))
    comparison = json.loads(Path(local).read_text())
    assert comparison["champion_metrics"]["n_labels"] == comparison["n_labels"]

    # 4. A margin any challenger passes: promoted (exit 0).
    easy = _config(tmp_path, "easy", promotion={"min_improvement": -1.0})
    assert _retrain(data_file, easy, "--seed", "2") == retrain_module.EXIT_PROMOTED
    assert _versions(client) == [1, 2, 3]
    assert _alias(client, "champion") == _alias(client, "challenger") == "3"


def test_a_window_without_held_out_rows_is_an_input_error(
    gendetect_home: Path, tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    get_settings.cache_clear()
    code = cli(["retrain", "--data", str(data_file), "--models", "vae", "--until", "2024-03-01",
                "-q"])
    assert code == 2
    assert "no held-out rows after --until" in capsys.readouterr().err


# ------------------------------------------------------------------ labels
def _frame() -> pd.DataFrame:
    return simulate_transactions(n_customers=100, n_terminals=200, days=30, seed=0)


def test_file_labels_count_once_their_delay_has_passed() -> None:
    df = _frame()
    config = load_config(overrides={"evaluation": {"holdout_days": 7}})
    data = prepare_data(df, config, "sim", since=datetime(2024, 1, 10),
                        until=datetime(2024, 1, 24))
    assert data.y_train is not None
    times = pd.to_datetime(data.train["timestamp"])
    late = (times >= pd.Timestamp("2024-01-17")).to_numpy()  # the 7-day label delay
    assert (data.y_train[late] == -1).all()
    np.testing.assert_array_equal(data.y_train[~late], data.train["is_fraud"].to_numpy()[~late])
    assert data.label_info["frauds"] == int(data.train["is_fraud"].to_numpy()[~late].sum())
    # Evaluation uses every label known now.
    assert data.test is not None and data.test["is_fraud"].notna().all()


def test_verdicts_count_only_when_known_by_the_end_of_the_window(tmp_path: Path) -> None:
    """A transactions file without labels; verdicts in the store, some given
    after the window ended (and one changed after it): training sees only
    what was known at the end of the window, evaluation everything."""
    df = _frame().drop(columns=["is_fraud"])
    truth = _frame()["is_fraud"].to_numpy()
    url = f"sqlite:///{tmp_path / 'verdicts.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    until = datetime(2024, 1, 24)
    times = pd.to_datetime(df["timestamp"])
    rng = np.random.default_rng(0)
    in_window = np.flatnonzero(((times >= "2024-01-10") & (times < "2024-01-24")).to_numpy())
    early = rng.choice(in_window, 300, replace=False)
    late = rng.choice(np.setdiff1d(in_window, early), 200, replace=False)
    flipped = early[:20]  # labelled before the cutoff, changed after it
    held_out = np.flatnonzero((times >= "2024-01-24").to_numpy())[:150]
    rows = []

    def verdict(i: int, label: int, when: datetime) -> dict[str, object]:
        return {"transaction_id": int(df["transaction_id"].iloc[i]),
                "label": "fraud" if label else "genuine", "analyst": "a", "note": None,
                "labelled_at": when, "received_at": when, "key_name": None, "source": "test"}

    for i in early:
        rows.append(verdict(i, truth[i], until - timedelta(hours=1)))
    for i in flipped:
        rows.append(verdict(i, 1 - truth[i], until + timedelta(days=1)))
    for i in late:
        rows.append(verdict(i, truth[i], until + timedelta(hours=1)))
    for i in held_out:
        rows.append(verdict(i, truth[i], until + timedelta(days=9)))
    with engine.begin() as conn:
        conn.execute(insert(verdicts), rows)
    engine.dispose()

    config = load_config()
    data = prepare_data(df, config, "sim", since=datetime(2024, 1, 10), until=until,
                        labels=LabelSources(database_url=url))
    assert data.y_train is not None
    ids = data.train["transaction_id"].to_numpy()
    labelled = dict(zip(ids[data.y_train >= 0], data.y_train[data.y_train >= 0], strict=True))
    expected = {int(df["transaction_id"].iloc[i]): int(truth[i]) for i in early}
    assert labelled == expected  # neither the late verdicts nor the later change
    assert data.label_info["sources"]["verdict_store"] == len(early)
    assert data.label_info["known_by"] == "2024-01-24T00:00:00"
    # The held-out period is evaluated on the verdicts known now.
    assert data.test is not None
    assert int(data.test["is_fraud"].notna().sum()) == len(held_out)


def test_retrain_reads_a_labels_file_and_the_store(
    gendetect_home: Path, tmp_path: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`gendetect labels export` output as --labels, and the verdict store
    through GENDETECT_DATABASE_URL: the run records how many labels each
    source gave the window."""
    df = pd.read_parquet(data_file)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    picked = df[(df["timestamp"] >= "2024-01-10") & (df["timestamp"] < "2024-01-15")].head(40)
    with engine.begin() as conn:
        conn.execute(insert(verdicts), [
            {"transaction_id": int(t), "label": "genuine", "analyst": "a", "note": None,
             "labelled_at": datetime(2024, 1, 20), "received_at": datetime(2024, 1, 20),
             "key_name": None, "source": "test"} for t in picked["transaction_id"]])
    engine.dispose()
    labels_file = tmp_path / "labels.csv"
    monkeypatch.setenv("GENDETECT_DATABASE_URL", url)
    get_settings.cache_clear()
    assert cli(["labels", "export", "--until", UNTIL, "--out", str(labels_file)]) == 0
    assert len(pd.read_csv(labels_file)) == 40
    config = _config(tmp_path, "labels")
    assert _retrain(data_file, config, "--labels", str(labels_file)) == 0
    client = configure(get_settings())
    parent = _retrain_runs(client)[0]
    local = client.download_artifacts(parent.info.run_id, "data/labels.json", str(tmp_path))
    info = json.loads(Path(local).read_text())
    assert info["sources"]["labels_file"] == 40 and info["sources"]["verdict_store"] == 40
    assert info["known_by"] == "2024-01-24T00:00:00"


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return out


def _assert_parent_pages(client: MlflowClient, parent: Any, tmp: Path) -> None:
    """What the MLflow UI shows of a retraining: the parent run holds the
    decision, drift and the comparison table, and none of its children's
    metrics; the children's metrics are grouped by section."""
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert children
    parent_metrics = set(parent.data.metrics)
    assert parent_metrics and all(n.startswith(("decision/", "drift/")) for n in parent_metrics)
    assert "decision/promoted" in parent_metrics
    for child in children:
        names = set(child.data.metrics)
        assert all(n.startswith(("eval/", "fairness/", "train/")) for n in names), sorted(names)
        assert not names & parent_metrics
    paths = _artifact_paths(client, parent.info.run_id)
    assert {"tables/comparison.json", "tables/drift.json", "comparison.json"} <= paths
    assert "tables/fairness.json" in _artifact_paths(client, children[0].info.run_id)
    table = json.loads(Path(client.download_artifacts(
        parent.info.run_id, "tables/comparison.json", str(tmp))).read_text())
    rows = {row[0] for row in table["data"]}
    assert {"average_precision", "roc_auc", "n_labels"} <= rows
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Retraining: promoted to champion.**")
    assert "| average_precision |" in note
    # The registered model explains itself; the version records the gate.
    registered = client.get_registered_model(MODEL)
    assert registered.description and "average_precision" in registered.description
    assert registered.tags["gendetect.task"] == "fraud-detection"
