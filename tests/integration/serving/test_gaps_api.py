"""The API with a model trained on a table with gaps and a high-cardinality
categorical field: a nullable field left out or null is a gap (200, the
bundle's score), an unseen level is "other" and counted in /metrics, and a
missing or null non-nullable field is still 422 naming it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from gendetect import tracking
from gendetect.bundle import FraudModelBundle
from scoring import model_log
from serving.settings import ServingSettings
from tests.gappy import gappy_frame, gappy_schema

pytestmark = pytest.mark.integration
RTOL = 1e-6


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServingSettings, FraudModelBundle]:
    home = tmp_path_factory.mktemp("gaps-api")
    settings = ServingSettings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    settings = settings.model_copy(update={"auth": "disabled", "api_key": None, "api_keys": {},
                                           "model_poll_seconds": 0})
    train = gappy_frame(1500, 0)
    bundle = FraudModelBundle("vae", schema=gappy_schema(), max_epochs=2, seed=0,
                              accelerator="cpu", alert_rate=0.05).fit(train)
    experiment = tracking.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment):
        ref = model_log.log_bundle(bundle, train.head(5), settings)
    tracking.set_alias(settings, settings.champion_alias, ref.version)
    return settings, bundle


@pytest.fixture(scope="module")
def api(trained: tuple[ServingSettings, FraudModelBundle]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from serving.main import create_app

    with TestClient(create_app(trained[0])) as client:
        deadline = time.monotonic() + 90
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.1)
        yield client


_ids = iter(range(50_000_000, 60_000_000))


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    """JSON records with gaps as null, balance left out, fresh ids."""
    frame = gappy_frame(n, seed).drop(columns=["balance"])
    out = []
    for row in frame.to_dict("records"):
        record = {k: (None if v is None or v is pd.NA or v != v else v) for k, v in row.items()}
        record["transaction_id"] = next(_ids)
        out.append(record)
    return out


def _unseen(api: Any) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith('gendetect_unseen_levels_total{field="email_domain"}'):
            return float(line.split()[-1])
    return 0.0


def test_gaps_score_as_the_bundle_does(
    api: Any, trained: tuple[ServingSettings, FraudModelBundle]
) -> None:
    records = _records(40, 7)
    records[1]["is_foreign"] = None
    del records[2]["email_domain"]  # optional: left out, a gap
    assert any(r.get("email_domain") is None for r in records[3:])
    got = api.post("/v1/score/batch", json={"records": records})
    assert got.status_code == 200, got.text
    scores = [d["score"] for d in got.json()["results"]]
    expected = trained[1].decision_function(pd.DataFrame(records))
    np.testing.assert_allclose(scores, expected, rtol=RTOL)
    one = api.post("/v1/score", json=records[0])
    assert one.status_code == 200
    assert one.json()["score"] == pytest.approx(expected[0], rel=RTOL)


def test_unseen_levels_are_other_and_counted(api: Any) -> None:
    before = _unseen(api)
    record = {**_records(1, 8)[0], "email_domain": "never-seen-before.example"}
    got = api.post("/v1/score", json=record)
    assert got.status_code == 200, got.text
    assert np.isfinite(got.json()["score"])
    assert _unseen(api) == before + 1


@pytest.mark.parametrize("how", ["absent", "null"])
def test_a_non_nullable_field_is_still_422_naming_it(api: Any, how: str) -> None:
    record = _records(1, 9)[0]
    if how == "absent":
        del record["amount"]
    else:
        record["amount"] = None
    got = api.post("/v1/score", json=record)
    assert got.status_code == 422
    assert "amount" in {e["field"] for e in got.json()["error"]["fields"]}


def test_the_request_schema_marks_gaps() -> None:
    """Nullable fields accept null; the others do not."""
    from serving.request_models import build_record_model

    schema = build_record_model(gappy_schema()).model_json_schema()
    props = schema["properties"]
    assert {"type": "null"} in props["balance"]["anyOf"]
    assert "anyOf" not in props["amount"] and "amount" in schema["required"]


def test_the_model_endpoint_says_which_fields_are_nullable(api: Any) -> None:
    fields = {f["name"]: f for f in api.get("/v1/model").json()["schema_fields"]}
    assert fields["balance"]["nullable"] and not fields["balance"]["required"]
    assert not fields["amount"]["nullable"] and fields["amount"]["required"]
