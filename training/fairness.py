"""Group metrics for the schema's protected fields, on the held-out period.

A protected field (e.g. the simulator's `customer_age_group`) is never a
model input (FieldSpec.is_feature); it is read here only to report, per
group, how often the model flags traffic (flag rate) and how often it
flags genuine traffic (false-positive rate: the burden an innocent
customer of that group carries). Both at the bundle's own threshold, the
decision the API makes. The report says what it measures, not whether a
gap is acceptable: that is a policy the model card puts before its reader.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

# Groups with fewer held-out rows than this are reported but not compared:
# their rates are noise.
MIN_GROUP_ROWS = 30


def group_report(frame: pd.DataFrame, flagged: np.ndarray, label: str | None,
                 fields: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{field: {group: {rows, flag_rate, genuine, false_positive_rate}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    y = None
    if label and label in frame.columns:
        y = pd.to_numeric(frame[label], errors="coerce").to_numpy(np.float64)
    for name in fields:
        if name not in frame.columns:
            continue
        groups = frame[name].astype("string").fillna("(missing)").to_numpy()
        per: dict[str, dict[str, float]] = {}
        for group in sorted(set(groups)):
            mask = groups == group
            row: dict[str, float] = {"rows": int(mask.sum()),
                                     "flag_rate": float(flagged[mask].mean())}
            if y is not None:
                genuine = mask & (y == 0)
                row["genuine"] = int(genuine.sum())
                row["false_positive_rate"] = (float(flagged[genuine].mean()) if genuine.any()
                                              else float("nan"))
            per[str(group)] = row
        out[name] = per
    return out


def as_metrics(report: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Flat MLflow metric names: fairness.<field>.<group>.<rate>, plus the
    largest gap between groups with enough rows."""
    metrics: dict[str, float] = {}
    for name, groups in report.items():
        for group, row in groups.items():
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", group)
            for rate in ("flag_rate", "false_positive_rate"):
                if rate in row and np.isfinite(row[rate]):
                    metrics[f"fairness.{name}.{key}.{rate}"] = row[rate]
        for rate in ("flag_rate", "false_positive_rate"):
            values = [r[rate] for r in groups.values()
                      if r["rows"] >= MIN_GROUP_ROWS and rate in r and np.isfinite(r[rate])]
            if len(values) > 1:
                metrics[f"fairness.{name}.max_gap.{rate}"] = max(values) - min(values)
    return metrics


def card_lines(report: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    if not report:
        return ["- no protected field in the held-out data"]
    lines: list[str] = []
    for name, groups in report.items():
        lines += [
            f"Protected field `{name}` (never a model input), at the model's threshold:",
            "",
            "| group | rows | flag rate | genuine rows | false-positive rate |",
            "|---|---:|---:|---:|---:|",
        ]
        for group, row in groups.items():
            fpr = row.get("false_positive_rate", float("nan"))
            lines.append(
                f"| {group} | {row['rows']:,} | {row['flag_rate']:.2%} | "
                f"{row.get('genuine', 0):,} | {'n/a' if not np.isfinite(fpr) else f'{fpr:.2%}'} |"
            )
        lines.append("")
    return lines
