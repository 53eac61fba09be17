"""Group metrics for the schema's protected fields, on the held-out period.

A protected field (e.g. the simulator's `customer_age_group`) is never a
model input (FieldSpec.is_feature); it is read here only to report, per
group, how often the model flags traffic (flag rate) and how often it
flags genuine traffic (false-positive rate: the burden an innocent
customer of that group carries). Both at the bundle's own threshold, the
decision the API makes. Rates come from fairlearn's MetricFrame, and the
summary per field is fairlearn's demographic-parity difference (the gap in
flag rates) and equalized-odds difference (the larger of the gaps in
true- and false-positive rates). The report says what it measures, not
whether a gap is acceptable: that is a policy the model card puts before
its reader.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
)

# Groups with fewer held-out rows than this are reported but not compared:
# their rates are noise.
MIN_GROUP_ROWS = 30
# The per-field summary (`summary`), in the order the card shows it.
DIFFERENCES = ("demographic_parity_difference", "equalized_odds_difference",
               "false_positive_rate_difference")


def _labels(frame: pd.DataFrame, label: str | None) -> np.ndarray | None:
    if not label or label not in frame.columns:
        return None
    return pd.to_numeric(frame[label], errors="coerce").to_numpy(np.float64)


def _groups(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].astype("string").fillna("(missing)").to_numpy(dtype=object)


def group_report(frame: pd.DataFrame, flagged: np.ndarray, label: str | None,
                 fields: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{field: {group: {rows, flag_rate, genuine, false_positive_rate}}}:
    flag rate over every row, false-positive rate over the genuine ones."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    y = _labels(frame, label)
    flagged = np.asarray(flagged, dtype=bool)
    for name in fields:
        if name not in frame.columns:
            continue
        groups = _groups(frame, name)
        # Flag rate needs no label: y_true is not read by selection_rate.
        flags = MetricFrame(metrics={"rows": count, "flag_rate": selection_rate},
                            y_true=flagged, y_pred=flagged, sensitive_features=groups).by_group
        per: dict[str, dict[str, float]] = {}
        for group in sorted(set(groups)):
            per[str(group)] = {"rows": int(flags.loc[group, "rows"]),
                               "flag_rate": float(flags.loc[group, "flag_rate"])}
        if y is not None:
            genuine = y == 0
            for group, row in per.items():
                mask = genuine & (groups == group)
                row["genuine"] = int(mask.sum())
                row["false_positive_rate"] = float(flagged[mask].mean()) if mask.any() \
                    else float("nan")
        out[name] = per
    return out


def summary(frame: pd.DataFrame, flagged: np.ndarray, label: str | None,
            fields: list[str]) -> dict[str, dict[str, float]]:
    """{field: {difference: value}} over the groups with at least
    MIN_GROUP_ROWS rows (nan where fewer than two groups qualify): flag-rate
    gap over all rows; equalized odds and false-positive-rate gap over the
    labelled rows of groups that have both frauds and genuine rows (a group
    without frauds has no true-positive rate, which fairlearn would read as 0)."""
    y = _labels(frame, label)
    flagged = np.asarray(flagged, dtype=bool)
    out: dict[str, dict[str, float]] = {}
    for name in fields:
        if name not in frame.columns:
            continue
        groups = _groups(frame, name)
        sizes = pd.Series(groups).value_counts()
        big = np.isin(groups, sizes[sizes >= MIN_GROUP_ROWS].index.to_numpy())
        row = dict.fromkeys(DIFFERENCES, float("nan"))
        if len(set(groups[big])) > 1:
            row["demographic_parity_difference"] = float(demographic_parity_difference(
                flagged[big], flagged[big], sensitive_features=groups[big]))
        if y is not None:
            known = big & np.isin(y, (0, 1))
            both = [g for g in set(groups[known])
                    if len(set(y[known & (groups == g)])) == 2]
            rows = known & np.isin(groups, both)
            if len(both) > 1:
                yt, yp, sf = y[rows].astype(int), flagged[rows], groups[rows]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row["equalized_odds_difference"] = float(
                        equalized_odds_difference(yt, yp, sensitive_features=sf))
                    fpr = MetricFrame(metrics=false_positive_rate, y_true=yt, y_pred=yp,
                                      sensitive_features=sf)
                    row["false_positive_rate_difference"] = float(fpr.difference())
        out[name] = row
    return out


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def as_metrics(report: dict[str, dict[str, dict[str, float]]],
               differences: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """MLflow metric names, grouped under `fairness/` in the UI:
    fairness/<field>.<group>.<rate> and fairness/<field>.<difference>."""
    metrics: dict[str, float] = {}
    for name, groups in report.items():
        for group, row in groups.items():
            for rate in ("flag_rate", "false_positive_rate"):
                if rate in row and np.isfinite(row[rate]):
                    metrics[f"fairness/{_key(name)}.{_key(group)}.{rate}"] = row[rate]
    for name, row in (differences or {}).items():
        for what, value in row.items():
            if np.isfinite(value):
                metrics[f"fairness/{_key(name)}.{what}"] = value
    return metrics


def table(report: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per (field, group): the MLflow table of the run."""
    rows = [{"field": name, "group": group, "rows": int(row["rows"]),
             "flag_rate": row["flag_rate"], "genuine": int(row.get("genuine", 0)),
             "false_positive_rate": row.get("false_positive_rate", float("nan")),
             "compared": int(row["rows"]) >= MIN_GROUP_ROWS}
            for name, groups in report.items() for group, row in groups.items()]
    return pd.DataFrame(rows, columns=["field", "group", "rows", "flag_rate", "genuine",
                                       "false_positive_rate", "compared"])


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2%}"


def card_lines(report: dict[str, dict[str, dict[str, Any]]],
               differences: dict[str, dict[str, float]] | None = None) -> list[str]:
    """Markdown: per protected field, a table of its groups (rates at the
    model's threshold, counts as integers) and the differences between them."""
    if not report:
        return ["No protected field in the held-out data."]
    lines: list[str] = []
    for name, groups in report.items():
        lines += [
            f"### `{name}` (protected: never a model input)",
            "",
            "| group | rows | flag rate | genuine | false-pos. rate |",
            "|:---|---:|---:|---:|---:|",
        ]
        for group, row in groups.items():
            small = "" if row["rows"] >= MIN_GROUP_ROWS else " (too few to compare)"
            lines.append(
                f"| {group} | {int(row['rows']):,}{small} | {_pct(row['flag_rate'])} | "
                f"{int(row.get('genuine', 0)):,} | "
                f"{_pct(row.get('false_positive_rate', float('nan')))} |"
            )
        diffs = (differences or {}).get(name, {})
        if diffs:
            lines += ["", "| difference between groups (fairlearn) | value |", "|:---|---:|"]
            lines += [f"| {what.replace('_', ' ')} | {_pct(diffs.get(what, float('nan')))} |"
                      for what in DIFFERENCES]
        lines.append("")
    return lines
