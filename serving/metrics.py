"""Prometheus metrics through prometheus_client (correct exposition and label
escaping, plus the process and platform collectors).

Each app gets its own registry, so several apps in one process (tests) do not
collide; the metric names are the API's contract with dashboards and stay
as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# `_created` series double every counter's output and no dashboard reads them.
disable_created_metrics()

# Seconds. Dense below 10 ms, where the single-record path should live.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._requests = Counter(
            "gendetect_http_requests", "HTTP requests by route and status.",
            ["route", "method", "status"], registry=registry,
        )
        self._latency = Histogram(
            "gendetect_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self._scored = Counter("gendetect_records_scored", "Records scored.", registry=registry)
        self._flagged = Counter(
            "gendetect_records_flagged", "Records at or above the threshold.", registry=registry
        )
        self._reloads = Counter(
            "gendetect_model_reloads", "Model reload attempts by outcome.", ["outcome"],
            registry=registry,
        )
        self._model = Gauge(
            "gendetect_model_info", "The model being served (value 1).", ["name", "version"],
            registry=registry,
        )
        self._loaded_at = Gauge(
            "gendetect_model_loaded_timestamp_seconds", "When the model was loaded.",
            registry=registry,
        )
        self._state_up = Gauge(
            "gendetect_state_store_up",
            "1 if the behaviour-state store answered its last check, else 0.", registry=registry,
        )
        Gauge("gendetect_process_start_time_seconds", "Process start (Unix time).",
              registry=registry).set(time.time())
        # Drift of recent traffic against the served model's training reference
        # (gendetect.drift.LiveDrift): PSI per model input and for the score.
        self._drift_psi = Gauge(
            "gendetect_drift_psi", "Population stability index of the recent window against "
            "the training reference, per model input (input=\"score\": the score).",
            ["input"], registry=registry,
        )
        self._drift_detected = Gauge(
            "gendetect_drift_detected", "1 if any input or the score is at or above the drift "
            "level, else 0.", registry=registry,
        )
        self._drift_level = Gauge("gendetect_drift_level", "The PSI level that marks drift.",
                                  registry=registry)
        self._drift_rows = Gauge("gendetect_drift_window_rows",
                                 "Records in the recent window of the last drift report.",
                                 registry=registry)

    # ---------------------------------------------------------------- updates
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def observe_scores(self, n_records: int, n_flagged: int) -> None:
        self._scored.inc(n_records)
        if n_flagged:
            self._flagged.inc(n_flagged)

    def model_loaded(self, name: str, version: str) -> None:
        self._model.clear()
        self._model.labels(name, version).set(1)
        self._loaded_at.set(time.time())

    def reload_attempt(self, outcome: str) -> None:
        self._reloads.labels(outcome).inc()

    def state_store_up(self, up: bool) -> None:
        self._state_up.set(1 if up else 0)

    def drift_report(self, report: Any) -> None:
        """Set the drift gauges from a gendetect.drift.DriftReport."""
        self._drift_psi.clear()
        for name, value in report.features.items():
            self._drift_psi.labels(name).set(value)
        self._drift_psi.labels("score").set(report.score)
        self._drift_detected.set(1 if report.detected else 0)
        self._drift_level.set(report.level)
        self._drift_rows.set(report.rows)

    def watch_audit(self, writer: Any) -> None:
        """Export the audit writer's counters (commits, rows: their ratio is
        the group-commit size) and the 503s it caused."""
        self.registry.register(_AuditCollector(writer))

    def watch_batcher(self, batcher: Any) -> None:
        """Export the micro-batcher's counters (blocks, records: their ratio
        is the mean block size), read at scrape time: nothing per request."""
        self.registry.register(_BatcherCollector(batcher))

    def watch_unseen_levels(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Export `source()`: per categorical field, the values of a level
        the served model never saw in training, scored as "other" (the
        model's pipeline counts them; a reload starts the count again)."""
        self.registry.register(_UnseenLevelsCollector(source))

    # ----------------------------------------------------------------- output
    def render(self) -> bytes:
        return generate_latest(self.registry)


class _AuditCollector(Collector):
    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("gendetect_audit_commits", "Audit transactions committed "
                                  "(one per group of concurrent requests).",
                                  value=self.writer.commits)
        yield CounterMetricFamily("gendetect_audit_rows", "Decisions written to the audit.",
                                  value=self.writer.rows_written)


class _BatcherCollector(Collector):
    def __init__(self, batcher: Any) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("gendetect_score_blocks", "Model calls for single-record "
                                  "requests (one per block of requests scored together).",
                                  value=self.batcher.blocks)
        yield CounterMetricFamily("gendetect_score_block_records", "Single-record requests "
                                  "scored in blocks.", value=self.batcher.records)


class _UnseenLevelsCollector(Collector):
    def __init__(self, source: Callable[[], Mapping[str, int]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "gendetect_unseen_levels", "Categorical values of a level the served model never "
            "saw in training, scored as \"other\", by field.", labels=["field"])
        for name, count in sorted(self.source().items()):
            family.add_metric([name], count)
        yield family
