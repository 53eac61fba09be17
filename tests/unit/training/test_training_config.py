"""The typed training configuration: default.yaml with a user file merged
over it; unknown keys and wrong types name the file and the dotted key."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gendetect.cli import main as cli
from gendetect.errors import GendetectError, InputError
from gendetect.params import DetectorParams
from training.config import (
    PROMOTION_METRICS,
    ConfigError,
    TrainingConfig,
    load_config,
    validate_config,
)

DEFAULT = "training/configs/default.yaml"


def _write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path: Path | None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_the_default_config_is_valid_and_typed() -> None:
    config = load_config()
    assert isinstance(config, TrainingConfig)
    assert config.schema_name == "transactions"
    assert config.alert_rate == 0.01
    assert config.evaluation.holdout_days == 7 and config.evaluation.warmup_days == "auto"
    assert config.promotion.metric == "average_precision"
    # Exactly the parameters default.yaml sets, in the form the detector takes.
    raw = yaml.safe_load(Path(DEFAULT).read_text())
    assert config.model_params() == raw["model"]
    assert DetectorParams.from_dict(config.model_params()).hidden == (64, 32)


def test_a_user_file_is_merged_over_the_default(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  max_epochs: 2\n  lr: 1e-3\nevaluation:\n  delay_days: 0\n")
    config = load_config(path)
    assert config.model_params()["max_epochs"] == 2
    # YAML reads 1e-3 as a string; the typed field makes it the number it means.
    assert config.model_params()["lr"] == pytest.approx(0.001)
    assert config.model_params()["hidden"] == [64, 32]  # kept from the default
    assert config.evaluation.delay_days == 0 and config.evaluation.holdout_days == 7


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  max_epochs: 2\n  seed: 5\n")
    config = load_config(path, overrides={"model": {"max_epochs": 1}})
    assert config.model_params()["max_epochs"] == 1 and config.model_params()["seed"] == 5


def test_plain_values_by_section() -> None:
    config = load_config()
    assert config.alert_rate == 0.01
    assert config.as_dict()["model"] == config.model_params()
    assert config.as_dict()["schema"] == "transactions"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("evaluation:\n  holdout_dayz: 3\n", "evaluation.holdout_dayz", "unknown key"),
        ("alert_rat: 0.02\n", "alert_rat", "unknown key"),
        ("model:\n  latnt_dim: 4\n", "model.latnt_dim", "unknown key"),
        ("model:\n  max_epochs: ten\n", "model.max_epochs", "input should be a valid integer"),
        ("model:\n  hidden: [64, x]\n", "model.hidden[1]", "input should be a valid integer"),
        ("model: 5\n", "model", "valid dictionary"),
        ("alert_rate: 2\n", "alert_rate", "less than 1"),
        ("evaluation:\n  holdout_days: -1\n", "evaluation.holdout_days", "greater than or equal"),
        ("evaluation:\n  warmup_days: soon\n", "evaluation.warmup_days", "input should be 'auto'"),
        ("promotion:\n  metric: averge_precision\n", "promotion.metric", "unknown metric"),
        ("promotion:\n  metric: fit_seconds\n", "promotion.metric", "unknown metric"),
        ("windows:\n  delay_days: 3\n", "windows", "belong to the schema"),
    ],
)
def test_bad_keys_and_values_name_the_file_and_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = _write(tmp_path, text)
    error = _error(path)
    assert error.source == str(path) and error.field == key
    assert message in error.message
    assert str(error).startswith(f"{path}: key '{key}': ")
    assert "\n" not in str(error)
    # An InputError, so the CLI prints it as one line and exits 2.
    assert isinstance(error, InputError) and isinstance(error, GendetectError)


def test_the_detectors_own_checks_name_the_parameter(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  ensemble_weights: [1, 2, 3]\n")
    error = _error(path)
    assert error.field == "model.ensemble_weights" and error.source == str(path)
    assert "one weight per ensemble member" in error.message


def test_a_seed_the_generators_cannot_take_is_named(tmp_path: Path) -> None:
    # Before: numpy's "expected non-negative integer" traceback, mid-job.
    error = _error(_write(tmp_path, "model:\n  seed: -1\n"))
    assert error.field == "model.seed" and "seed must be within 0..4294967295" in error.message


def test_every_problem_is_on_the_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "evaluation:\n  holdout_dayz: 3\nmodel:\n  max_epochs: ten\n")
    text = str(_error(path))
    assert "'evaluation.holdout_dayz': unknown key" in text
    assert "'model.max_epochs': input should be a valid integer" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [\n", "not valid YAML: line 2"),
        ("- a\n- b\n", "expected a mapping of settings"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    error = _error(path)
    assert error.source == str(path) and message in str(error)
    assert "\n" not in str(error)


def test_a_missing_file(tmp_path: Path) -> None:
    error = _error(tmp_path / "nope.yaml")
    assert str(error) == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_an_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")).as_dict() == load_config().as_dict()


def test_a_bad_value_not_in_the_users_file_blames_the_default(tmp_path: Path) -> None:
    # The user's file is fine; the merged config is not because of a key the
    # default holds (here: injected through a plain mapping).
    raw = load_config().as_dict()
    raw["model"]["max_epochs"] = "many"
    with pytest.raises(ConfigError) as info:
        validate_config(raw, source="my.yaml", user={"alert_rate": 0.02}, default_source=DEFAULT)
    assert info.value.source == DEFAULT and info.value.field == "model.max_epochs"


def test_every_detector_parameter_is_configurable() -> None:
    # The model section follows DetectorParams: a parameter added there needs
    # no change to the config code.
    names = {f.name for f in dataclasses.fields(DetectorParams)}
    assert set(TrainingConfig.model_fields["model"].annotation.model_fields) == names
    config = validate_config(
        {"model": {"refit_trim": 0.1, "ensemble": ["vae", "gan"], "ensemble_weights": [1, 1]}}
    )
    params = DetectorParams.from_dict(config.model_params())
    assert params.refit_trim == 0.1 and params.ensemble == ("vae", "gan")


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_the_cli_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _write(tmp_path, "evaluation:\n  holdout_dayz: 3\n")
    # The config is checked before the data file is even opened.
    code = cli([command, "--data", str(tmp_path / "absent.parquet"), "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"gendetect {command}: error: {path}: key 'evaluation.holdout_dayz': unknown key"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--seed", "-1"], "argument --seed: must be within 0..4294967295"),
        (["train", "--epochs", "0"], "argument --epochs: must be >= 1"),
        (["retrain", "--epochs", "two"], "argument --epochs: not an integer"),
        (["train", "--alias", ""], "argument --alias: '' is not an alias"),
        (["train", "--alias", "latest"], "argument --alias: 'latest' is not an alias"),
        (["train", "--alias", "v2"], "argument --alias: 'v2' is not an alias"),
        (["score", "--out", "x.parquet", "--chunk-rows", "-1"],
         "argument --chunk-rows: must be >= 0"),
        (["simulate", "--out", "x.parquet", "--days", "0"], "argument --days: must be >= 1"),
        (["retrain", "--models", "vae,nope"], "argument --models: unknown nope"),
        (["retrain", "--models", ","], "argument --models: no kinds"),
        (["retrain", "--models", "vae,vae"], "argument --models: repeated kinds"),
    ],
)
def test_bad_option_values_name_the_option_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Before: --seed -1 ended in a numpy traceback, --epochs 0 blamed the
    # default config file, --alias '' registered a version without an alias.
    data = [] if args[0] == "simulate" else ["--data", str(tmp_path / "absent.parquet")]
    with pytest.raises(SystemExit) as info:
        cli([*args, *data])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


# The libraries a training job needs and a config check must not wait for.
_HEAVY = ("torch", "lightning", "mlflow", "sklearn", "pandas")


@pytest.mark.parametrize(
    ("text", "key"),
    [("model:\n  max_epoch: 3\n", "model.max_epoch"), ("alert_rate: 2\n", "alert_rate")],
)
def test_a_bad_config_is_reported_before_the_heavy_imports(
    tmp_path: Path, text: str, key: str
) -> None:
    # A real process, as a user runs it: -X importtime lists every module the
    # process imported (on stderr), so "torch was not imported before the
    # error" is read from the interpreter, not assumed.
    path = _write(tmp_path, text, name="typo.yaml")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gendetect", "train",
         "--data", str(tmp_path / "absent.parquet"), "--config", str(path)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    message = [line for line in lines if line.startswith("gendetect train: error:")]
    assert message and f"{path}: key '{key}'" in message[0]
    imported = {line.rsplit("|", 1)[-1].strip()
                for line in lines if line.startswith("import time:")}
    assert "training.config" in imported  # the listing is the real one
    assert not imported.intersection(_HEAVY)


def test_the_promotion_metric_names_are_the_evaluated_ones() -> None:
    # training.config writes them out (no scikit-learn import to check a config).
    from gendetect.metrics import evaluate_scores

    assert set(evaluate_scores([0, 1], [0.0, 1.0])) == PROMOTION_METRICS
