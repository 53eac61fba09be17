"""README's configuration table and the settings classes say the same: every
GENDETECT_* variable in the table is a setting and every setting is in the
table, with the default the class has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from gendetect.config import setting_names
from serving.settings import ServingSettings

README = Path(__file__).resolve().parents[2] / "README.md"
# GENDETECT_CONFIG_FILE names the file; it is no field of a settings class.
NOT_FIELDS = {"GENDETECT_CONFIG_FILE"}


def _table() -> dict[str, str]:
    """variable -> its default cell, from the table under '## Configuration'.
    A row naming several variables ('`A` / `B`') gives each its part of a
    default cell split the same way, or the whole cell when it is one."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ")
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            if name.startswith("GENDETECT_"):
                assert name not in rows, f"{name} is in the table twice"
                rows[name] = default.strip()
    return rows


def _written(default: Any) -> str:
    """A default as the table writes it."""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def _default(field: FieldInfo) -> Any:
    return field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]


def test_the_table_names_every_setting_and_only_settings() -> None:
    documented = set(_table()) - NOT_FIELDS
    fields = {f"GENDETECT_{name.upper()}" for name in setting_names()}
    assert documented - fields == set(), "in README's table, not a setting"
    assert fields - documented == set(), "a setting missing from README's table"


def test_the_table_gives_each_setting_its_default() -> None:
    table = _table()
    fields = ServingSettings.model_fields  # the core's and the API's
    assert set(setting_names()) == set(fields)
    for name, field in fields.items():
        cell, default = table[f"GENDETECT_{name.upper()}"], _default(field)
        if default is None or default == {}:
            # Unset, or derived from other settings (`<home>`): said in words.
            assert cell == "unset" or "<" in cell or "generated" in cell, (name, cell)
        else:
            assert cell == _written(default), (name, cell, default)
