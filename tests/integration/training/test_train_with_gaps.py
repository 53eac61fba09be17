"""`gendetect train` on a table as real ones are (issue 19): 20% empty
values in a numeric column and a high-cardinality categorical column with
gaps. With the column declared nullable it trains and registers; without,
it still stops with exit 2 naming the file and the column, and says how to
declare gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gendetect.cli import main as cli
from tests.gappy import gappy_frame, gappy_schema

pytestmark = pytest.mark.integration


def _files(tmp_path: Path, nullable: bool) -> tuple[Path, Path]:
    data = tmp_path / "cards.csv"
    frame = gappy_frame(1200, 0, balance_gaps=0.2)
    assert 0.15 < frame["balance"].isna().mean() < 0.25
    frame.to_csv(data, index=False)  # gaps are empty cells
    raw = gappy_schema().to_dict()
    if not nullable:
        for field in raw["fields"]:
            if field["name"] == "balance":
                field.update(nullable=False, required=True)
    schema = tmp_path / "cards.yaml"
    schema.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = tmp_path / "config.yaml"
    config.write_text(f"schema: {schema}\n")
    return data, config


def test_train_with_a_nullable_column_of_gaps(
    gendetect_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, config = _files(tmp_path, nullable=True)
    code = cli(["train", "--model", "vae", "--data", str(data), "--config", str(config),
                "--epochs", "1"])
    assert code == 0, capsys.readouterr().err
    assert "registered" in capsys.readouterr().out


def test_gaps_in_a_column_that_is_not_nullable_are_exit_2(
    gendetect_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, config = _files(tmp_path, nullable=False)
    code = cli(["train", "--model", "vae", "--data", str(data), "--config", str(config),
                "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(data) in err and "column 'balance'" in err and "nullable: true" in err
