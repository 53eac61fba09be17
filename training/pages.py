"""What the MLflow UI shows of a job, beyond the raw metrics: the run's
description (the `mlflow.note.content` tag, shown at the top of the run
page), comparison tables (`mlflow.log_table`, which the UI's evaluation
view reads), and the registered model's description and tags (the Models
page: what the model is, its input schema, the metric it is promoted on)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import mlflow
import pandas as pd
from mlflow import MlflowClient

from gendetect.config import Settings
from gendetect.schema import Schema
from training.config import PromotionConfig
from training.model_card import format_metric

log = logging.getLogger(__name__)

NOTE_TAG = "mlflow.note.content"
COMPARISON_TABLE = "tables/comparison.json"
DRIFT_TABLE = "tables/drift.json"
# The registered model's tags (set at every registration: they follow the config).
MODEL_TAGS = ("gendetect.task", "gendetect.schema", "gendetect.promotion.metric",
              "gendetect.promotion.min_roc_auc")


def comparison_table(sides: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per metric, one column per side (a challenger, the champion),
    on the same held-out rows; a metric a side lacks is NaN."""
    names = sorted({k for metrics in sides.values() for k in metrics})
    rows = [{"metric": name, **{side: float(metrics.get(name, math.nan))
                                for side, metrics in sides.items()}} for name in names]
    return pd.DataFrame(rows, columns=["metric", *sides])


def markdown(frame: pd.DataFrame) -> str:
    """A small frame as a Markdown table (the run note); counts as integers."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|:---|" + "---:|" * (len(frame.columns) - 1)
    body = []
    for _, row in frame.iterrows():
        name = str(row.iloc[0])
        cells = ["n/a" if isinstance(v, float) and not math.isfinite(v)
                 else format_metric(name, v) if isinstance(v, float) else str(v)
                 for v in row.iloc[1:]]
        body.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def set_note(text: str) -> None:
    """The active run's description."""
    mlflow.set_tag(NOTE_TAG, text)


def set_model_note(client: MlflowClient, model_id: str | None, text: str) -> None:
    """A logged model's description (the same tag as a run's, on the model)."""
    if not model_id:
        return
    try:
        client.set_logged_model_tags(model_id, {NOTE_TAG: text})
    except mlflow.exceptions.MlflowException as exc:
        log.warning("logged model %s: description not set (%s)", model_id, exc)


def train_note(kind: str, window: Mapping[str, str], metrics: Mapping[str, float],
               verdict_line: str | None, headline: tuple[str, ...]) -> str:
    """The training run's description: what was trained on what, the gate's
    verdict, the headline metrics, where to look next."""
    period = (f"trained on [{window['since']}, {window['until']}), evaluated on "
              f"[{window['holdout_start']}, {window['holdout_end']})" if window
              else "trained on the whole file (no held-out period)")
    lines = [f"**gendetect {kind} detector**: {period}.", ""]
    if verdict_line:
        lines += [f"**{verdict_line}**", ""]
    shown = [(k, metrics[k]) for k in (*headline, "n_labels", "n_frauds") if k in metrics]
    if shown:
        frame = pd.DataFrame(shown, columns=["metric (held-out)", "value"])
        lines += [markdown(frame), ""]
    lines.append("Model card: `model_card.md`; plots: `plots/`; tables: `tables/` "
                 "(Artifacts tab). Metrics by section: `eval/`, `fairness/`, `train/`.")
    return "\n".join(lines)


def log_table(frame: pd.DataFrame, path: str) -> None:
    if not frame.empty:
        mlflow.log_table(frame, artifact_file=path)


def describe_registered_model(client: MlflowClient, settings: Settings, schema: Schema,
                              promotion: PromotionConfig) -> None:
    """The registered model's description and tags. Informational: a
    failure is logged, the version stays as registered."""
    features = [f.name for f in schema.feature_fields]
    text = "\n".join([
        f"# gendetect fraud detector (registered model `{settings.model_name}`)",
        "",
        "Ranks card transactions by how unusual they are against normal traffic "
        "(generative models: VAE, GAN, ensembles; label-aware when confirmed labels exist), "
        "so that fraud analysts review the most suspicious first.",
        "",
        f"- **Aliases**: `{settings.champion_alias}` is served by the API and batch scoring; "
        f"`{settings.challenger_alias}` is the best model of the latest retraining.",
        f"- **Input schema**: `{schema.name}`: {len(schema.fields)} fields, "
        f"{len(features)} used as features ({', '.join(features)}); protected and personal "
        "fields are never model inputs.",
        f"- **Promotion**: on `{promotion.metric}` over the held-out period after each "
        "training window. A version gets an alias only if it beats the champion by more "
        f"than {promotion.min_improvement:g} and its ROC AUC is at least "
        f"{promotion.min_roc_auc:g} (tag `gendetect.gate` on each version).",
        "- Each version's description is its model card.",
    ])
    values = ("fraud-detection", schema.name, promotion.metric, f"{promotion.min_roc_auc:g}")
    try:
        client.update_registered_model(settings.model_name, description=text)
        for key, value in zip(MODEL_TAGS, values, strict=True):
            client.set_registered_model_tag(settings.model_name, key, value)
    except mlflow.exceptions.MlflowException as exc:
        log.warning("registered model %s: description not set (%s)", settings.model_name, exc)
