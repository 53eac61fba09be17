"""Accountability: what each run and each registered version was made from.

- Every run logs its datasets with `mlflow.log_input` (the MLflow UI's
  "Datasets used" column): the training rows and the held-out rows, each
  with our own content digest (sha256 over names, dtypes and values, as in
  the data fingerprint), the source file and the time window as tags.
- Every run carries the code version (`gendetect.code_version`: the package
  version and the git commit, `-dirty` when the tree has changes; in an
  image without git, the `GENDETECT_CODE_VERSION` build argument) and
  MLflow's own `mlflow.source.git.commit`.
- Every registered version carries tags (kind, data window, headline
  metrics, label counts, the training key) and a description that is the
  head of its model card, set atomically with the version together with the
  completion tag (gendetect.tracking.COMPLETE_TAG); its run then gets the
  `gendetect.model_version` tag. A version an interrupted job (or an older
  gendetect) left without the card, the completion tag or the run's tag is
  repaired when a rerun finds it (`find_version`), before any alias.

The training key identifies what a version was trained from: the kind, the
training config, the schema, the digest of the training rows and of their
labels, and the package release (not the commit). A rerun with the same key finds the finished
version that has it and reuses it instead of registering another one (see
training.retrain): that is how reruns of one window do not pile up versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion

from gendetect import __version__
from gendetect.config import Settings
from gendetect.data.io import fingerprint
from gendetect.tracking import COMPLETE, COMPLETE_TAG, RegisteredModel, configure

CODE_VERSION_TAG = "gendetect.code_version"
TRAINING_KEY_TAG = "gendetect.training_key"
# On a training run: the version registered from it.
MODEL_VERSION_TAG = "gendetect.model_version"
MODEL_CARD = "model_card.md"
WINDOW_TAGS = ("gendetect.window.since", "gendetect.window.until",
               "gendetect.window.holdout_start", "gendetect.window.holdout_end")
# Headline metrics copied onto a version's tags (when the run has them).
HEADLINE = ("average_precision", "roc_auc", "card_precision_at_100", "precision_at_alert_rate",
            "recall_at_alert_rate")
_REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


@cache
def code_version() -> str:
    """`<package version>+g<commit>[-dirty]`, or GENDETECT_CODE_VERSION."""
    given = os.environ.get("GENDETECT_CODE_VERSION")
    if given:
        return given
    commit = git_commit()
    if commit is None:
        return __version__
    try:
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return f"{__version__}+g{commit[:12]}" + ("-dirty" if dirty else "")


@cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def code_tags() -> dict[str, str]:
    tags = {CODE_VERSION_TAG: code_version()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def window_tags(window: dict[str, str]) -> dict[str, str]:
    keys = ("since", "until", "holdout_start", "holdout_end")
    return {tag: window[k] for tag, k in zip(WINDOW_TAGS, keys, strict=True) if k in window}


def digest_rows(frame: pd.DataFrame) -> str:
    return str(fingerprint(frame.reset_index(drop=True))["sha256"])


def log_datasets(train: pd.DataFrame, test: pd.DataFrame | None, source: str,
                 window: dict[str, str], columns: list[str]) -> dict[str, str]:
    """log_input for the training and the held-out rows; returns their digests."""
    uri = Path(source).resolve().as_uri() if "://" not in source else source
    digests: dict[str, str] = {}
    parts = {"training": (train, window.get("since"), window.get("until"))}
    if test is not None:
        parts["evaluation"] = (test, window.get("holdout_start"), window.get("holdout_end"))
    for context, (frame, start, end) in parts.items():
        frame = frame[[c for c in columns if c in frame.columns]]
        digest = digest_rows(frame)
        digests[context] = digest
        with warnings.catch_warnings():
            # "source can be interpreted in multiple ways" (two local-file
            # source types claim file:// URIs) and the integer-column hint of
            # schema inference: neither applies to a logged dataset. The
            # schema is inferred lazily, when log_input reads it: both inside.
            warnings.simplefilter("ignore", UserWarning)
            # MLflow shows the first characters of the digest; the full one is a tag.
            dataset = mlflow.data.from_pandas(
                frame, source=uri, name=f"{Path(source).stem}[{start or ''}, {end or ''})",
                digest=digest[:16])
            mlflow.log_input(dataset, context=context, tags={
                "sha256": digest, "since": str(start or ""), "until": str(end or ""),
                "rows": str(len(frame)), "source": uri})
    return digests


def training_key(kind: str, config: dict[str, Any], schema: dict[str, Any], train_digest: str,
                 labels_digest: str | None) -> str:
    model = {k: v for k, v in config.get("model", {}).items() if k != "progress"}
    payload = {
        "kind": kind,
        "config": {**config, "model": model},
        "schema": schema,
        "train": train_digest,
        "labels": labels_digest,
        # The release, not the commit: a rerun from a checkout a few commits
        # on still finds its version; a new release trains again.
        "code": __version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def version_tags(kind: str, key: str, window: dict[str, str], results: dict[str, float],
                 label_info: dict[str, Any]) -> dict[str, str]:
    tags = {"gendetect.kind": kind, TRAINING_KEY_TAG: key, **window_tags(window),
            CODE_VERSION_TAG: code_version()}
    for name in HEADLINE:
        value = results.get(name)
        if value is not None and np.isfinite(value):
            tags[f"gendetect.metric.{name}"] = f"{value:.4f}"
    for name in ("frauds", "genuine", "unknown"):
        if name in label_info:
            tags[f"gendetect.labels.{name}"] = str(label_info[name])
    if "mode" in label_info:
        tags["gendetect.labels.mode"] = str(label_info["mode"])
    return tags


def find_version(settings: Settings, key: str) -> RegisteredModel | None:
    """The newest READY version with this training key whose run finished,
    made complete first (`complete_version`); versions that cannot be are
    passed over."""
    client = configure(settings)
    try:
        versions = client.search_model_versions(
            f"name = '{settings.model_name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'")
    except mlflow.exceptions.MlflowException:
        return None
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if mv.status != "READY" or not mv.run_id:
            continue
        run = client.get_run(mv.run_id)
        if run.info.status == "FINISHED" and complete_version(client, mv, run):
            return RegisteredModel(mv.name, str(mv.version), mv.run_id)
    return None


def tag_run_version(client: MlflowClient, run_id: str, version: str) -> None:
    client.set_tag(run_id, MODEL_VERSION_TAG, version)


def complete_version(client: MlflowClient, mv: ModelVersion, run: Run) -> bool:
    """Finish what an interrupted job left undone on a registered version:
    the run's MODEL_VERSION_TAG (set after the version, a call of its own)
    and, for a version without the completion tag (registered by an older
    gendetect, in separate calls), the model card as its description, read
    back from the run. The completion tag comes last, so that a repair
    interrupted in turn is done again. False (nothing changed) when the run
    has no model card to take it from: such a version is not reused."""
    version = str(mv.version)
    if mv.tags.get(COMPLETE_TAG) != COMPLETE:
        if not mv.description:
            card = _model_card(client, run.info.run_id)
            if card is None:
                log.warning("version %s has no model card and its run none to take it from: "
                            "not reused", version)
                return False
            client.update_model_version(mv.name, version, description=describe_version(card))
        client.set_model_version_tag(mv.name, version, COMPLETE_TAG, COMPLETE)
        log.warning("version %s was left incomplete by an interrupted job: completed", version)
    if run.data.tags.get(MODEL_VERSION_TAG) != version:
        tag_run_version(client, run.info.run_id, version)
    return True


def _model_card(client: MlflowClient, run_id: str) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(run_id, MODEL_CARD, tmp)).read_text()
        except (mlflow.exceptions.MlflowException, OSError):
            return None


def describe_version(card: str, limit: int = 4000) -> str:
    """A version's description: its model card, cut at a section boundary
    when long (the registry's description field is bounded)."""
    if len(card) <= limit:
        return card
    cut = card.rfind("\n## ", 0, limit)
    return card[: cut if cut > 0 else limit] + "\n\n(full card: model_card.md in the run)\n"
