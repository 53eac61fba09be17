"""Micro-batching (serving.microbatch) with the real app, model, state and
audit: concurrent single-record requests are scored in blocks, and each
gets its own record's decision, the one it gets when the requests come one
at a time (to the float32 rounding of a block: serving.microbatch), every
2xx decision is in the audit, and one failing record fails only its own
request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.integration.api_helpers import T0, _entity_ids, fresh
from tests.integration.conftest import audit_db, table_rows

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.integration.conftest import RegisteredFixture

pytestmark = pytest.mark.integration


def _app(registered: RegisteredFixture, home: Path, **update: Any) -> Iterator[TestClient]:
    from fastapi.testclient import TestClient

    from serving.main import create_app

    home.mkdir()
    settings = registered.settings.model_copy(update={
        "home": home, "auth": "disabled", "api_key": None, "api_keys": {}, **update})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.1)
        yield client


def _concurrently(client: TestClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """All requests started in one turn of the app's own event loop."""

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return list(await asyncio.gather(*(c.post("/v1/score", json=b) for b in bodies)))

    assert client.portal is not None
    return client.portal.call(post_all)


def _history() -> list[dict[str, Any]]:
    """Twelve records: two customers with several transactions each (their
    window features depend on the earlier ones) and some strangers."""
    a, b, terminal = next(_entity_ids), next(_entity_ids), next(_entity_ids)
    out = []
    for i in range(12):
        at = T0 + timedelta(minutes=7 * i)
        customer = (a, b, None)[i % 3]
        out.append(fresh(at, customer=customer, terminal=terminal if i % 2 else None,
                         amount=20.0 + 37.5 * i))
    return out


def test_concurrent_requests_get_their_own_decisions_as_one_at_a_time(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    records = _history()
    alone_app = _app(registered_model, tmp_path / "alone", micro_batch_max=1)
    alone_client = next(alone_app)
    alone = [alone_client.post("/v1/score", json=r).json() for r in records]
    alone_app.close()

    batched_app = _app(registered_model, tmp_path / "batched")
    client = next(batched_app)
    batcher = client.app.state.scoring.batcher  # type: ignore[attr-defined]
    responses = _concurrently(client, records)
    home = tmp_path / "batched"
    assert [r.status_code for r in responses] == [200] * len(records)
    got = [r.json() for r in responses]
    # Scored in blocks, not one by one; /metrics says so.
    assert batcher.records == len(records) and batcher.blocks < len(records)
    text = client.get("/metrics").text
    assert f"gendetect_score_block_records_total {len(records)}.0" in text
    assert f"gendetect_score_blocks_total {batcher.blocks}.0" in text
    for rec, g, want in zip(records, got, alone, strict=True):
        assert g["transaction_id"] == rec["transaction_id"]
        assert g["is_fraud"] == want["is_fraud"]
        # A block's float32 rounding: the last bit of a network error.
        assert g["score"] == pytest.approx(want["score"], rel=1e-6)
        assert g["risk"] == pytest.approx(want["risk"], rel=1e-6, abs=1e-9)
        assert [f["feature"] for f in g["top_features"]] == [
            f["feature"] for f in want["top_features"]]
    # The state recorded every one of them: the next record of customer a
    # sees all of a's earlier transactions, as in the one-at-a-time app.
    after = fresh(T0 + timedelta(hours=3), customer=records[0]["customer_id"])
    nxt = client.post("/v1/score", json=after).json()
    batched_app.close()
    alone_app = _app(registered_model, tmp_path / "alone2", micro_batch_max=1)
    alone_client = next(alone_app)
    for r in records:
        assert alone_client.post("/v1/score", json=r).status_code == 200
    want_next = alone_client.post("/v1/score", json=after).json()
    alone_app.close()
    assert nxt["score"] == pytest.approx(want_next["score"], rel=1e-6)
    # Every 2xx decision is in the audit, as returned.
    rows = {r["transaction_id"]: r for r in table_rows(audit_db(home), "decisions")}
    for g in got:
        row = rows[g["transaction_id"]]
        assert (row["score"], row["risk"], bool(row["is_fraud"])) == (
            g["score"], g["risk"], g["is_fraud"])


def test_one_failing_record_fails_only_its_own_request(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    records = _history()[:6]
    # The same transaction id as records[1], other content, in the same turn.
    clash = {**records[1], "amount": records[1]["amount"] + 1.0}
    app = _app(registered_model, tmp_path / "home")
    client = next(app)
    responses = _concurrently(client, [*records, clash])
    codes = [r.status_code for r in responses]
    assert codes[:6] == [200] * 6 and codes[6] == 409, [r.text for r in responses]
    assert [r.json()["transaction_id"] for r in responses[:6]] == [
        r["transaction_id"] for r in records]
    app.close()


def test_a_record_that_breaks_the_block_call_is_scored_alone(
    registered_model: RegisteredFixture, tmp_path: Path
) -> None:
    """The service's block step with the served model and state: one record
    whose amount is a one-element array (the online features read it as a
    number; the block's amount column cannot be built with it) makes the
    block call fail. Each record is then scored alone: every one gets its
    own outcome, the others the decisions a block of them gives."""
    app = _app(registered_model, tmp_path / "home")
    client = next(app)
    service = client.app.state.scoring  # type: ignore[attr-defined]
    served = client.app.state.manager.current  # type: ignore[attr-defined]
    records = _history()[:4]
    records[2] = {**records[2], "amount": np.array([records[2]["amount"]])}
    fingerprints = service._fingerprints(served, records)
    with pytest.raises(ValueError):
        served.bundle.score_records(records, [{}] * 4)  # the block call fails
    outcomes = service._score_block(served, records, fingerprints, False)
    others = [0, 1, 3]
    assert not any(isinstance(outcomes[i], BaseException) for i in others), outcomes
    # The odd record gets its own outcome: its decision, or (as with this
    # model's pipeline) its own error, its preview discarded.
    odd = outcomes[2]
    assert isinstance(odd, Exception) or (
        odd[0]["transaction_id"] == records[2]["transaction_id"])
    want = registered_model.bundle.score_records(
        [records[i] for i in others], [outcomes[i][1].features[0] for i in others])
    for i, w in zip(others, want, strict=True):
        assert outcomes[i][0]["transaction_id"] == records[i]["transaction_id"]
        assert outcomes[i][0]["score"] == pytest.approx(w["score"], rel=1e-6)
    for i in others:
        served.online.discard(outcomes[i][1])
    app.close()
