"""The training job: one MLflow run per trained detector.

data file -> validation (errors name the file and column) -> behaviour
features over the whole history -> time split (train | label delay | held-out
week) -> fit the bundle -> evaluate on the held-out week -> log params,
per-epoch losses, metrics, plots, schema, data fingerprint and model card ->
register the bundle as a new version of the configured model name.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml

from gendetect import metrics
from gendetect.bundle import FraudModelBundle
from gendetect.config import Settings, get_settings
from gendetect.data.io import fingerprint, read_table
from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import Schema, load_schema
from gendetect.tracking import RegisteredModel, ensure_experiment, log_bundle, set_alias
from training.model_card import model_card

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    train: pd.DataFrame
    test: pd.DataFrame | None
    schema: Schema
    source: str


@dataclass
class TrainOutcome:
    kind: str
    bundle: FraudModelBundle
    registered: RegisteredModel
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


# ----------------------------------------------------------------- config
def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The default config, with a user YAML file merged over it."""
    text = resources.files("training.configs").joinpath("default.yaml").read_text()
    config = yaml.safe_load(text)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError("config file not found", source=str(p))
        user = yaml.safe_load(p.read_text()) or {}
        if not isinstance(user, dict):
            raise InputError("expected a mapping of settings", source=str(p))
        config = _deep_merge(config, user)
    return config


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------- data
def prepare_data(df: pd.DataFrame, config: dict[str, Any], source: str) -> PreparedData:
    """Validate, add behaviour features over the full history, split by time.

    Behaviour features come first so that held-out rows see their real
    history; labels enter them only through the delayed terminal risk."""
    schema = load_schema(config["schema"])
    schema = schema.resolve_columns([c for c in df.columns if c != schema.label_field])
    schema.validate_frame(df, source=source)
    pipeline = FeaturePipeline(schema)
    if pipeline.window_config is not None:
        df = pipeline.with_window_features(df)
    evaluation = config.get("evaluation", {})
    holdout = int(evaluation.get("holdout_days", 0))
    time_col = next((f.name for f in schema.fields if f.kind == "timestamp"), None)
    if not holdout or time_col is None:
        return PreparedData(df, None, schema, source)
    times = pd.to_datetime(df[time_col])
    test_start = times.max().normalize() - pd.Timedelta(days=holdout - 1)
    train_end = test_start - pd.Timedelta(days=int(evaluation.get("delay_days", 0)))
    train_start = times.min().normalize() + pd.Timedelta(days=_warmup_days(pipeline, evaluation))
    if train_start >= train_end - pd.Timedelta(days=7):
        log.warning("too few days to skip the window warm-up: training from the first day")
        train_start = times.min()
    train = df[(times >= train_start) & (times < train_end)]
    test = df[times >= test_start]
    if len(train) < 100 or test.empty:
        raise InputError(
            f"too little data for a {holdout}-day held-out week: {len(train)} training rows; "
            "use more days or set evaluation.holdout_days: 0",
            source=source,
        )
    return PreparedData(train, test, schema, source)


def _warmup_days(pipeline: FeaturePipeline, evaluation: dict[str, Any]) -> int:
    """Days at the start of the history whose window features are still
    filling up (longest window + label delay): they look unlike live traffic,
    so training skips them when there is enough data."""
    value = evaluation.get("warmup_days", "auto")
    config = pipeline.window_config
    if value != "auto":
        return int(value)
    if config is None:
        return 0
    longest = max((*config.customer_windows_days, *config.terminal_windows_days))
    return int(np.ceil(longest + config.delay_days))


# ------------------------------------------------------------- evaluation
def evaluate(bundle: FraudModelBundle, test: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    scores = bundle.decision_function(test)
    label = bundle.schema.label_field
    if label is None or label not in test.columns:
        return {}, scores
    y = test[label].to_numpy()
    result = metrics.evaluate_scores(y, scores, alert_rate=bundle.alert_rate)
    if "fraud_scenario" in test.columns:
        by_scenario = metrics.recall_by_group(
            y, scores, test["fraud_scenario"].to_numpy(), alert_rate=bundle.alert_rate
        )
        for scenario, recall in by_scenario.items():
            if int(scenario) != 0:
                result[f"recall_at_alert_rate_scenario_{int(scenario)}"] = recall
    return result, scores


# -------------------------------------------------------------------- job
def train_one(
    kind: str,
    data: PreparedData,
    config: dict[str, Any],
    settings: Settings,
    *,
    fingerprint_info: dict[str, Any] | None = None,
    alias: str | None = None,
) -> TrainOutcome:
    """Fit, evaluate and register one detector as one MLflow run."""
    started = time.perf_counter()
    experiment_id = ensure_experiment(settings)
    params = dict(config.get("model", {}))
    bundle = FraudModelBundle(
        kind, schema=data.schema, alert_rate=float(config["alert_rate"]), **params
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{kind}") as run:
        mlflow.set_tags({"gendetect.kind": kind, "gendetect.source": Path(data.source).name})
        mlflow.log_params(_flatten({"kind": kind, "n_train_rows": len(data.train), **config}))
        if fingerprint_info:
            mlflow.log_dict(fingerprint_info, "data/fingerprint.json")
            mlflow.set_tag("gendetect.data_sha256", fingerprint_info.get("sha256", ""))
        mlflow.log_text(data.schema.to_yaml(), "schema.yaml")

        bundle.fit(data.train)
        _log_losses(bundle)
        results: dict[str, float] = {"fit_seconds": bundle.metadata["fit_seconds"]}
        if data.test is not None:
            evaluation, scores = evaluate(bundle, data.test)
            results.update(evaluation)
            _log_plots(bundle, data.test, scores)
        mlflow.log_metrics({k: v for k, v in results.items() if np.isfinite(v)})
        bundle.metadata.update(
            {"run_id": run.info.run_id, "data": fingerprint_info or {}, "evaluation": results}
        )
        mlflow.log_text(model_card(bundle, results, data), "model_card.md")
        registered = log_bundle(bundle, data.train[_input_columns(data)].head(5), settings)
        mlflow.set_tag("gendetect.model_version", registered.version)
    if alias:
        set_alias(settings, alias, registered.version)
    seconds = time.perf_counter() - started
    log.info("trained %s: version %s in %.1fs %s", kind, registered.version, seconds, results)
    return TrainOutcome(kind, bundle, registered, results, seconds)


def _input_columns(data: PreparedData) -> list[str]:
    """Every schema field the training data has, labels included: they are
    optional model inputs that feed the delayed terminal-risk features."""
    return [f.name for f in data.schema.fields if f.name in data.train.columns]


def _log_losses(bundle: FraudModelBundle) -> None:
    assert bundle.core is not None
    members = bundle.core.members
    for member in members:
        prefix = f"{member.kind}_" if len(members) > 1 else ""
        for row in member.training_.history:
            step = int(row["epoch"])
            values = {f"{prefix}{k}": v for k, v in row.items() if k != "epoch" and np.isfinite(v)}
            mlflow.log_metrics(values, step=step)


def _log_plots(bundle: FraudModelBundle, test: pd.DataFrame, scores: np.ndarray) -> None:
    from gendetect import plots

    label = bundle.schema.label_field
    y = test[label].to_numpy() if label and label in test.columns else None
    assert bundle.core is not None and bundle.threshold_ is not None
    figures = {
        "plots/score_histogram.png": plots.score_histogram(scores, y, bundle.threshold_),
        "plots/loss_curves.png": plots.loss_curves(
            {m.kind: m.training_.history for m in bundle.core.members}
        ),
    }
    if y is not None and 0 < y.sum() < len(y):
        figures["plots/roc.png"] = plots.roc_figure(y, scores)
        figures["plots/precision_recall.png"] = plots.pr_figure(y, scores)
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plots.plt.close(fig)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_prepared(path: str, config: dict[str, Any]) -> tuple[PreparedData, dict[str, Any]]:
    df = read_table(path)
    return prepare_data(df, config, source=path), fingerprint(df)


def cli_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _set_threads()
    settings = get_settings()
    config = load_config(args.config)
    if args.seed is not None:
        config["model"]["seed"] = args.seed
    if args.epochs is not None:
        config["model"]["max_epochs"] = args.epochs
    data, fp = load_prepared(args.data, config)
    outcome = train_one(args.model, data, config, settings, fingerprint_info=fp, alias=args.alias)
    shown = {k: round(v, 4) for k, v in outcome.metrics.items()}
    print(
        f"registered {outcome.registered.name} version {outcome.registered.version} "
        f"({args.model}, {outcome.seconds:.1f}s): {shown}"
    )
    return 0


def _set_threads() -> None:
    import torch

    # Small MLPs: one intra-op thread is fastest and does not fight other processes.
    torch.set_num_threads(1)
