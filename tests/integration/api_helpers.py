"""Shared by the API tests: request bodies, the offline expectation of a
decision, and comparisons. One module instance for every test file, so that
the id counters never hand out the same transaction id twice in a session."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
import pytest

from gendetect.features.window_engine import add_window_features

if TYPE_CHECKING:
    from tests.integration.conftest import RegisteredFixture

# Ids far from the simulator's, so tests never share an entity's history.
_tx_ids = itertools.count(50_000_000)
_entity_ids = itertools.count(5_000_000)
T0 = datetime(2024, 3, 1, 10, 0, 0)


def record(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """A request body from a transactions row (labels excluded)."""
    ts = pd.Timestamp(row["timestamp"]).to_pydatetime()
    return {
        "transaction_id": int(row["transaction_id"]),
        "timestamp": ts.isoformat(),
        "customer_id": int(row["customer_id"]),
        "terminal_id": int(row["terminal_id"]),
        "amount": float(row["amount"]),
    }


def fresh(at: datetime = T0, *, customer: int | None = None, terminal: int | None = None,
          amount: float = 42.5) -> dict[str, Any]:
    return {
        "transaction_id": next(_tx_ids),
        "timestamp": at.isoformat(),
        "customer_id": customer if customer is not None else next(_entity_ids),
        "terminal_id": terminal if terminal is not None else next(_entity_ids),
        "amount": amount,
    }


def offline_windows(records: list[dict[str, Any]], labels: list[int] | None = None,
                    *, registered: RegisteredFixture) -> list[dict[str, float]]:
    """Window features from the offline engine over exactly these records."""
    config = registered.bundle.pipeline.window_config
    frame = pd.DataFrame(records)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["is_fraud"] = labels if labels is not None else 0
    out = add_window_features(frame, config)
    return out[list(config.feature_names)].to_dict("records")


def expected(registered: RegisteredFixture, records: list[dict[str, Any]],
             windows: list[dict[str, float]]) -> list[dict[str, Any]]:
    return registered.bundle.score_records(records, windows)


def assert_same_decision(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["score"] == pytest.approx(want["score"], rel=1e-9, abs=1e-12)
    assert got["risk"] == pytest.approx(want["risk"], rel=1e-9, abs=1e-12)
    assert got["is_fraud"] == want["is_fraud"]
    assert got["threshold"] == pytest.approx(want["threshold"], rel=1e-12)
    for key, name in (("top_features", "feature"), ("top_reasons", "reason")):
        assert [f[name] for f in got[key]] == [f[name] for f in want[key]]
        # A share of the networks' float32 per-feature errors: a record
        # scored alone and the same record in a batch of two can differ in
        # the last float32 bit (~6e-8 relative) of one feature's error.
        for g, w in zip(got[key], want[key], strict=True):
            want_share = pytest.approx(w["contribution"], rel=1e-6, abs=1e-12)
            assert g["contribution"] == want_share, (g, w)
    for g, w in zip(got["top_features"], want["top_features"], strict=True):
        for value in ("value", "expected"):  # observed and expected, null alike
            assert (g[value] is None) == (w[value] is None), value
            assert g[value] is None or g[value] == pytest.approx(w[value], rel=1e-9), value


def post_raw(client: httpx.Client, path: str, body: str | bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})




def concurrent_posts(url: str, path: str, bodies: list[Any], *,
                     headers: dict[str, str] | None = None) -> list[tuple[int, str, float]]:
    """POST every body at once, one client thread each; per body (status,
    error code or "", seconds from its send to its answer)."""
    import threading
    import time

    answers: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(bodies))

    def post(body: Any) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            start.wait()
            began = time.monotonic()
            r = c.post(path, json=body)
            elapsed = time.monotonic() - began
        code = r.json().get("error", {}).get("code", "") if r.status_code != 200 else ""
        with lock:
            answers.append((r.status_code, code, elapsed))

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(bodies), "a client thread failed"
    return answers
