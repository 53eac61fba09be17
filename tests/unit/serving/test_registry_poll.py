"""The registry poll runs in a helper process: the registry's answer (here:
no such model) comes back as the error it is, so that the manager records
it (the alias no longer held) instead of taking it for a broken helper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gendetect.errors import ModelNotReadyError
from serving.registry_poll import RegistryPoller
from serving.settings import ServingSettings


def test_the_registrys_answer_comes_back_from_the_helper(tmp_path: Path) -> None:
    settings = ServingSettings(home=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               model_uri="models:/nothing-here@champion")  # type: ignore[call-arg]
    poller = RegistryPoller(settings)
    try:
        with pytest.raises(ModelNotReadyError, match="nothing-here"):
            asyncio.run(poller.resolve())
        assert poller._pool is not None  # the helper stays for the next poll
    finally:
        poller.close()
