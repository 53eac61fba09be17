"""The command line takes options by their full names only, and `simulate`
refuses to write an empty file."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
from pathlib import Path

import pytest

from gendetect.cli import main
from gendetect.data.simulator import simulate_transactions


def test_an_option_prefix_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tx.csv"
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--day", "3", "--cust", "10", "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "gendetect simulate: error: unrecognized arguments: --day 3 --cust 10" in err
    assert "did you mean --day -> --days, --cust -> --customers?" in err
    assert not out.exists()


def test_a_misspelt_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["trian", "--data", "x.parquet"])
    assert exit_.value.code == 2
    assert "did you mean 'train'?" in capsys.readouterr().err


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  gendetect simulate --days 30" in out


def test_a_prefix_of_a_nested_commands_option_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["db", "upgrade", "--database", "sqlite://"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "gendetect db upgrade: error" in err and "--database -> --database-url" in err


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


@pytest.mark.parametrize("no_color", [False, True])
def test_errors_are_coloured_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, no_color: bool
) -> None:
    main_fd, side_fd = pty.openpty()
    monkeypatch.delenv("NO_COLOR", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    try:
        with os.fdopen(side_fd, "w", closefd=False) as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            with pytest.raises(SystemExit) as info:
                main(["trian"])
            terminal.flush()
        chunks = []
        while select.select([main_fd], [], [], 0.2)[0]:
            chunks.append(os.read(main_fd, 65536))
    finally:
        os.close(main_fd)
        os.close(side_fd)
    shown = b"".join(chunks).decode()
    assert info.value.code == 2
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert "gendetect: error: argument COMMAND: invalid choice: 'trian'" in plain
    assert "did you mean 'train'?" in plain
    assert ("\x1b[" in shown) is not no_color
