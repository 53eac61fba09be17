"""Retraining: train challengers on fresh data, compare them with the current
champion on the same held-out period, and promote only what is better.

Every challenger is registered (and the best one gets the `challenger`
alias), so a rejected model stays reviewable in the MLflow UI; only a
measured improvement moves the `champion` alias."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gendetect.cli import show_progress
from gendetect.config import Settings, get_settings
from gendetect.errors import ModelNotReadyError
from gendetect.models.training import is_rank_zero_process
from gendetect.tracking import RegisteredModel, alias_version, load_registered_bundle, set_alias
from training.config import TrainingConfig, as_config, load_config
from training.data import PreparedData, load_prepared
from training.runs import fail_stale_runs, run_job, set_threads
from training.train import TrainOutcome, evaluate, train_one

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


def champion_value(
    data: PreparedData, settings: Settings, metric: str
) -> tuple[RegisteredModel | None, float | None]:
    """The current champion's metric on the challengers' held-out data."""
    ref = alias_version(settings, settings.champion_alias)
    if ref is None or data.test is None:
        return ref, None
    try:
        bundle, ref = load_registered_bundle(
            f"models:/{settings.model_name}/{ref.version}", settings
        )
        results, _ = evaluate(bundle, data.test)
    except (ModelNotReadyError, KeyError, ValueError) as exc:
        # A champion that cannot score the new data (e.g. a changed schema)
        # cannot be compared; it is replaced, and the note says why.
        log.warning("champion version %s cannot be evaluated: %s", ref.version, exc)
        return ref, float("-inf")
    return ref, results.get(metric)


def decide(
    outcomes: list[TrainOutcome],
    data: PreparedData,
    config: TrainingConfig | Mapping[str, Any],
    settings: Settings,
) -> PromotionDecision:
    promotion = as_config(config).promotion
    metric = promotion.metric
    margin = promotion.min_improvement

    def value(o: TrainOutcome) -> float:
        v = o.metrics.get(metric)
        return float(v) if v is not None and np.isfinite(v) else float("-inf")

    best = max(outcomes, key=value)
    champion, current = champion_value(data, settings, metric)

    def verdict(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promoted, metric, best, value(best), champion, current, reason)

    if champion is None:
        return verdict(True, "no champion yet")
    if current is None or not np.isfinite(value(best)):
        return verdict(False, f"no labelled held-out data to compare on {metric}")
    if value(best) > current + margin:
        return verdict(True, f"{metric} {value(best):.4f} > champion {current:.4f} + {margin}")
    return verdict(
        False, f"{metric} {value(best):.4f} does not beat champion {current:.4f} + {margin}"
    )


def retrain(
    data_path: str, kinds: list[str], config: TrainingConfig | Mapping[str, Any], settings: Settings
) -> PromotionDecision:
    """Train each kind (each registered after its run ends), then move the
    aliases: last, once every challenger is complete."""
    config = as_config(config)
    data, fp = load_prepared(data_path, config)
    if not is_rank_zero_process():
        # An extra DDP rank: train the same sequence of models, decide nothing.
        for kind in kinds:
            train_one(kind, data, config, settings)
        raise SystemExit(0)
    # Runs a killed job left RUNNING, before this job starts its own.
    fail_stale_runs(settings, max_age_hours=config.jobs.stale_run_hours)
    outcomes = [train_one(kind, data, config, settings, fingerprint_info=fp) for kind in kinds]
    decision = decide(outcomes, data, config, settings)
    assert decision.best.registered is not None
    version = decision.best.registered.version
    set_alias(settings, settings.challenger_alias, version)
    if decision.promoted:
        set_alias(settings, settings.champion_alias, version)
    return decision


def cli_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_threads()
    settings = get_settings()
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    overrides = {"model": {"progress": True}} if show_progress(args) else None
    config = load_config(args.config, overrides=overrides)

    def job() -> int:
        decision = retrain(args.data, kinds, config, settings)
        o = decision.best
        print(
            f"best challenger: {o.kind} version {o.registered.version}, "
            f"{decision.metric}={decision.best_value:.4f}"
        )
        verdict = "promoted to" if decision.promoted else "not promoted to"
        print(f"{verdict} '{settings.champion_alias}': {decision.reason}")
        return 0

    return run_job("retrain", settings, job)
