"""The micro-batcher's scheduling: records submitted in one loop turn are
scored in one block (no timer: a lone record is scored two turns later),
blocks are cut at the size limit and at a model change, and an error stays
with the request it belongs to. The block function here is a plain
recorder; the scoring itself is tested with the real service in
tests/integration/serving/test_microbatch.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.microbatch import MicroBatcher, Outcome


class Recorder:
    """A block function: decision = the record's value doubled; a record
    with "bad" gets its own error; "explode" makes the whole call raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[Any], bool]] = []

    def __call__(self, served: Any, records: list[dict[str, Any]], fingerprints: list[str],
                 record_now: bool) -> list[Outcome]:
        self.calls.append((served, [r["v"] for r in records], record_now))
        if any(r.get("explode") for r in records):
            raise RuntimeError("block failed")
        assert fingerprints == [f"fp{r['v']}" for r in records]
        return [ValueError(f"bad {r['v']}") if r.get("bad") else ({"d": 2 * r["v"]}, None)
                for r in records]


def _submit(batcher: MicroBatcher, served: Any, v: int, **extra: Any) -> Any:
    return batcher.score(served, {"v": v, **extra}, f"fp{v}", False)


def test_records_of_one_turn_are_one_block_and_each_gets_its_own_decision() -> None:
    block = Recorder()
    batcher = MicroBatcher(block, max_size=64)

    async def run() -> list[Any]:
        return await asyncio.gather(*(_submit(batcher, "m", v) for v in range(5)))

    results = asyncio.run(run())
    assert [r[0]["d"] for r in results] == [0, 2, 4, 6, 8]
    assert block.calls == [("m", [0, 1, 2, 3, 4], False)]
    assert (batcher.blocks, batcher.records) == (1, 5)


def test_a_lone_record_is_scored_without_waiting() -> None:
    block = Recorder()
    batcher = MicroBatcher(block, max_size=64)

    async def run() -> tuple[Any, int]:
        loop = asyncio.get_running_loop()
        turns = 0

        def tick() -> None:  # counts loop turns while the request waits
            nonlocal turns
            turns += 1
            loop.call_soon(tick)

        loop.call_soon(tick)
        result = await _submit(batcher, "m", 7)
        return result, turns

    (decision, preview), turns = asyncio.run(run())
    assert decision == {"d": 14} and preview is None
    assert turns <= 3  # two loop turns later, no timer
    assert block.calls == [("m", [7], False)]


def test_blocks_are_cut_at_the_size_limit_and_at_a_model_change() -> None:
    block = Recorder()
    batcher = MicroBatcher(block, max_size=3)

    async def run() -> list[Any]:
        subs = [_submit(batcher, "old", v) for v in range(4)]
        subs += [_submit(batcher, "new", v) for v in range(4, 6)]
        return await asyncio.gather(*subs)

    results = asyncio.run(run())
    assert [r[0]["d"] for r in results] == [0, 2, 4, 6, 8, 10]
    assert block.calls == [("old", [0, 1, 2], False), ("old", [3], False),
                           ("new", [4, 5], False)]


def test_a_record_error_fails_only_its_own_request() -> None:
    batcher = MicroBatcher(Recorder(), max_size=64)

    async def run() -> list[Any]:
        return await asyncio.gather(_submit(batcher, "m", 1), _submit(batcher, "m", 2, bad=True),
                                    _submit(batcher, "m", 3), return_exceptions=True)

    first, second, third = asyncio.run(run())
    assert first[0] == {"d": 2} and third[0] == {"d": 6}
    assert isinstance(second, ValueError) and str(second) == "bad 2"


def test_a_failing_block_call_fails_its_block_and_nothing_hangs() -> None:
    block = Recorder()
    batcher = MicroBatcher(block, max_size=2)

    async def run() -> list[Any]:
        subs = [_submit(batcher, "m", 1), _submit(batcher, "m", 2, explode=True),
                _submit(batcher, "m", 3)]
        return await asyncio.wait_for(asyncio.gather(*subs, return_exceptions=True), 5)

    first, second, third = asyncio.run(run())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert third[0] == {"d": 6}  # the next block is scored as usual


def test_a_cancelled_request_is_not_scored() -> None:
    block = Recorder()
    batcher = MicroBatcher(block, max_size=64)

    async def run() -> Any:
        gone = asyncio.ensure_future(_submit(batcher, "m", 1))
        kept = asyncio.ensure_future(_submit(batcher, "m", 2))
        await asyncio.sleep(0)  # both submitted
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(run())[0] == {"d": 4}
    assert block.calls == [("m", [2], False)]
