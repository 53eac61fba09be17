"""README's schema reference ("Your own data") names every key the schema
reads: each FieldSpec key, each aggregate group and feature key, each
aggregate kind and derived op. A key added to the code without a line in
the reference fails here."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from gendetect.features import aggregates
from gendetect.schema import DERIVED_OPS, FieldSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    return README.read_text().split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]


def _table(header: str) -> list[str]:
    """The rows of the table whose first column is headed `header`."""
    return _section().split(f"| {header} |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]


def _first_cells(header: str) -> set[str]:
    """The `keys` named in the first column of the table headed `header`."""
    return {name for line in _table(header)
            for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}


def test_every_field_key_is_in_the_reference() -> None:
    documented = _first_cells("field key")
    assert {f.name for f in fields(FieldSpec)} - documented == set()


def test_every_aggregate_key_and_kind_is_in_the_reference() -> None:
    assert aggregates._GROUP_KEYS - _first_cells("group key") == set()
    assert aggregates._FEATURE_KEYS - _first_cells("feature key") == set()
    kinds_row = next(line for line in _table("feature key") if line.startswith("| `kind` |"))
    assert aggregates.KINDS - set(re.findall(r"`([a-z_]+)`", kinds_row)) == set()


def test_every_derived_op_is_in_the_reference() -> None:
    paragraph = _section().split("`derived:` is a list", 1)[1].split("\n\n", 1)[0]
    assert DERIVED_OPS - set(re.findall(r"`([a-z_0-9]+)`", paragraph)) == set()
