"""Several workers are refused unless what they share lives outside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.auth import ConfigurationError
from serving.settings import ServingSettings
from serving.workers import check_shared_state


def _settings(tmp_path: Path, **extra: object) -> ServingSettings:
    return ServingSettings(home=tmp_path, **extra)  # type: ignore[arg-type]


def test_one_worker_may_keep_its_state_in_memory(tmp_path: Path) -> None:
    check_shared_state(_settings(tmp_path))


def test_two_workers_need_the_redis_state(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GENDETECT_STATE_STORE=redis"):
        check_shared_state(_settings(tmp_path, workers=2))


def test_two_workers_need_a_shared_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GENDETECT_DATABASE_URL"):
        check_shared_state(_settings(tmp_path, workers=2, state_store="redis",
                                     database_url="sqlite://"))
    check_shared_state(_settings(tmp_path, workers=2, state_store="redis",
                                 database_url=f"sqlite:///{tmp_path / 'a.db'}"))
