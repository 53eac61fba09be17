"""Shared test setup: one torch thread (the machine is shared), a small
simulated transactions frame, and an isolated GENDETECT_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from gendetect.config import get_settings
from gendetect.data.simulator import simulate_transactions

torch.set_num_threads(1)

# Environment variables that would point gendetect or MLflow (or a server the
# tests start) somewhere else than the test's own folder and settings.
FOREIGN_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "GENDETECT_TRACKING_URI",
    "GENDETECT_MODEL_URI",
    "GENDETECT_CONFIG_FILE",
    "GENDETECT_MODEL_NAME",
    "GENDETECT_EXPERIMENT",
    "GENDETECT_CHAMPION_ALIAS",
    "GENDETECT_CHALLENGER_ALIAS",
    "GENDETECT_API_KEY",
    "GENDETECT_HOST",
    "GENDETECT_PORT",
    "GENDETECT_STATE_STORE",
)


@pytest.fixture(scope="session")
def small_transactions() -> pd.DataFrame:
    """About 6k simulated transactions (100 customers, 30 days). Shared by
    the session: copy before changing it."""
    return simulate_transactions(n_customers=100, n_terminals=200, days=30, seed=0)


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENDETECT_HOME", str(home))
    get_settings.cache_clear()


@pytest.fixture
def gendetect_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh GENDETECT_HOME (local MLflow store) for one test."""
    home = tmp_path / "gendetect-home"
    _use_home(monkeypatch, home)
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def module_gendetect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A GENDETECT_HOME shared by the tests of one module (e.g. one trained
    model that several tests inspect)."""
    home = tmp_path_factory.mktemp("gendetect-home")
    with pytest.MonkeyPatch.context() as mp:
        _use_home(mp, home)
        yield home
    get_settings.cache_clear()
