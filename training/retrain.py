"""Retraining: train challengers on a window of fresh data, compare them with
the current champion on the same held-out period after the window, and
promote only what is better.

One retraining is one MLflow run (`retrain-<since>..<until>`) with each
challenger as a nested run: the parent logs the window, the datasets, the
decision (`decision/` metrics, the run's description), the challengers' and
the champion's metrics on the same held-out rows as one MLflow table
(`tables/comparison.json`; the metrics themselves stay in the nested runs,
no copies), `comparison.json` (metric, margin, values, how many labels and
frauds it rests on, the decision) and drift against the champion's training
reference (`drift/` metrics, `tables/drift.json`). The decision is the
quality gate's (training.gate), the one `train` applies. Every challenger
is registered (the best gets the `challenger` alias and the gate's verdict
as its `gendetect.gate` tag), so a rejected model stays reviewable; only a
measured improvement moves `champion`. Aliases move last, after the parent run has ended
FINISHED: a job killed at any point leaves aliases on finished versions only.

A rerun of the same window with the same data, labels and config finds the
version its training key names (training.lineage) and reuses it: no second
version. Exit codes (`cli_main`): 0 promoted, 3 champion kept, 1 failed,
2 bad input or config, 128 + n interrupted by signal n.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import ActiveRun

from gendetect import drift
from gendetect.config import Settings, get_settings
from gendetect.errors import GendetectError, InputError, ModelNotReadyError
from gendetect.tracking import (
    RegisteredModel,
    configure,
    ensure_experiment,
    load_registered_bundle,
    set_alias,
)
from training import lineage, pages
from training.cli_args import job_config, label_arguments, window_arguments
from training.config import TrainingConfig
from training.data import PreparedData, load_prepared
from training.gate import GATE_TAG, PASSED, REFUSED, champion_metrics, quality_gate
from training.labels import LabelSources
from training.ranks import on_rank_zero
from training.runs import fail_stale_runs, job_run, run_job, set_threads
from training.summary import Row, metrics_table, where_to_look
from training.train import TrainOutcome, fit_shards, train_one

# The parent run's own metrics (the children keep theirs: no copies here).
DECISION = "decision/"
DRIFT = "drift/"

EXIT_PROMOTED = 0
EXIT_FAILED = 1
EXIT_KEPT = 3

log = logging.getLogger(__name__)


@dataclass
class PromotionDecision:
    promoted: bool
    metric: str
    best: TrainOutcome
    best_value: float
    champion: RegisteredModel | None
    champion_value: float | None
    reason: str
    outcomes: list[TrainOutcome] = field(default_factory=list)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    drift: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PROMOTED if self.promoted else EXIT_KEPT


def decide(
    outcomes: list[TrainOutcome],
    data: PreparedData,
    config: TrainingConfig,
    settings: Settings,
) -> PromotionDecision:
    """The best challenger against the champion on the same held-out rows,
    judged by the quality gate (training.gate) that `train` uses too."""
    metric = config.promotion.metric

    def value(o: TrainOutcome) -> float:
        v = o.metrics.get(metric)
        return float(v) if v is not None and np.isfinite(v) else float("-inf")

    best = max(outcomes, key=value)
    champion, champ_results = champion_metrics(data, settings)
    current = None if champ_results is None else champ_results.get(metric, float("-inf"))

    def verdict(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promoted, metric, best, value(best), champion, current, reason,
                                 outcomes, champ_results or {})

    if champion is not None and best.registered.version == champion.version:
        return verdict(False, f"the best challenger is the champion (version "
                       f"{champion.version}, trained from the same inputs)")
    gate = quality_gate(best.metrics, champion, champ_results, config.promotion)
    return verdict(gate.passed, gate.reason)


def holdout_data(path: str, config: TrainingConfig, *, since: datetime | None = None,
                 until: datetime | None = None, labels: LabelSources | None = None
                 ) -> tuple[PreparedData, dict[str, Any]]:
    """The prepared file and its fingerprint; refused without a held-out period."""
    data, fp = load_prepared(path, config, since=since, until=until, labels=labels)
    if data.test is None:
        raise InputError("retraining compares on a held-out period: set "
                         "evaluation.holdout_days > 0", source=path)
    return data, fp


def retrain(data: PreparedData, fingerprint_info: dict[str, Any], kinds: list[str],
            config: TrainingConfig, settings: Settings) -> PromotionDecision:
    """Train (or reuse) each kind in a nested run of one retraining run,
    compare, end the run, then move the aliases (rank 0)."""
    # Runs a killed job left RUNNING, before this job starts its own.
    fail_stale_runs(settings, max_age_hours=config.jobs.stale_run_hours)
    with _retraining_run(data, kinds, config, settings) as run:
        outcomes = [train_one(kind, data, config, settings, fingerprint_info=fingerprint_info,
                              reuse=True, nested=True) for kind in kinds]
        decision = decide(outcomes, data, config, settings)
        decision.run_id = run.info.run_id
        _log_comparison(decision, config)
        decision.drift = _log_drift(decision, data, config, settings)
    _move_aliases(decision, settings)
    return decision


@contextmanager
def _retraining_run(data: PreparedData, kinds: list[str], config: TrainingConfig,
                    settings: Settings) -> Iterator[ActiveRun]:
    """The parent run, with the window, the datasets and the label sources."""
    assert data.test is not None
    window = data.window
    name = f"retrain-{window['since'][:10]}..{window['until'][:10]}"
    tags = {"gendetect.job": "retrain", **lineage.code_tags(), **lineage.window_tags(window)}
    with job_run(ensure_experiment(settings), name, tags) as run:
        mlflow.log_params({"models": ",".join(kinds), "n_train_rows": len(data.train),
                           "n_holdout_rows": len(data.test),
                           "promotion.metric": config.promotion.metric,
                           "promotion.min_improvement": config.promotion.min_improvement,
                           "promotion.min_roc_auc": config.promotion.min_roc_auc,
                           **{f"window.{k}": v for k, v in window.items()}})
        lineage.log_datasets(data.train, data.test, data.source, window,
                             [f.name for f in data.schema.fields if f.name in data.train.columns])
        if data.label_info:
            mlflow.log_dict(data.label_info, "data/labels.json")
        yield run


def _move_aliases(decision: PromotionDecision, settings: Settings) -> None:
    """`challenger` onto the best challenger; `champion` too when promoted;
    the gate's verdict on the challenger's version (unless it is the
    champion already). Last, after the run has ended FINISHED."""
    version = decision.best.registered.version
    if decision.champion is None or decision.champion.version != version:
        configure(settings).set_model_version_tag(
            settings.model_name, version, GATE_TAG, PASSED if decision.promoted else REFUSED)
    set_alias(settings, settings.challenger_alias, version)
    if decision.promoted:
        set_alias(settings, settings.champion_alias, version)


def _log_drift(decision: PromotionDecision, data: PreparedData, config: TrainingConfig,
               settings: Settings) -> dict[str, Any]:
    """PSI of the held-out period (the most recent traffic) against the
    training reference of the model serving now: the champion, or with none
    yet the best challenger. `drift/` metrics, drift.json and its table."""
    assert data.test is not None
    bundle = decision.best.bundle
    against = f"challenger version {decision.best.registered.version}"
    if decision.champion is not None:
        try:
            bundle, _ = load_registered_bundle(
                f"models:/{settings.model_name}/{decision.champion.version}", settings)
            against = f"champion version {decision.champion.version}"
        except (ModelNotReadyError, GendetectError) as exc:
            log.warning("drift: champion cannot be loaded (%s); against the challenger", exc)
    try:
        report = drift.bundle_drift(bundle, data.test, config.drift.level)
    except (GendetectError, KeyError, ValueError) as exc:
        log.warning("drift cannot be measured against %s: %s", against, exc)
        return {}
    if report is None:
        log.info("drift: %s has no training reference (made before drift references)", against)
        return {}
    mlflow.log_metrics({k: v for k, v in report.as_metrics(DRIFT).items() if np.isfinite(v)})
    result = {"against": against, **report.as_dict()}
    mlflow.log_dict(result, "drift.json")
    rows = [("score", report.score), *report.features.items()]
    pages.log_table(pd.DataFrame(
        [{"input": name, "psi": psi, "drifted": name in report.drifted} for name, psi in rows]),
        pages.DRIFT_TABLE)
    mlflow.set_tag("gendetect.drift", ",".join(report.drifted) if report.detected else "none")
    return result


def _log_comparison(decision: PromotionDecision, config: TrainingConfig) -> None:
    """The decision (`decision/` metrics, tags, the run's description) and
    both sides' metrics on the same held-out rows as one table. The
    challengers' own metrics stay in their nested runs."""
    best = decision.best.metrics
    values = {"promoted": float(decision.promoted), "n_labels": best.get("n_labels", 0.0),
              "n_frauds": best.get("n_frauds", 0.0), "challenger": decision.best_value}
    if decision.champion_value is not None:
        values["champion"] = decision.champion_value
    mlflow.log_metrics({f"{DECISION}{k}": float(v) for k, v in values.items() if np.isfinite(v)})
    sides = {f"{o.kind} (version {o.registered.version})": o.metrics for o in decision.outcomes}
    if decision.champion is not None and decision.champion_metrics:
        sides[f"champion (version {decision.champion.version})"] = decision.champion_metrics
    table = pages.comparison_table(sides)
    pages.log_table(table, pages.COMPARISON_TABLE)
    comparison = {
        "metric": decision.metric,
        "min_improvement": config.promotion.min_improvement,
        "min_roc_auc": config.promotion.min_roc_auc,
        "challenger": {"kind": decision.best.kind, "version": decision.best.registered.version,
                       "value": decision.best_value, "reused": decision.best.reused},
        "champion": None if decision.champion is None else {
            "version": decision.champion.version, "value": decision.champion_value},
        "n_labels": int(best.get("n_labels", 0)),
        "n_frauds": int(best.get("n_frauds", 0)),
        "promoted": decision.promoted,
        "reason": decision.reason,
        "challengers": [{"kind": o.kind, "version": o.registered.version,
                         "reused": o.reused, "metrics": o.metrics} for o in decision.outcomes],
        "champion_metrics": decision.champion_metrics,
    }
    mlflow.log_dict(comparison, "comparison.json")
    mlflow.set_tags({
        "gendetect.decision": "promoted" if decision.promoted else "kept",
        "gendetect.challenger_version": decision.best.registered.version,
        "gendetect.champion_version": "" if decision.champion is None
        else decision.champion.version,
    })
    verdict = "promoted to champion" if decision.promoted else "champion kept"
    pages.set_note("\n".join([
        f"**Retraining: {verdict}.** Best challenger: {decision.best.kind} version "
        f"{decision.best.registered.version}, {decision.metric} "
        f"{decision.best_value:.4f}; {decision.reason}.", "",
        f"On the same held-out rows ({int(best.get('n_labels', 0)):,} labels, "
        f"{int(best.get('n_frauds', 0)):,} frauds):", "", pages.markdown(table), "",
        "Each challenger's own run (nested below) has its metrics, plots and model card; "
        "drift of the held-out period: `drift/` metrics and `tables/drift.json`."]))


def cli_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_threads()
    settings = get_settings()
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    config = job_config(args)
    since, until = window_arguments(args)

    def job() -> int:
        try:
            data, fp = holdout_data(args.data, config, since=since, until=until,
                                    labels=label_arguments(args, settings))
            return on_rank_zero(
                lambda: _report(retrain(data, fp, kinds, config, settings), settings),
                shard=lambda: fit_shards(kinds, data, config))
        except (GendetectError, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a scheduler needs one exit code for "failed"
            log.exception("retraining failed")
            print(f"gendetect retrain: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run_job("retrain", settings, job)


def _report(decision: PromotionDecision, settings: Settings) -> int:
    """The decision in a few lines; its exit code."""
    o = decision.best
    reused = " (reused: same inputs)" if o.reused else ""
    print(
        f"best challenger: {o.kind} version {o.registered.version}{reused}, "
        f"{decision.metric}={decision.best_value:.4f} on "
        f"{int(o.metrics.get('n_labels', 0)):,} labels "
        f"({int(o.metrics.get('n_frauds', 0)):,} frauds)"
    )
    rows: list[Row] = [(f"version {c.registered.version} ({c.kind})", c.metrics)
                       for c in decision.outcomes]
    if decision.champion is not None:
        rows.append((f"champion (version {decision.champion.version})",
                     decision.champion_metrics or None))
    print("\n".join(metrics_table(rows)))
    verdict = "promoted to" if decision.promoted else "not promoted to"
    print(f"{verdict} '{settings.champion_alias}': {decision.reason}")
    if decision.drift:
        drifted = ", ".join(decision.drift["drifted"]) or "none"
        print(f"drift (PSI >= {decision.drift['level']:g}) against "
              f"{decision.drift['against']}: {drifted}")
    print(where_to_look(settings, decision.run_id))
    return decision.exit_code
