"""The audit writer process (gendetect.stores.audit_process): the thread
writer's contract with the commits in another process. Rows are stored
before the write returns, concurrent writes share commits, retries get the
stored decision and conflicts are refused, rows found past their deadline
are never written, and a writer process that dies is started again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gendetect.errors import DuplicateTransactionError, StoreUnavailableError
from gendetect.stores import audit_worker
from gendetect.stores.audit_process import AuditProcessWriter
from gendetect.stores.group_commit import GroupCommitter
from gendetect.stores.tables import decisions
from tests.unit.gendetect.stores.test_stores import (  # noqa: F401 - fixtures
    count,
    decision,
    engine,
    postgres_url,
    record,
    rows,
)


def _url(engine: Engine) -> str:  # noqa: F811
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def writer(engine: Engine) -> Iterator[AuditProcessWriter]:  # noqa: F811
    w = AuditProcessWriter(_url(engine), timeout=5.0, queue_max=10_000)
    w.start()
    yield w
    w.close()


def test_writes_are_stored_before_they_return(engine: Engine,  # noqa: F811
                                              writer: AuditProcessWriter) -> None:
    async def scenario() -> list[object]:
        return await asyncio.gather(*(writer.write(rows([record(100 + i)], [decision(100 + i)]))
                                      for i in range(30)))

    assert asyncio.run(scenario()) == [[None]] * 30
    assert count(engine, decisions) == 30
    # Thirty requests of one loop iteration: one frame, far fewer commits than requests.
    assert 1 <= writer.commits < 30 and writer.rows_written == 30
    assert writer.writer_pid() != os.getpid()


def test_a_retry_gets_the_stored_decision_and_a_conflict_is_refused(
        engine: Engine, writer: AuditProcessWriter) -> None:  # noqa: F811
    first = decision(5, score=0.9, flagged=True, version="1")
    assert asyncio.run(writer.write(rows([record(5)], [first]))) == [None]
    again = asyncio.run(writer.write(rows([record(5)], [decision(5, score=0.1, version="2")])))
    assert again == [first]
    with pytest.raises(DuplicateTransactionError):
        asyncio.run(writer.write(rows([record(6), record(5, amount=99.0)],
                                      [decision(6), decision(5)])))
    assert count(engine, decisions) == 1


def test_rows_past_their_deadline_are_never_written(tmp_path: Path) -> None:
    """The process' rule: an item is taken only before its deadline; one
    found after it is answered 'expired' and not written."""
    from gendetect.stores import migrate
    from gendetect.stores.database import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate.ensure_schema(eng)
    ours, theirs = socket.socketpair()
    try:
        now = time.monotonic()
        items = [(1, now - 0.001, rows([record(1)], [decision(1)])),
                 (2, now + 60, rows([record(2)], [decision(2)]))]
        audit_worker._commit(theirs, GroupCommitter(eng), items)
        (answers, commits, written), = audit_worker.Frames().feed(ours.recv(1 << 20))
        assert dict(answers) == {1: audit_worker.EXPIRED, 2: [None]}
        assert (commits, written) == (1, 1)
        assert count(eng, decisions) == 1
    finally:
        ours.close()
        theirs.close()
        eng.dispose()


def test_a_writer_process_that_died_is_started_again(engine: Engine,  # noqa: F811
                                                      writer: AuditProcessWriter) -> None:
    assert asyncio.run(writer.write(rows([record(1)], [decision(1)]))) == [None]
    pid = writer.writer_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def until_stored(tid: int) -> list[object]:
        deadline = time.monotonic() + 20
        while True:
            try:
                return await writer.write(rows([record(tid)], [decision(tid)]))
            except StoreUnavailableError:  # noticed the death; restarting
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)

    assert asyncio.run(until_stored(2)) == [None]
    assert writer.writer_pid() not in (None, pid)
    assert count(engine, decisions) == 2


def test_a_writer_that_is_not_running_refuses(tmp_path: Path) -> None:
    w = AuditProcessWriter(f"sqlite:///{tmp_path / 'x.db'}", timeout=1.0, queue_max=10)
    with pytest.raises(StoreUnavailableError):
        asyncio.run(w.write(rows([record(1)], [decision(1)])))
