"""How a training job ends on the terminal: a compact table of the headline
metrics (the new versions beside the champion, on the same held-out rows),
the alias moves, and where to look in the MLflow UI. The full set of
metrics, plots and tables is in the run; the terminal gets what a person
decides on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from gendetect.config import Settings

HEADLINE = ("roc_auc", "average_precision", "precision_at_alert_rate", "recall_at_alert_rate")
_SHORT = {"roc_auc": "ROC AUC", "average_precision": "AP",
          "precision_at_alert_rate": "precision@alert", "recall_at_alert_rate": "recall@alert"}

Row = tuple[str, Mapping[str, float] | None]


def metrics_table(rows: Sequence[Row]) -> list[str]:
    """Aligned text lines: one row per model, the headline metrics any of
    them has as columns ("-" where a model has none, e.g. no labels)."""
    names = [m for m in HEADLINE if any(r and m in r for _, r in rows)]
    header = ["", *(_SHORT[m] for m in names)]
    body = [[label, *(_cell(r, m) for m in names)] for label, r in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"  {first}  {rest}".rstrip()

    return [line(header), *(line(b) for b in body)]


def _cell(metrics: Mapping[str, float] | None, name: str) -> str:
    value = None if metrics is None else metrics.get(name)
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}"


# MLflow 3.17's UI opens in its GenAI view: the view is a per-browser
# setting (local storage), not a server option nor, in this version, the
# experiment's `mlflow.experimentKind` tag; a link that carries this query
# opens the classic runs/metrics/models view.
CLASSIC_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def run_page(base_url: str, experiment_id: str, run_id: str | None) -> str:
    """A run's (or the experiment's) page in the MLflow UI, classic view."""
    page = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}"
    return f"{page}/runs/{run_id}?{CLASSIC_VIEW}" if run_id else f"{page}?{CLASSIC_VIEW}"


def where_to_look(settings: Settings, run_id: str | None) -> str:
    """The run's page on a tracking server, or how to open a local store and
    the page it will show."""
    from gendetect import tracking

    uri = settings.resolved_tracking_uri
    experiment = tracking.ensure_experiment(settings)
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {run_page(uri, experiment, run_id)}"
    return (f"MLflow: `mlflow ui --backend-store-uri {uri}`, then "
            f"{run_page(LOCAL_UI, experiment, run_id)}")
