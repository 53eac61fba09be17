"""The command line takes options by their full names only, and `simulate`
refuses to write an empty file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gendetect.cli import main
from gendetect.data.simulator import simulate_transactions


def test_an_option_prefix_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tx.csv"
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--day", "3", "--cust", "10", "--out", str(out)])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --day 3 --cust 10" in capsys.readouterr().err
    assert not out.exists()


def test_a_prefix_of_a_nested_commands_option_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["db", "upgrade", "--database", "sqlite://"])
    assert exit_.value.code == 2
    assert "--database" in capsys.readouterr().err


def test_zero_rows_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One customer over one day spends nothing for some seeds: find one.
    empty_seed = next(s for s in range(100) if simulate_transactions(
        n_customers=1, n_terminals=1, days=1, seed=s).empty)
    out = tmp_path / "tx.csv"
    code = main(["simulate", "--days", "1", "--customers", "1", "--terminals", "1",
                 "--seed", str(empty_seed), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no transactions" in err and "nothing written" in err
    assert not out.exists()
