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


def where_to_look(settings: Settings, run_id: str | None) -> str:
    """The run's page on a tracking server, or how to open a local store."""
    uri = settings.resolved_tracking_uri
    run = f"run {run_id}" if run_id else "the runs"
    if uri.startswith(("http://", "https://")):
        from gendetect import tracking

        experiment = tracking.ensure_experiment(settings)
        page = f"{uri.rstrip('/')}/#/experiments/{experiment}"
        return f"MLflow: {page}/runs/{run_id}" if run_id else f"MLflow: {page}"
    return f"MLflow: {run} in experiment '{settings.experiment}'; open the UI with " \
           f"`mlflow ui --backend-store-uri {uri}`"
