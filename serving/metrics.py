"""Prometheus metrics in the text exposition format (version 0.0.4), written
here rather than pulled in as a dependency: the API needs a handful of
counters and one histogram, and a few dictionary updates per request are
cheaper than a general-purpose client.

The process serves from one event loop thread plus a small thread pool for
large batches, so updates take a lock; it is uncontended almost always.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

# Seconds. Dense below 10 ms, where the single-record path should live.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last slot: +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = {}
        self._records_scored = 0
        self._flagged = 0
        self._reloads: dict[str, int] = defaultdict(int)
        self._model: tuple[str, str] | None = None
        self._model_loaded_at: float | None = None
        self._started = time.time()

    # ---------------------------------------------------------------- updates
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, method, status)] += 1
            hist = self._latency.get(route)
            if hist is None:
                hist = self._latency[route] = _Histogram()
            hist.observe(seconds)

    def observe_scores(self, n_records: int, n_flagged: int) -> None:
        with self._lock:
            self._records_scored += n_records
            self._flagged += n_flagged

    def model_loaded(self, name: str, version: str) -> None:
        with self._lock:
            self._model = (name, version)
            self._model_loaded_at = time.time()

    def reload_attempt(self, outcome: str) -> None:
        with self._lock:
            self._reloads[outcome] += 1

    # ----------------------------------------------------------------- output
    def render(self) -> str:
        with self._lock:
            requests = dict(self._requests)
            latency = {
                route: (list(h.counts), h.sum, h.count) for route, h in self._latency.items()
            }
            scored, flagged = self._records_scored, self._flagged
            reloads = dict(self._reloads)
            model, loaded_at = self._model, self._model_loaded_at
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("gendetect_http_requests_total", "counter", "HTTP requests by route and status.")
        for (route, method, status), n in sorted(requests.items()):
            labels = _labels(route=route, method=method, status=str(status))
            out.append(f"gendetect_http_requests_total{labels} {n}")

        family(
            "gendetect_http_request_duration_seconds", "histogram",
            "Time from request start to the end of the response, by route.",
        )
        for route, (counts, total, count) in sorted(latency.items()):
            cumulative = 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                labels = _labels(route=route, le=le)
                out.append(f"gendetect_http_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels(route=route)
            out.append(f"gendetect_http_request_duration_seconds_sum{labels} {total!r}")
            out.append(f"gendetect_http_request_duration_seconds_count{labels} {count}")

        family("gendetect_records_scored_total", "counter", "Records scored.")
        out.append(f"gendetect_records_scored_total {scored}")
        family("gendetect_records_flagged_total", "counter", "Records at or above the threshold.")
        out.append(f"gendetect_records_flagged_total {flagged}")

        family("gendetect_model_reloads_total", "counter", "Model reload attempts by outcome.")
        for outcome, n in sorted(reloads.items()):
            out.append(f"gendetect_model_reloads_total{_labels(outcome=outcome)} {n}")

        family("gendetect_model_info", "gauge", "The model being served (value 1).")
        if model is not None:
            out.append(f"gendetect_model_info{_labels(name=model[0], version=model[1])} 1")
        family("gendetect_model_loaded_timestamp_seconds", "gauge", "When the model was loaded.")
        if loaded_at is not None:
            out.append(f"gendetect_model_loaded_timestamp_seconds {loaded_at!r}")
        family("gendetect_process_start_time_seconds", "gauge", "Process start (Unix time).")
        out.append(f"gendetect_process_start_time_seconds {self._started!r}")
        return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
