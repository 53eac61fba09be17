"""The training job: one MLflow run per trained detector.

data file -> validation (errors name the file and column) -> behaviour
features over the whole history -> time split (train | label delay | held-out
week) -> fit the bundle -> evaluate on the held-out week -> log params,
per-epoch losses, metrics, plots, schema, data fingerprint, model card and
the model -> end the run -> register the logged model as a new version of the
configured model name -> move the alias.

Configuration: training.config; data preparation: training.data; how runs
end when a job is killed: training.runs.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from gendetect import metrics
from gendetect.bundle import FraudModelBundle
from gendetect.cli import CliError, show_progress
from gendetect.config import Settings, get_settings
from gendetect.models.training import is_rank_zero_process
from gendetect.tracking import (
    RegisteredModel,
    configure,
    ensure_experiment,
    load_registered_bundle,
    log_bundle_model,
    register_bundle,
    set_alias,
)
from training import fairness, lineage
from training import labels as label_sources
from training.config import TrainingConfig, as_config, load_config
from training.data import PreparedData, load_prepared, prepare_data
from training.labels import LabelSources
from training.model_card import model_card
from training.runs import fail_stale_runs, job_run, run_job, set_threads

# load_config, prepare_data, load_prepared and PreparedData live in
# training.config / training.data; they stay importable from here for the
# benchmarks and tests written against this module.
__all__ = [
    "PreparedData",
    "TrainOutcome",
    "cli_main",
    "evaluate",
    "load_config",
    "load_prepared",
    "prepare_data",
    "train_one",
]

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    kind: str
    bundle: FraudModelBundle
    registered: RegisteredModel | None  # None on an extra DDP rank
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    # True when a finished version with the same training key was reused.
    reused: bool = False
    fairness: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------- evaluation
def evaluate(bundle: FraudModelBundle, test: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    """Metrics on the rows of `test` whose label is known (all of them for a
    fully labelled file; the verdicts' rows otherwise), with how many labels
    they rest on (`n_labels`, `n_frauds`). Scores are for every row."""
    scores = bundle.decision_function(test)
    label = bundle.schema.label_field
    if label is None or label not in test.columns:
        return {}, scores
    values = pd.to_numeric(test[label], errors="coerce").to_numpy(np.float64)
    known = np.isin(values, (0, 1))
    if not known.any():
        return {"n_labels": 0.0, "n_frauds": 0.0}, scores
    y = values[known].astype(np.int64)
    result = metrics.evaluate_scores(y, scores[known], alert_rate=bundle.alert_rate)
    result.update({"n_labels": float(known.sum()), "n_frauds": float(y.sum())})
    if "fraud_scenario" in test.columns:
        by_scenario = metrics.recall_by_group(
            y, scores[known], test["fraud_scenario"].to_numpy()[known],
            alert_rate=bundle.alert_rate
        )
        for scenario, recall in by_scenario.items():
            if int(scenario) != 0:
                result[f"recall_at_alert_rate_scenario_{int(scenario)}"] = recall
    return result, scores


# -------------------------------------------------------------------- job
def train_one(
    kind: str,
    data: PreparedData,
    config: TrainingConfig | dict[str, Any],
    settings: Settings,
    *,
    fingerprint_info: dict[str, Any] | None = None,
    alias: str | None = None,
    reuse: bool = False,
    nested: bool = False,
) -> TrainOutcome:
    """Fit, evaluate and register one detector as one MLflow run.

    Order, so that a job killed at any point leaves nothing half-made: every
    artifact (plots, schema, fingerprint, model card, the model) is logged in
    the run; the run ends FINISHED; only then is the logged model registered
    as a version, with its tags, model card and completion tag in the same
    call; the run is tagged with the version; the alias moves last, and only
    onto a complete version. A kill before registration leaves a FAILED (or,
    after SIGKILL, stale RUNNING) run and no version; a kill after it leaves a
    complete version without the alias (its run perhaps without the version
    tag, which a rerun that reuses the version adds).

    With `reuse`, a finished version trained from the same inputs (the
    training key: kind, config, schema, training rows, their labels, code
    version; see training.lineage) is evaluated and returned instead of
    training and registering another one."""
    started = time.perf_counter()
    config = as_config(config)
    bundle = FraudModelBundle(
        kind, schema=data.schema, alert_rate=config.alert_rate, **config.model_params()
    )
    y = data.y_train
    if not is_rank_zero_process():
        # An extra rank that Lightning's "ddp" started by running this command
        # again: it trains its shard with rank 0 and leaves the run, the
        # artifacts and the registry to rank 0.
        bundle.fit(data.train, y)
        return TrainOutcome(kind, bundle, None, {}, time.perf_counter() - started)
    columns = _input_columns(data)
    train_digest = lineage.digest_rows(data.train[columns])
    key = lineage.training_key(kind, config.as_dict(), data.schema.to_dict(), train_digest,
                               None if y is None else label_sources.digest(y))
    if reuse:
        found = lineage.find_version(settings, key)
        if found is not None:
            return _reuse(kind, found, data, settings, started)
    experiment_id = ensure_experiment(settings)
    tags = {"gendetect.kind": kind, "gendetect.source": Path(data.source).name,
            lineage.TRAINING_KEY_TAG: key, **lineage.code_tags(),
            **lineage.window_tags(data.window)}
    with job_run(experiment_id, f"train-{kind}", tags, nested=nested) as run:
        mlflow.log_params(
            _flatten({"kind": kind, "n_train_rows": len(data.train), **config.as_dict()})
        )
        if fingerprint_info:
            mlflow.log_dict(fingerprint_info, "data/fingerprint.json")
            mlflow.set_tag("gendetect.data_sha256", fingerprint_info.get("sha256", ""))
        lineage.log_datasets(data.train, data.test, data.source, data.window, columns)
        mlflow.log_text(data.schema.to_yaml(), "schema.yaml")
        if data.label_info:
            mlflow.log_dict(data.label_info, "data/labels.json")

        bundle.fit(data.train, y)
        _log_losses(bundle)
        results: dict[str, float] = {"fit_seconds": bundle.metadata["fit_seconds"]}
        groups: dict[str, Any] = {}
        if data.test is not None:
            evaluation, scores = evaluate(bundle, data.test)
            results.update(evaluation)
            _log_plots(bundle, data.test, scores)
            groups = group_rates(bundle, data.test, scores)
            results.update(fairness.as_metrics(groups))
            mlflow.log_dict(groups, "fairness.json")
        mlflow.log_metrics({k: v for k, v in results.items() if np.isfinite(v)})
        bundle.metadata.update(
            {"run_id": run.info.run_id, "data": fingerprint_info or {}, "evaluation": results,
             "window": data.window, "label_sources": data.label_info,
             "code_version": lineage.code_version(), "fairness": groups}
        )
        card = model_card(bundle, results, data)
        mlflow.log_text(card, lineage.MODEL_CARD)
        logged = log_bundle_model(bundle, data.train[columns].head(5))
    labels_meta = {**data.label_info, **bundle.metadata.get("labels", {})}
    registered = register_bundle(
        logged, settings,
        tags=lineage.version_tags(kind, key, data.window, results, labels_meta),
        description=lineage.describe_version(card),
    )
    # A call of its own (a run tag, not the version's): a job killed just
    # before it leaves a complete version whose run lacks it, which
    # lineage.find_version adds when a rerun reuses the version.
    lineage.tag_run_version(configure(settings), run.info.run_id, registered.version)
    if alias:
        set_alias(settings, alias, registered.version)
    seconds = time.perf_counter() - started
    log.info("trained %s: version %s in %.1fs %s", kind, registered.version, seconds, results)
    return TrainOutcome(kind, bundle, registered, results, seconds, fairness=groups)


def group_rates(bundle: FraudModelBundle, test: pd.DataFrame,
                scores: np.ndarray) -> dict[str, Any]:
    """Flag rate and false-positive rate per group of each protected field."""
    assert bundle.threshold_ is not None
    protected = [f.name for f in load_protected(bundle)]
    return fairness.group_report(test, scores >= bundle.threshold_, bundle.schema.label_field,
                                 protected)


def load_protected(bundle: FraudModelBundle) -> list[Any]:
    return [f for f in bundle.schema.fields if f.protected]


def _reuse(kind: str, found: RegisteredModel, data: PreparedData, settings: Settings,
           started: float) -> TrainOutcome:
    """A finished version with the same training key: evaluated again on the
    held-out period (the same numbers its run logged), not trained again."""
    bundle, ref = load_registered_bundle(f"models:/{found.name}/{found.version}", settings)
    results: dict[str, float] = {}
    groups: dict[str, Any] = {}
    if data.test is not None:
        results, scores = evaluate(bundle, data.test)
        groups = group_rates(bundle, data.test, scores)
        results.update(fairness.as_metrics(groups))
    log.info("version %s was trained from the same inputs: reused, not trained again",
             found.version)
    return TrainOutcome(kind, bundle, ref, results, time.perf_counter() - started, reused=True,
                        fairness=groups)


def _input_columns(data: PreparedData) -> list[str]:
    """Every schema field the training data has, labels included: they are
    optional model inputs that feed the delayed terminal-risk features."""
    return [f.name for f in data.schema.fields if f.name in data.train.columns]


def _log_losses(bundle: FraudModelBundle) -> None:
    assert bundle.is_fitted
    members = bundle.detector_.members
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
    assert bundle.threshold_ is not None
    figures = {
        "plots/score_histogram.png": plots.score_histogram(scores, y, bundle.threshold_),
        "plots/loss_curves.png": plots.loss_curves(
            {m.kind: m.training_.history for m in bundle.detector_.members}
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


def window_arguments(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """--since / --until as naive UTC datetimes (ISO dates or times)."""
    out: list[datetime | None] = []
    for option in ("since", "until"):
        value = getattr(args, option, None)
        if value is None:
            out.append(None)
            continue
        try:
            ts = pd.Timestamp(value)
        except ValueError:
            raise CliError(f"--{option}: not an ISO date or time: {value!r}") from None
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        out.append(ts.to_pydatetime())
    since, until = out
    if since is not None and until is not None and until <= since:
        raise CliError("--until must be after --since")
    return since, until


def label_arguments(args: argparse.Namespace, settings: Settings) -> LabelSources:
    """--labels FILE, and the verdict store when a database is configured
    (GENDETECT_DATABASE_URL set) unless --no-verdicts."""
    use_store = settings.database_url is not None and not getattr(args, "no_verdicts", False)
    return LabelSources(labels_file=getattr(args, "labels", None),
                        database_url=settings.database_url if use_store else None)


def cli_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_threads()
    settings = get_settings()
    model: dict[str, Any] = {}
    if args.seed is not None:
        model["seed"] = args.seed
    if args.epochs is not None:
        model["max_epochs"] = args.epochs
    if show_progress(args):
        model["progress"] = True  # one line per epoch on stderr
    config = load_config(args.config, overrides={"model": model} if model else None)

    def job() -> int:
        since, until = window_arguments(args)
        data, fp = load_prepared(args.data, config, since=since, until=until,
                                 labels=label_arguments(args, settings))
        if not is_rank_zero_process():
            train_one(args.model, data, config, settings)  # trains its shard only
            return 0
        fail_stale_runs(settings, max_age_hours=config.jobs.stale_run_hours)
        outcome = train_one(
            args.model, data, config, settings, fingerprint_info=fp, alias=args.alias
        )
        assert outcome.registered is not None
        shown = {k: round(v, 4) for k, v in outcome.metrics.items()}
        print(
            f"registered {outcome.registered.name} version {outcome.registered.version} "
            f"({args.model}, {outcome.seconds:.1f}s): {shown}"
        )
        return 0

    return run_job("train", settings, job)
