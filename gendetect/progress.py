"""How a long job shows how far it is (training epochs, rows scored): a live
progress bar when the stream is a terminal, plain log lines otherwise.

A bar redrawn in place is for a person watching; in a CI job or a log file
it is a mess of carriage returns and escape codes. So the bar (rich) is
drawn only on a terminal; elsewhere each step is one INFO record of the
`gendetect.progress` logger, which the job's log handler formats (text or
JSON, GENDETECT_LOG_FORMAT) like any other line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

log = logging.getLogger("gendetect.progress")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal that can redraw a bar."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and os.environ.get("TERM") != "dumb"


class ProgressReport:
    """Steps towards a total (`total` None: unknown): `update(done, note)`.

    On a terminal, a bar with done/total, the note and the elapsed time; it
    stays on screen when closed, as the record of the last step. Otherwise
    a log line per update, at most one per `every` seconds (the last one is
    always logged at close), reading "`label`: `line`" where `line` is what
    `line_for(done, total, note)` makes of it.
    """

    def __init__(self, label: str, total: int | None, *, unit: str, every: float = 0.0,
                 percent: bool = True, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.percent = percent
        self.stream = sys.stderr if stream is None else stream
        self.live = is_terminal(self.stream) if live is None else live
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._logged_at = -float("inf")
        self._pending: tuple[int, str] | None = None

    def line_for(self, done: int, note: str) -> str:
        of = f"/{self.total:,}" if self.total else ""
        share = f" ({100 * done / self.total:.0f}%)" if self.total and self.percent else ""
        text = f"{self.label}: " if self.label else ""
        text += f"{self.unit} {done:,}{of}{share}"
        return f"{text}  {note}" if note else text

    def update(self, done: int, note: str = "") -> None:
        if self.live:
            self._draw(done, note)
            return
        now = time.monotonic()
        if now - self._logged_at >= self.every:
            log.info(self.line_for(done, note))
            self._logged_at, self._pending = now, None
        else:
            self._pending = (done, note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()  # the last step, not the last timed redraw
            self._bar.stop()
            self._bar = None
        if self._pending is not None:
            log.info(self.line_for(*self._pending))
            self._pending = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        # A spawned training process gets a copy of the callbacks; a live
        # bar (threads, locks) does not travel, it is redrawn there.
        state = dict(self.__dict__)
        state.update(_bar=None, _task=None, stream=None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def _draw(self, done: int, note: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(self.unit), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._task = self._bar.add_task(self.label or self.unit, total=self.total, note="")
            self._bar.start()
        assert self._task is not None
        self._bar.update(self._task, completed=done, note=note)
