"""A schema draft as YAML with comments: what was guessed, and what to check.

YAML libraries drop comments, so the text is written here line by line;
`render` then reads it back and compares with the draft, so a quoting
mistake can never write a schema that says something else than the draft.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from gendetect.schema_tools.draft import SchemaDraft

# Plain YAML scalars that read back as the same string.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*|\d+[smhd]")
_YAML_WORDS = frozenset({"yes", "no", "true", "false", "null", "on", "off", "y", "n", "~"})


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def flow(value: Any) -> str:
    """A list or mapping on one line: [a, b] or {kind: mean, of: amount}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def _comment(lines: list[str], indent: str, text: str) -> None:
    lines.extend(f"{indent}# {part}" for part in text.splitlines())


HEADER = """\
Drafted by `gendetect schema infer` from {source} ({rows} rows).
A draft: read every comment, above all those marked CHECK, edit, then run
  gendetect schema check --schema <this file> --data {source}
Every key is explained in README.md, section "Your own data"."""

AGGREGATES_NOTE = """\
Behaviour features: per identifier (key), aggregates of its recent events.
A starter set: keep what fits your fraud, add windows (s, m, h, d) or kinds
(count, sum, mean, std, min, max, distinct, label_rate, zscore, first_seen,
since_previous); delay: windows end that long before the event (labels
arrive late)."""


def render(draft: SchemaDraft) -> str:
    lines: list[str] = []
    _comment(lines, "", HEADER.format(source=draft.source, rows=draft.n_rows))
    for note in draft.notes:
        _comment(lines, "", f"CHECK: {note}")
    lines += [f"name: {scalar(draft.name)}", "version: 1", "fields:"]
    for f in draft.fields:
        lines.append(f"  - name: {scalar(f.name)}")
        lines.append(f"    kind: {f.kind}")
        for key, value in f.attrs.items():
            lines.append(f"    {key}: {flow(value)}")
        for i, note in enumerate(f.notes):
            _comment(lines, "    ", f"CHECK: {note}" if f.check and i == 0 else note)
    if draft.derived:
        _comment(lines, "", "Features computed from a column (ops: log1p, hour_sin, hour_cos, "
                 "weekend, night, ratio, log_ratio).")
        lines.append("derived:")
        lines.extend(f"  - {flow(d)}" for d in draft.derived)
    if draft.aggregates:
        _comment(lines, "", AGGREGATES_NOTE)
        lines.append("aggregates:")
        for group in draft.aggregates:
            first = True
            for key, value in group.items():
                prefix = "  - " if first else "    "
                first = False
                if key == "features":
                    lines.append(f"{prefix}features:")
                    lines.extend(f"      - {flow(item)}" for item in value)
                else:
                    lines.append(f"{prefix}{key}: {flow(value)}")
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != draft.as_dict():
        raise RuntimeError("the drafted YAML does not read back as the draft (a bug)")
    return text
