"""MLflow: the client, experiments, the registry (versions, aliases) and loading
a registered bundle. Logging the bundle as a pyfunc model is scoring.model_log's
(the model carries the scoring room's code, which the core may not import).

The registered model name and aliases are configuration (Settings), never
constants in code. Models are only ever loaded from the configured registry.

A version is created whole: its tags, its description (the model card) and
the completion tag `gendetect.registration=complete` come with it in one
registry call, so a job killed at any moment leaves no version without them.
An alias is set only on a complete version (`set_alias`): one registered
otherwise (by an older gendetect killed between its calls) is completed or
passed over by the next retraining (training.lineage.find_version), and
never given an alias as it is.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from gendetect.bundle import FraudModelBundle
from gendetect.config import Settings
from gendetect.errors import ModelNotReadyError
from gendetect.private_files import create_private_file, make_private_dir

log = logging.getLogger(__name__)
# The bundle's folder inside a registered version's artifacts: the model
# logger (scoring.model_log) writes it there, the API and jobs load it from
# there (load_registered_bundle).
BUNDLE_ARTIFACT = "bundle"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str | None
    alias: str | None = None


# The tag a version gets in the call that creates it, with its other tags and
# its description: present means the version is whole (see set_alias).
COMPLETE_TAG = "gendetect.registration"
COMPLETE = "complete"


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured store (creating the local default)."""
    uri = settings.resolved_tracking_uri
    _quiet_mlflow()
    if uri.startswith("sqlite:///"):
        # Made by us, 0600 in a 0700 folder, before MLflow's SQLAlchemy would
        # make it with the umask's mode (an empty file is an empty database).
        create_private_file(uri.removeprefix("sqlite:///"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _quiet_mlflow() -> None:
    """MLflow's messages that say nothing to a gendetect user: a progress bar
    for each artifact download of a few local files, the INFO lines of its
    store's table creation, and "Validating input example against model
    signature" at every model log; and, against a tracking server, the
    "🏃 View run ... at" / "🧪 View experiment at" pair it writes to stdout at
    every run's end (a retrain printed one pair per challenger): the job's
    summary (training.summary.where_to_look) is the one place that says
    where to look. Its warnings and errors stay; a user's own
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR / MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
    win."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow.store.db.utils", "mlflow.pyfunc"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


# The experiment says what it is with the UI's own "experiment type" tag.
# MLflow 3.17's UI does not choose its view by it (read in its bundled UI
# code): the view comes from the sidebar's GenAI / model-training switch, kept
# per browser (default GenAI), with no server option; so the links the jobs
# print carry `?workflowType=machine_learning` (training.summary.run_page).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(settings: Settings) -> str:
    client = configure(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # a user's own choice stays
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                      EXPERIMENT_KIND)
        return experiment.experiment_id
    location = None
    if settings.resolved_tracking_uri.startswith("sqlite:"):
        # Private like the store: logged models carry input examples (rows
        # of training data); what MLflow writes inside inherits the barrier.
        make_private_dir(settings.artifact_root)
        location = settings.artifact_root.as_uri()
    return client.create_experiment(settings.experiment, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


@dataclass(frozen=True)
class LoggedBundle:
    """A bundle logged as an MLflow model in a run, not (yet) registered."""

    model_uri: str
    run_id: str | None
    model_id: str | None = None  # MLflow 3's logged model (models:/<model_id>)


def register_bundle(
    logged: LoggedBundle,
    settings: Settings,
    *,
    require_finished: bool = True,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> RegisteredModel:
    """Register a logged bundle as a new version of the configured name.

    Jobs call this after their run has ended FINISHED, so that a version
    never exists whose run is still RUNNING or lacks artifacts (a job killed
    before this point leaves a finished run and no version). With
    `require_finished`, a run in any other state is refused."""
    client = configure(settings)
    if require_finished and logged.run_id is not None:
        status = client.get_run(logged.run_id).info.status
        if status != "FINISHED":
            raise ModelNotReadyError(
                f"run {logged.run_id} is {status}: only finished runs are registered"
            )
    _ensure_registered_model(client, settings.model_name)
    # One call: the version appears with its tags (what a rerun looks it up
    # by), its description (the model card) and the completion tag, or not
    # at all. mlflow.register_model takes no description: a second call set
    # it, and a job killed between the two left a version without its card.
    mv = client.create_model_version(
        settings.model_name, logged.model_uri, run_id=logged.run_id,
        tags={**(tags or {}), COMPLETE_TAG: COMPLETE}, description=description or None,
        model_id=logged.model_id,
    )
    if logged.model_id:
        _link_logged_model(client, logged.model_id, mv.name, str(mv.version))
    return RegisteredModel(mv.name, str(mv.version), mv.run_id or logged.run_id)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _link_logged_model(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """What mlflow.register_model adds after the version: the logged model's
    list of its registered versions (the MLflow UI shows it). Informational:
    a failure here leaves the version complete, so it is only logged."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        model = client.get_logged_model(model_id)
        linked = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
        linked.append({"name": name, "version": version})
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})
    except (mlflow.exceptions.MlflowException, ValueError) as exc:
        log.warning("version %s of %s: not linked to its logged model %s (%s)", version, name,
                    model_id, type(exc).__name__)


def set_alias(settings: Settings, alias: str, version: str) -> None:
    """Point `alias` at `version`, which must be complete (COMPLETE_TAG):
    an alias is what the API serves and what a retraining compares with."""
    client = configure(settings)
    mv = client.get_model_version(settings.model_name, version)
    if mv.tags.get(COMPLETE_TAG) != COMPLETE:
        raise ModelNotReadyError(
            f"version {version} of {settings.model_name} is incomplete (no "
            f"{COMPLETE_TAG}={COMPLETE} tag: registered by a job that was interrupted, or by an "
            f"older gendetect): alias {alias!r} not set; a retraining of its window repairs "
            f"it, or trains a new version")
    client.set_registered_model_alias(settings.model_name, alias, version)


def alias_version(settings: Settings, alias: str) -> RegisteredModel | None:
    client = configure(settings)
    try:
        mv = client.get_model_version_by_alias(settings.model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return RegisteredModel(mv.name, str(mv.version), mv.run_id, alias)


def resolve(model_uri: str, settings: Settings) -> RegisteredModel:
    """`models:/name@alias` or `models:/name/version` -> the concrete version.

    Anything that is not a registry URI of the configured store is refused:
    the API serves only what the registry holds."""
    if not model_uri.startswith("models:/"):
        raise ModelNotReadyError(f"only registry URIs (models:/...) are served, got {model_uri!r}")
    client = configure(settings)
    ref = model_uri.removeprefix("models:/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
            return RegisteredModel(mv.name, str(mv.version), mv.run_id, alias)
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
        return RegisteredModel(mv.name, str(mv.version), mv.run_id)
    except (mlflow.exceptions.MlflowException, ValueError) as exc:
        raise ModelNotReadyError(f"no model at {model_uri}: {exc}") from exc


def load_registered_bundle(
    model_uri: str, settings: Settings
) -> tuple[FraudModelBundle, RegisteredModel]:
    """Download a registered version's bundle artifact and load it."""
    ref = resolve(model_uri, settings)
    concrete = f"models:/{ref.name}/{ref.version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=concrete))
    bundle_dir = local / "artifacts" / BUNDLE_ARTIFACT
    if not bundle_dir.is_dir():
        raise ModelNotReadyError(f"{concrete} is not a gendetect bundle")
    return FraudModelBundle.load(bundle_dir), ref


def log_dict_artifact(data: dict[str, Any], path: str) -> None:
    mlflow.log_dict(data, path)
