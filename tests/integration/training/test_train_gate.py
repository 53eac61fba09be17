"""`gendetect train`'s quality gate against a real (SQLite-backed) MLflow
store, through the CLI's `main()` in this process: exit 0 when the new
version passes (alias moved), 3 when refused (registered, tagged
`gendetect.gate=refused`, no alias), 0 with --force (alias moved, tagged
`forced`); and what the MLflow UI shows of a training run (grouped metric
names, the run's description, tables, the model card, the registered
model's description and tags, the logged model's final losses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from gendetect.cli import main as cli
from gendetect.config import get_settings
from gendetect.data.simulator import simulate_transactions
from gendetect.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, configure
from training.gate import GATE_TAG
from training.train import EXIT_REFUSED

pytestmark = pytest.mark.integration

MODEL = "gendetect"
SINCE, UNTIL = "2024-01-10", "2024-01-24"
GROUPS = ("eval/", "fairness/", "train/")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate-data") / "tx.parquet"
    simulate_transactions(n_customers=100, n_terminals=200, days=30, seed=0,
                          age_groups=True).to_parquet(path)
    return path


def _train(tmp: Path, data: Path, name: str, *extra: str, **sections: object) -> int:
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"model": {"max_epochs": 1, "seed": 0}, **sections}))
    get_settings.cache_clear()
    return cli(["train", "--model", "vae", "--data", str(data), "--config", str(config),
                "--since", SINCE, "--until", UNTIL, "-q", *extra])


def _alias(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias(MODEL, alias).version)


def _gate_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("quality gate ")]
    assert len(lines) == 1, out
    return lines[0]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return out


def test_gate_exit_codes_and_aliases(
    gendetect_home: Path, tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. No champion yet, above the ROC AUC floor: passed, alias moved, exit 0.
    assert _train(tmp_path, data_file, "first", "--alias", "champion") == 0
    line = _gate_line(capsys.readouterr().out)
    assert line.startswith("quality gate passed: version 1 average_precision ")
    assert "vs no champion" in line
    client = configure(get_settings())
    assert _alias(client, "champion") == "1"
    assert client.get_model_version(MODEL, "1").tags[GATE_TAG] == "passed"

    # 2. Must beat the champion by an impossible margin: refused, exit 3. The
    # version is registered (to be inspected) but gets no alias.
    strict = {"promotion": {"min_improvement": 1e9}}
    assert _train(tmp_path, data_file, "strict", "--alias", "champion", "--seed", "1",
                  **strict) == EXIT_REFUSED
    out = capsys.readouterr().out
    line = _gate_line(out)
    assert "quality gate refused: version 2 average_precision" in line
    assert "vs champion (version 1)" in line and "does not beat champion" in line
    assert "alias 'champion' not moved" in out
    assert _alias(client, "champion") == "1"
    assert client.get_model_version(MODEL, "2").tags[GATE_TAG] == "refused"
    # The champion was measured on the same held-out rows as its own run.
    champ_run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    shown = re.search(r"vs champion \(version 1\) (\d+\.\d+)", line)
    assert shown, line
    assert float(shown.group(1)) == pytest.approx(
        champ_run.data.metrics["eval/average_precision"], abs=5e-5)

    # 3. The same with --force: alias moved, tagged forced, exit 0.
    assert _train(tmp_path, data_file, "strict", "--alias", "champion", "--seed", "2",
                  "--force", **strict) == 0
    assert "quality gate refused: version 3" in capsys.readouterr().out
    assert _alias(client, "champion") == "3"
    assert client.get_model_version(MODEL, "3").tags[GATE_TAG] == "forced"

    # 4. Near chance (a floor no model reaches): refused even when better.
    assert _train(tmp_path, data_file, "floor", "--alias", "champion", "--seed", "3",
                  promotion={"min_improvement": -1.0, "min_roc_auc": 1.0}) == EXIT_REFUSED
    assert "is below promotion.min_roc_auc 1" in _gate_line(capsys.readouterr().out)
    assert _alias(client, "champion") == "3"

    _assert_training_pages(client, tmp_path)


def _assert_training_pages(client: MlflowClient, tmp: Path) -> None:
    """What the MLflow UI shows of version 2's run (a refused one)."""
    experiment = client.get_experiment_by_name("gendetect")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND  # the classic ML view
    mv = client.get_model_version(MODEL, "2")
    run = client.get_run(mv.run_id)
    metrics = run.data.metrics
    assert metrics and all(name.startswith(GROUPS) for name in metrics), sorted(metrics)
    assert {"eval/roc_auc", "eval/average_precision", "eval/n_labels",
            "train/train_loss", "train/val_loss", "train/final_val_loss"} <= set(metrics)
    assert any(n.startswith("fairness/customer_age_group.") for n in metrics)
    # The run's description: the gate's verdict, the headline metrics.
    note = run.data.tags["mlflow.note.content"]
    assert "quality gate refused: vae average_precision" in note
    assert "| average_precision |" in note
    # Tables and plots.
    paths = _artifacts(client, run.info.run_id)
    for expected in ("tables/comparison.json", "tables/fairness.json", "plots/roc.png",
                     "plots/precision_recall.png", "plots/calibration.png", "model_card.md"):
        assert expected in paths, sorted(paths)
    # The model card: counts as integers, parameters as a table.
    card = Path(client.download_artifacts(run.info.run_id, "model_card.md", str(tmp))).read_text()
    n_labels = int(metrics["eval/n_labels"])
    assert f"| n_labels | {n_labels:,} |" in card
    assert "| max_epochs | 1 |" in card and "{" not in card.split("## Training")[1]
    assert "## Quality gate" in card and "does not beat champion" in card
    # The registered model: a description and tags.
    registered = client.get_registered_model(MODEL)
    assert "fraud detector" in registered.description
    assert "`transactions`" in registered.description
    assert registered.tags["gendetect.promotion.metric"] == "average_precision"
    assert registered.tags["gendetect.schema"] == "transactions"
    # The logged model carries the fit's final losses, not the first epoch's.
    model = client.get_logged_model(run.outputs.model_outputs[0].model_id)
    linked = {m.key: m.value for m in model.metrics or []}
    history = client.get_metric_history(run.info.run_id, "train/val_loss")
    last = max(history, key=lambda m: m.step)
    assert linked["train/final_val_loss"] == pytest.approx(last.value)
    assert "train/val_loss" not in linked and "eval/roc_auc" in linked
    assert model.tags["mlflow.note.content"] == note  # the Models tab's description
