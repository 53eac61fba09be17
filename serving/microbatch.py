"""Micro-batching of single-record requests: the records that reach the
scoring step in the same turn of the event loop are scored together, in one
call of the core's block scoring (`bundle.score_records`).

Why: one network/head/tail call for k records costs little more than for
one (measured on the demo's label-aware GAN: about 2 ms for one record,
3 ms for eight, on a loaded machine), and under load the records queue
anyway while the loop is busy scoring. How it stays cheap at one connection:
no timer and no waiting; a record submitted when nothing is queued schedules
the flush two loop turns later (`call_soon` twice: microseconds when the
loop is idle), so it is scored together with whatever the other
connections' requests submitted meanwhile, including those whose bytes the
loop read in the next turn.

What stays per request: validation, the fingerprint, the features (each
record is previewed or recorded on its own, in submission order, exactly as
one-at-a-time requests interleave: a record sees the earlier ones still in
flight), the audit and the state write. A record whose features fail gets
its own error; if the block's model call fails, each record is scored alone,
so one bad record fails only its own request.

Scores: the networks compute in float32, and a matrix product's rounding
depends on how many rows it holds, so a record scored in a block of k can
differ from the same record scored alone in the last float32 bit of a
network error (about 1e-7 relative in the score). `micro_batch_max = 1`
turns batching off (every request scored alone, bit for bit as before).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gendetect.features.online import Preview
from serving.model_manager import ServedModel

# One scored record: its decision and its preview (None when the state was
# written at once, or there is no state), or the exception for its request.
Outcome = tuple[dict[str, Any], Preview | None] | BaseException
ScoreBlock = Callable[[ServedModel, list[dict[str, Any]], list[str], bool], list[Outcome]]


@dataclass(slots=True)
class _Pending:
    served: ServedModel
    record: dict[str, Any]
    fingerprint: str
    record_now: bool
    future: asyncio.Future[tuple[dict[str, Any], Preview | None]]


class MicroBatcher:
    """Collects records submitted during one loop turn and scores them in
    blocks of at most `max_size` (same served model, same state mode) with
    `score_block`, which returns one Outcome per record and never raises for
    one record's failure. One event loop uses a batcher (the API has one)."""

    def __init__(self, score_block: ScoreBlock, max_size: int) -> None:
        self.score_block = score_block
        self.max_size = max_size
        self._pending: list[_Pending] = []
        self._scheduled = False
        self.blocks = 0  # block calls made (tests and benchmarks read them)
        self.records = 0

    async def score(self, served: ServedModel, record: dict[str, Any], fingerprint: str,
                    record_now: bool) -> tuple[dict[str, Any], Preview | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[dict[str, Any], Preview | None]] = loop.create_future()
        self._pending.append(_Pending(served, record, fingerprint, record_now, future))
        if not self._scheduled:
            self._scheduled = True
            # Two turns, not one: requests whose bytes the loop reads in the
            # next turn (they arrived while the last block was scored) are
            # started after this callback would run, and would miss the block.
            loop.call_soon(loop.call_soon, self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for block in _blocks(pending, self.max_size):
            live = [p for p in block if not p.future.done()]  # cancelled: not scored
            if not live:
                continue
            try:
                outcomes = self.score_block(live[0].served, [p.record for p in live],
                                            [p.fingerprint for p in live], live[0].record_now)
            except BaseException as exc:  # score_block's own bug: no request may hang
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.blocks += 1
            self.records += len(live)
            for p, outcome in zip(live, outcomes, strict=True):
                _settle(p, outcome)


def _blocks(pending: Sequence[_Pending], max_size: int) -> list[list[_Pending]]:
    """Consecutive runs of the same served model and state mode, cut at
    `max_size`: submission order is kept, so the features are previewed in
    the order the requests arrived."""
    out: list[list[_Pending]] = []
    for p in pending:
        last = out[-1] if out else None
        if (last is None or len(last) >= max_size or last[0].served is not p.served
                or last[0].record_now != p.record_now):
            out.append([p])
        else:
            last.append(p)
    return out


def _settle(p: _Pending, outcome: Outcome) -> None:
    if p.future.done():  # cancelled while its block was scored
        if not isinstance(outcome, BaseException) and outcome[1] is not None:
            assert p.served.online is not None
            p.served.online.discard(outcome[1])
        return
    if isinstance(outcome, BaseException):
        p.future.set_exception(outcome)
    else:
        p.future.set_result(outcome)
