"""The console's alert figures (gendetect.stores.alert_stats) on SQLite and
PostgreSQL: what counts as an alert of the period, the latest verdict as the
label, the first verdict as the end of the wait, the backlog, the period's
bounds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from gendetect.errors import InputError
from gendetect.stores import migrate
from gendetect.stores.alert_stats import AlertStats, period
from gendetect.stores.database import make_engine
from gendetect.stores.tables import decisions, verdicts
from tests.unit.gendetect.stores.test_stores import (
    create_postgres_database,
    drop_postgres_database,
)

T0 = datetime(2024, 3, 4, 9, 0, 0)
HOUR = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stats.db'}"
    else:
        url = create_postgres_database()
    eng = make_engine(url, timeout=2.0)
    migrate.ensure_schema(eng)
    yield eng
    eng.dispose()
    if request.param == "postgresql":
        drop_postgres_database(url)


def decision(tid: int, at: datetime, version: str = "1", flagged: bool = True) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "transaction_id": tid, "decided_at": at, "event_time": at,
            "model_name": "gendetect", "model_version": version, "score": 1.0, "risk": 0.99,
            "is_fraud": flagged, "threshold": 0.5, "top_features": [], "top_reasons": [],
            "entities": {}, "fingerprint": "f" * 32, "key_name": "checkout", "request_id": None}


def verdict(tid: int, label: str, at: datetime) -> dict[str, Any]:
    return {"transaction_id": tid, "label": label, "analyst": "ann", "note": None,
            "labelled_at": at, "received_at": at, "key_name": "analysts", "source": "feedback"}


def test_the_figures_of_a_period(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(decisions), [
            decision(1, T0), decision(2, T0 + HOUR), decision(3, T0 + timedelta(days=1)),
            decision(4, T0, version="2"),
            decision(5, T0, flagged=False),             # not an alert
            decision(6, T0 - timedelta(days=30)),       # before the period
        ])
        conn.execute(insert(verdicts), [
            verdict(1, "fraud", T0 + 2 * HOUR), verdict(1, "genuine", T0 + 30 * HOUR),  # changed
            verdict(2, "fraud", T0 + HOUR),             # at once
            verdict(4, "genuine", T0 + 5 * 24 * HOUR),
            verdict(5, "fraud", T0), verdict(6, "fraud", T0),
        ])
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=6)
    got = AlertStats(engine).summary(since, until)

    assert [d["day"] for d in got["days"]][:3] == ["2024-03-03", "2024-03-04", "2024-03-05"]
    assert len(got["days"]) == 8  # 03-03 09:00 to 03-10 09:00: eight calendar days
    assert [(d["alerts"], d["reviewed"], d["open"]) for d in got["days"][1:3]] == [
        (3, 3, 0), (1, 0, 1)]
    assert got["versions"] == [
        {"model_version": "1", "alerts": 3, "reviewed": 2, "fraud": 1, "genuine": 1,
         "precision": 0.5},
        {"model_version": "2", "alerts": 1, "reviewed": 1, "fraud": 0, "genuine": 1,
         "precision": 0.0},
    ]
    waits = got["time_to_verdict"]  # from the first verdict: 2 h, 0 s, 5 days
    assert waits["reviewed"] == 3 and waits["median_seconds"] == 2 * 3600
    assert {b["label"]: b["count"] for b in waits["buckets"]} == {
        "< 1 h": 1, "1-4 h": 1, "4-24 h": 0, "1-3 days": 0, "> 3 days": 1}
    assert got["backlog"] == {"open": 1, "oldest_decided_at": "2024-03-05T09:00:00Z"}

    only_two = AlertStats(engine).summary(since, until, model_version="2")
    assert [v["model_version"] for v in only_two["versions"]] == ["2"]


def test_periods() -> None:
    now = datetime(2024, 3, 10, 12)
    assert period(None, None, now) == (now - timedelta(days=7), now)
    assert period(None, datetime(2024, 3, 5), now) == (datetime(2024, 2, 27), datetime(2024, 3, 5))
    for since, until in ((now, now), (now - timedelta(days=93), None)):
        with pytest.raises(InputError) as err:
            period(since, until, now)
        assert err.value.field == "since"


def test_a_period_at_the_end_of_the_calendar(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'end.db'}", timeout=2.0)
    migrate.ensure_schema(eng)
    got = AlertStats(eng).summary(datetime(9999, 12, 30), datetime.max)
    assert [d["day"] for d in got["days"]] == ["9999-12-30", "9999-12-31"]
