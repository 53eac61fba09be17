"""Progress: a live bar on a terminal, plain log lines anywhere else."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import select

import pytest

from gendetect.progress import ProgressReport, is_terminal
from scoring.batch import RowsProgress


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gendetect.progress"]


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode(errors="replace")


def test_not_a_terminal_gives_one_log_line_per_step(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    caplog.set_level(logging.INFO, logger="gendetect.progress")
    with ProgressReport("vae", 3, unit="epoch", percent=False, stream=stream) as report:
        for epoch in (1, 2, 3):
            report.update(epoch, f"val_loss {-epoch:.4f}")
    assert _records(caplog) == [f"vae: epoch {e}/3  val_loss {-e:.4f}" for e in (1, 2, 3)]
    assert stream.getvalue() == ""  # nothing drawn: no escape codes in a log file


def test_log_lines_are_spaced_out_and_the_last_step_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gendetect.progress")
    progress = RowsProgress(stream=io.StringIO())
    for done in (100, 200, 300):  # well within PROGRESS_EVERY_S of each other
        progress(done, 300, 1.0)
    progress.close()
    lines = _records(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("score: rows 100/300 (33%)")
    assert lines[1].startswith("score: rows 300/300 (100%)") and "rows/s" in lines[1]


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    # A pseudo-terminal: what the user's shell gives the process.
    main, side = pty.openpty()
    caplog.set_level(logging.INFO, logger="gendetect.progress")
    try:
        with os.fdopen(side, "w", closefd=False) as terminal:
            assert is_terminal(terminal) == (os.environ.get("TERM") != "dumb")
            report = ProgressReport("vae", 5, unit="epoch", stream=terminal, live=True)
            report.update(3, "val_loss -1.2345")
            report.close()
            terminal.flush()
        shown = _read_all(main)
    finally:
        os.close(main)
        os.close(side)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "vae" in plain and "3/5" in plain and "val_loss -1.2345" in plain
    assert _records(caplog) == []
