"""How the alerts of a period fared, for the analyst console: alerts per
day (reviewed or still open), the share of reviewed alerts confirmed as
fraud per model version, the time from alert to first verdict, and the
backlog. Read-only; one query over the flagged decisions of the period
(the partial index on them) joined with their verdicts, summed here so that
SQLite and PostgreSQL answer the same without dialect date functions."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from gendetect.errors import InputError, StoreUnavailableError
from gendetect.stores.records import utc_naive
from gendetect.stores.tables import decisions, verdicts

MAX_DAYS = 92  # a quarter: the console's longest period (one row per alert is read)
# Upper bounds (seconds) of the alert-to-verdict buckets; the last is open.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 h", 3600.0), ("1-4 h", 4 * 3600.0), ("4-24 h", 86400.0),
    ("1-3 days", 3 * 86400.0), ("> 3 days", float("inf")),
)


@dataclass(slots=True)
class _Alert:
    decided_at: datetime
    model_version: str
    label: str | None = None  # the latest verdict's
    latest: tuple[datetime, int] | None = None
    first_verdict_at: datetime | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def period(since: datetime | None, until: datetime | None, now: datetime,
           default_days: int = 7) -> tuple[datetime, datetime]:
    """The period [since, until) in naive UTC: by default the last
    `default_days` days; at most MAX_DAYS long."""
    end = utc_naive(until) if until is not None else now
    start = utc_naive(since) if since is not None else end - timedelta(days=default_days)
    if start >= end:
        raise InputError("must be before until", field="since")
    if end - start > timedelta(days=MAX_DAYS):
        raise InputError(f"the period is longer than {MAX_DAYS} days", field="since")
    return start, end


class AlertStats:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def summary(self, since: datetime, until: datetime,
                model_version: str | None = None) -> dict[str, Any]:
        """The period's figures (naive UTC bounds, see `period`)."""
        alerts = self._alerts(since, until, model_version)
        return {
            "since": _iso(since), "until": _iso(until),
            "days": _per_day(alerts.values(), since, until),
            "versions": _per_version(alerts.values()),
            "time_to_verdict": _time_to_verdict(alerts.values()),
            "backlog": _backlog(alerts.values()),
        }

    def _alerts(self, since: datetime, until: datetime,
                model_version: str | None) -> dict[int, _Alert]:
        d, v = decisions.c, verdicts.c
        query = (
            select(d.transaction_id, d.decided_at, d.model_version, v.id, v.label,
                   v.labelled_at)
            .select_from(decisions.outerjoin(verdicts, v.transaction_id == d.transaction_id))
            .where(d.is_fraud, d.decided_at >= since, d.decided_at < until,
                   d.transaction_id.is_not(None))
        )
        if model_version is not None:
            query = query.where(d.model_version == model_version)
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(query))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(f"the database failed: {type(exc).__name__}") from None
        out: dict[int, _Alert] = {}
        for tid, decided_at, version, vid, label, labelled_at in rows:
            alert = out.setdefault(tid, _Alert(decided_at, version))
            if vid is None:
                continue
            # The latest verdict (labelled_at, then id) is the label, as in
            # the review routes; the first one ends the wait.
            if alert.latest is None or (labelled_at, vid) > alert.latest:
                alert.latest, alert.label = (labelled_at, vid), label
            if alert.first_verdict_at is None or labelled_at < alert.first_verdict_at:
                alert.first_verdict_at = labelled_at
        return out


def _per_day(alerts: Any, since: datetime, until: datetime) -> list[dict[str, Any]]:
    first, last = since.date(), (until - timedelta(microseconds=1)).date()
    # Counted by offset, not stepped past `last`: a period ending on the
    # calendar's last day must not step beyond it.
    names = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    days = {day: {"day": day, "alerts": 0, "reviewed": 0, "open": 0} for day in names}
    for a in alerts:
        row = days[a.decided_at.date().isoformat()]
        row["alerts"] += 1
        row["reviewed" if a.label is not None else "open"] += 1
    return list(days.values())


def _per_version(alerts: Any) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for a in alerts:
        row = out.setdefault(a.model_version, {"model_version": a.model_version, "alerts": 0,
                                               "reviewed": 0, "fraud": 0, "genuine": 0})
        row["alerts"] += 1
        if a.label is not None:
            row["reviewed"] += 1
            row[a.label] += 1
    for row in out.values():
        row["precision"] = row["fraud"] / row["reviewed"] if row["reviewed"] else None
    return sorted(out.values(), key=lambda r: r["model_version"])


def _time_to_verdict(alerts: Any) -> dict[str, Any]:
    # A verdict dated before the decision (an analyst's own labelled_at) waits 0 s.
    waits = sorted(max((a.first_verdict_at - a.decided_at).total_seconds(), 0.0)
                   for a in alerts if a.first_verdict_at is not None)
    counts = dict.fromkeys((name for name, _ in BUCKETS), 0)
    for wait in waits:
        counts[next(name for name, top in BUCKETS if wait < top)] += 1
    p90 = waits[min(len(waits) - 1, int(0.9 * len(waits)))] if waits else None
    return {"reviewed": len(waits),
            "median_seconds": statistics.median(waits) if waits else None,
            "p90_seconds": p90,
            "buckets": [{"label": name, "count": n} for name, n in counts.items()]}


def _backlog(alerts: Any) -> dict[str, Any]:
    waiting = [a.decided_at for a in alerts if a.label is None]
    return {"open": len(waiting), "oldest_decided_at": _iso(min(waiting) if waiting else None)}
