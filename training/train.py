"""The training job: one MLflow run per trained detector.

`train_one` is the sequence: prepare (the training key, the run and its
inputs), fit, evaluate on the held-out period, pass the quality gate
(training.gate: against the champion on the same held-out rows, and a
floor on ROC AUC), log (results, model card, the model), end the run,
register the logged model as a new version of the configured model name,
move the alias. Data preparation: training.data; evaluation, fairness and
plots: training.evaluation; what the MLflow UI shows: training.pages; how
runs end when a job is killed: training.runs; the DDP rank gate:
training.ranks.

A version the gate refuses is still registered, tagged `gendetect.gate =
refused`, so that it can be inspected (card, plots, scores) and compared,
but it gets no alias: `gendetect train` then exits 3, as `retrain` does
when it keeps the champion. `--force` moves the alias anyway (tag
`forced`) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
from mlflow import ActiveRun

from gendetect.bundle import FraudModelBundle
from gendetect.config import Settings, get_settings
from gendetect.tracking import (
    LoggedBundle,
    RegisteredModel,
    configure,
    ensure_experiment,
    load_registered_bundle,
    register_bundle,
    set_alias,
)
from scoring.model_log import log_bundle_model
from training import labels as label_sources
from training import lineage, pages
from training.cli_args import job_config, label_arguments, window_arguments
from training.config import TrainingConfig
from training.data import PreparedData, load_prepared
from training.evaluation import (
    TRAIN,
    Evaluation,
    assess,
    finite,
    fit_summary,
    log_evaluation,
    log_loss_curves,
)
from training.gate import (
    FORCED,
    GATE_TAG,
    PASSED,
    REFUSED,
    GateVerdict,
    champion_metrics,
    quality_gate,
)
from training.model_card import model_card
from training.ranks import on_rank_zero
from training.runs import fail_stale_runs, job_run, run_job, set_threads
from training.summary import Row, metrics_table, where_to_look

log = logging.getLogger(__name__)

EXIT_REGISTERED = 0
# As `retrain`'s "champion kept": the gate refused the new version.
EXIT_REFUSED = 3


@dataclass
class TrainOutcome:
    kind: str
    bundle: FraudModelBundle
    registered: RegisteredModel
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    # True when a finished version with the same training key was reused.
    reused: bool = False
    fairness: dict[str, Any] = field(default_factory=dict)
    # The quality gate's verdict (a `train` job; a retraining decides in its parent run).
    verdict: GateVerdict | None = None
    alias_moved: bool = False


def train_one(
    kind: str,
    data: PreparedData,
    config: TrainingConfig,
    settings: Settings,
    *,
    fingerprint_info: dict[str, Any] | None = None,
    alias: str | None = None,
    reuse: bool = False,
    nested: bool = False,
    gate: bool = False,
    force: bool = False,
) -> TrainOutcome:
    """Fit, evaluate and register one detector as one MLflow run (rank 0).

    Order, so that a job killed at any point leaves nothing half-made: every
    artifact (plots, schema, fingerprint, model card, the model) is logged in
    the run; the run ends FINISHED; only then is the logged model registered
    as a version, with its tags, model card and completion tag in the same
    call; the run is tagged with the version; the alias moves last, and only
    onto a complete version. A kill before registration leaves a FAILED (or,
    after SIGKILL, stale RUNNING) run and no version; a kill after it leaves a
    complete version without the alias (its run perhaps without the version
    tag, which a rerun that reuses the version adds).

    With `gate`, the quality gate (training.gate) judges the new model
    against the champion on the same held-out rows; the alias moves only
    if it passes, or with `force`.

    With `reuse`, a finished version trained from the same inputs (the
    training key: kind, config, schema, training rows, their labels, code
    version; see training.lineage) is evaluated and returned instead of
    training and registering another one."""
    started = time.perf_counter()
    key = _training_key(kind, data, config)
    found = lineage.find_version(settings, key) if reuse else None
    if found is not None:
        return _reuse(kind, found, data, settings, started)
    with _training_run(kind, data, config, key, settings, fingerprint_info, nested) as run:
        bundle = fit_bundle(kind, data, config)
        evaluation = assess(bundle, data.test)
        verdict = _gate(evaluation, data, config, settings) if gate else None
        log_evaluation(bundle, data.test, evaluation)
        # Before the model: MLflow links the run's metrics to the logged model.
        mlflow.log_metrics(finite(fit_summary(bundle), TRAIN))
        results = {"fit_seconds": bundle.metadata["fit_seconds"], **evaluation.metrics}
        logged, card = _log_model(bundle, run, data, results, evaluation, fingerprint_info,
                                  verdict)
        log_loss_curves(bundle)
        note = pages.train_note(kind, data.window, results,
                                verdict.line(kind) if verdict else None, lineage.HEADLINE)
        pages.set_note(note)
        pages.set_model_note(configure(settings), logged.model_id, note)
    status = None if verdict is None else PASSED if verdict.passed else FORCED if force \
        else REFUSED
    registered = _register(logged, card, run.info.run_id, kind, key, data, results, bundle,
                           settings, config, status)
    move = bool(alias) and status in (None, PASSED, FORCED)
    if move:
        assert alias is not None
        set_alias(settings, alias, registered.version)
    seconds = time.perf_counter() - started
    log.info("trained %s: version %s in %.1fs", kind, registered.version, seconds)
    return TrainOutcome(kind, bundle, registered, results, seconds, fairness=evaluation.groups,
                        verdict=verdict, alias_moved=move)


def _gate(evaluation: Evaluation, data: PreparedData, config: TrainingConfig,
          settings: Settings) -> GateVerdict:
    """The gate's verdict, logged in the active run: the candidate against
    the champion as an MLflow table, the verdict as a tag."""
    champion, champ_results = champion_metrics(data, settings)
    verdict = replace(quality_gate(evaluation.metrics, champion, champ_results,
                                   config.promotion), champion_results=champ_results or None)
    sides = {"candidate": evaluation.metrics}
    if champion is not None and champ_results:
        sides[f"champion (version {champion.version})"] = champ_results
    pages.log_table(pages.comparison_table(sides), pages.COMPARISON_TABLE)
    mlflow.set_tags({GATE_TAG: PASSED if verdict.passed else REFUSED,
                     "gendetect.gate.reason": verdict.reason[:5000]})
    return verdict


def fit_bundle(kind: str, data: PreparedData, config: TrainingConfig) -> FraudModelBundle:
    """A bundle of `kind` fitted on the training rows (and their labels)."""
    bundle = FraudModelBundle(
        kind, schema=data.schema, alert_rate=config.alert_rate, **config.model_params()
    )
    return bundle.fit(data.train, data.y_train)


def fit_shards(kinds: list[str], data: PreparedData, config: TrainingConfig) -> None:
    """An extra DDP rank's part: each kind's fit, with rank 0, in its order."""
    for kind in kinds:
        fit_bundle(kind, data, config)


def _input_columns(data: PreparedData) -> list[str]:
    """Every schema field the training data has, labels included: they are
    optional model inputs that feed the delayed terminal-risk features."""
    return [f.name for f in data.schema.fields if f.name in data.train.columns]


def _training_key(kind: str, data: PreparedData, config: TrainingConfig) -> str:
    digest = lineage.digest_rows(data.train[_input_columns(data)])
    y = data.y_train
    return lineage.training_key(kind, config.as_dict(), data.schema.to_dict(), digest,
                                None if y is None else label_sources.digest(y))


@contextmanager
def _training_run(kind: str, data: PreparedData, config: TrainingConfig, key: str,
                  settings: Settings, fingerprint_info: dict[str, Any] | None,
                  nested: bool) -> Iterator[ActiveRun]:
    """The run, with its inputs logged: params, fingerprint, datasets,
    schema and label sources."""
    tags = {"gendetect.kind": kind, "gendetect.source": Path(data.source).name,
            lineage.TRAINING_KEY_TAG: key, **lineage.code_tags(),
            **lineage.window_tags(data.window)}
    with job_run(ensure_experiment(settings), f"train-{kind}", tags, nested=nested) as run:
        mlflow.log_params(
            _flatten({"kind": kind, "n_train_rows": len(data.train), **config.as_dict()})
        )
        if fingerprint_info:
            mlflow.log_dict(fingerprint_info, "data/fingerprint.json")
            mlflow.set_tag("gendetect.data_sha256", fingerprint_info.get("sha256", ""))
        lineage.log_datasets(data.train, data.test, data.source, data.window,
                             _input_columns(data))
        mlflow.log_text(data.schema.to_yaml(), "schema.yaml")
        if data.label_info:
            mlflow.log_dict(data.label_info, "data/labels.json")
        yield run


def _log_model(bundle: FraudModelBundle, run: ActiveRun, data: PreparedData,
               results: dict[str, float], evaluation: Evaluation,
               fingerprint_info: dict[str, Any] | None,
               verdict: GateVerdict | None) -> tuple[LoggedBundle, str]:
    """The bundle's metadata completed, the model card and the model logged."""
    bundle.metadata.update(
        {"run_id": run.info.run_id, "data": fingerprint_info or {}, "evaluation": results,
         "window": data.window, "label_sources": data.label_info,
         "code_version": lineage.code_version(), "fairness": evaluation.groups,
         "fairness_differences": evaluation.differences}
    )
    card = model_card(bundle, evaluation.metrics, data, verdict=verdict)
    mlflow.log_text(card, lineage.MODEL_CARD)
    return log_bundle_model(bundle, data.train[_input_columns(data)].head(5)), card


def _register(logged: LoggedBundle, card: str, run_id: str, kind: str, key: str,
              data: PreparedData, results: dict[str, float], bundle: FraudModelBundle,
              settings: Settings, config: TrainingConfig,
              gate_status: str | None) -> RegisteredModel:
    """A new version of the finished run's model, then its run tagged with it
    and the registered model's description brought up to date."""
    labels_meta = {**data.label_info, **bundle.metadata.get("labels", {})}
    tags = lineage.version_tags(kind, key, data.window, results, labels_meta)
    if gate_status is not None:
        tags[GATE_TAG] = gate_status
    registered = register_bundle(
        logged, settings, tags=tags, description=lineage.describe_version(card),
    )
    client = configure(settings)
    # A call of its own (a run tag, not the version's): a job killed just
    # before it leaves a complete version whose run lacks it, which
    # lineage.find_version adds when a rerun reuses the version.
    lineage.tag_run_version(client, run_id, registered.version)
    pages.describe_registered_model(client, settings, data.schema, config.promotion)
    return registered


def _reuse(kind: str, found: RegisteredModel, data: PreparedData, settings: Settings,
           started: float) -> TrainOutcome:
    """A finished version with the same training key: evaluated again on the
    held-out period (the same numbers its run logged), not trained again."""
    bundle, ref = load_registered_bundle(f"models:/{found.name}/{found.version}", settings)
    evaluation = assess(bundle, data.test)
    log.info("version %s was trained from the same inputs: reused, not trained again",
             found.version)
    return TrainOutcome(kind, bundle, ref, evaluation.metrics, time.perf_counter() - started,
                        reused=True, fairness=evaluation.groups)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def cli_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_threads()
    settings = get_settings()
    config = job_config(args)

    def job() -> int:
        since, until = window_arguments(args)
        data, fp = load_prepared(args.data, config, since=since, until=until,
                                 labels=label_arguments(args, settings))
        return on_rank_zero(lambda: _train_and_report(args, data, fp, config, settings),
                            shard=lambda: fit_shards([args.model], data, config))

    return run_job("train", settings, job)


def _train_and_report(args: argparse.Namespace, data: PreparedData, fp: dict[str, Any],
                      config: TrainingConfig, settings: Settings) -> int:
    """Train, register, gate; the verdict in one line; 0 or EXIT_REFUSED."""
    # Runs a killed job left RUNNING, before this job starts its own.
    fail_stale_runs(settings, max_age_hours=config.jobs.stale_run_hours)
    force = bool(getattr(args, "force", False))
    outcome = train_one(args.model, data, config, settings, fingerprint_info=fp,
                        alias=args.alias, gate=True, force=force)
    verdict = outcome.verdict
    assert verdict is not None
    registered = outcome.registered
    labels = f"{int(outcome.metrics.get('n_labels', 0)):,} labels, " \
             f"{int(outcome.metrics.get('n_frauds', 0)):,} frauds"
    print(f"registered {registered.name} version {registered.version} ({args.model}, "
          f"{outcome.seconds:.1f}s); held-out period: {labels}")
    rows: list[Row] = [(f"version {registered.version} ({args.model})", outcome.metrics)]
    if verdict.champion_version is not None:
        rows.append((f"champion (version {verdict.champion_version})",
                     verdict.champion_results))
    print("\n".join(metrics_table(rows)))
    print(verdict.line(f"version {registered.version}"))
    print(where_to_look(settings, registered.run_id))
    if verdict.passed:
        if args.alias:
            print(f"alias '{args.alias}' -> version {outcome.registered.version}")
        return EXIT_REGISTERED
    if force:
        moved = f"; alias '{args.alias}' moved anyway" if args.alias else ""
        print(f"--force: version {outcome.registered.version} tagged {GATE_TAG}={FORCED}{moved}")
        return EXIT_REGISTERED
    kept = f"; alias '{args.alias}' not moved" if args.alias else ""
    print(f"version {outcome.registered.version} tagged {GATE_TAG}={REFUSED}{kept} "
          "(--force overrides)")
    return EXIT_REFUSED
