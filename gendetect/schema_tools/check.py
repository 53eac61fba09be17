"""What a file would be refused for, column by column, without training.

Each column goes through the schema's own check (gendetect.schema.
validate_column), the one `gendetect train` and `gendetect score` run, so
the report says exactly what they would say; but where they stop at the
first bad column, this goes on and reports every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from gendetect.errors import InputError
from gendetect.schema import Schema, validate_column

Status = Literal["ok", "refused", "absent", "ignored"]


@dataclass(frozen=True)
class ColumnReport:
    column: str
    kind: str  # the schema's kind; "" for a column the schema does not name
    status: Status
    # Full messages as train prints them: "<file>: column '<name>': <what>".
    problems: tuple[str, ...] = ()
    note: str = ""


def check_column(field_name: str, schema: Schema, col: pd.Series, source: str) -> ColumnReport:
    spec = schema[field_name]
    try:
        validate_column(spec, col, source)
    except InputError as exc:
        problems = [str(exc)]
        # Gaps are reported first and hide whatever else is wrong with the
        # values: look again at the values that are there.
        if col.isna().any() and col.notna().any():
            try:
                validate_column(spec, col.dropna(), source)
            except InputError as more:
                if more.message != exc.message:
                    problems.append(f"{more} (gaps left out: rows counted among the values)")
        return ColumnReport(field_name, spec.kind, "refused", tuple(problems))
    return ColumnReport(field_name, spec.kind, "ok")


def check_frame(schema: Schema, df: pd.DataFrame, source: str) -> list[ColumnReport]:
    """One report per schema field (in the schema's order), then one per
    column of the file the schema does not read."""
    schema = schema.resolve_columns([str(c) for c in df.columns if c != schema.label_field])
    reports: list[ColumnReport] = []
    for f in schema.fields:
        if f.name in df.columns:
            reports.append(check_column(f.name, schema, df[f.name], source))
        elif f.required:
            message = str(InputError("required column is missing", field=f.name, source=source))
            reports.append(ColumnReport(f.name, f.kind, "refused", (message,)))
        else:
            reports.append(ColumnReport(f.name, f.kind, "absent",
                                        note="optional, not in the file"))
    for column in df.columns:
        if str(column) not in schema:
            reports.append(ColumnReport(str(column), "", "ignored",
                                        note="not in the schema: never read"))
    return reports


def format_report(reports: list[ColumnReport], *, source: str, schema_source: str,
                  schema: Schema, n_rows: int) -> str:
    width = max([len(r.column) for r in reports] + [6])
    lines = [f"{source} ({n_rows} rows) against {schema_source} "
             f"(schema {schema.name!r}, {len(schema.fields)} fields)"]
    for r in reports:
        label = "REFUSED" if r.status == "refused" else r.status
        head = f"  {label:<8} {r.column:<{width}} {r.kind:<11}"
        if r.problems:
            lines.append(f"{head} {r.problems[0]}")
            lines.extend(f"  {'':<8} {'':<{width}} {'':<11} {p}" for p in r.problems[1:])
        else:
            lines.append(f"{head} {r.note}".rstrip())
    refused = [r for r in reports if r.status == "refused"]
    if refused:
        lines.append(f"{len(refused)} column(s) refused ({', '.join(r.column for r in refused)}): "
                     "train and score stop at the first of them")
    else:
        lines.append("no column refused: train and score accept this file")
    return "\n".join(lines)
