"""The one settings class: bad values and file keys are one-line errors that
name the key; a misspelt environment variable is reported, not silently
ignored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gendetect.config import SettingsError, get_settings


@pytest.fixture(autouse=True)
def fresh_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GENDETECT_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_typo_in_the_settings_file_names_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("portt: 8080\n")
    monkeypatch.setenv("GENDETECT_CONFIG_FILE", str(path))
    with pytest.raises(SettingsError) as info:
        get_settings()
    assert str(info.value) == (f"settings from {path}: key 'portt' (GENDETECT_PORTT): "
                               "unknown key")


@pytest.mark.parametrize("port", ["-1", "65536", "99999"])
def test_a_port_outside_the_tcp_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    # Before: 99999 served on port 34463 (99999 mod 65536), silently.
    monkeypatch.setenv("GENDETECT_PORT", port)
    with pytest.raises(SettingsError, match="GENDETECT_PORT"):
        get_settings()


def test_a_misspelt_variable_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENDETECT_DATABSE_URL", "postgresql://db/x")
    monkeypatch.setenv("GENDETECT_IMAGE_TAG", "1.0")  # not a setting, not a near miss
    with caplog.at_level(logging.WARNING, logger="gendetect.config"):
        settings = get_settings()
    assert settings.database_url is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GENDETECT_DATABSE_URL is not a setting "
                        "(did you mean GENDETECT_DATABASE_URL?): ignored"]
    assert "postgresql://db/x" not in caplog.text  # values may be secrets


def test_a_redis_url_of_another_scheme_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the API started and retried "no model yet" every 2 s, forever.
    monkeypatch.setenv("GENDETECT_REDIS_URL", "http://:s3cret@cache:6379/0")
    with pytest.raises(SettingsError, match="GENDETECT_REDIS_URL") as info:
        get_settings()
    assert "redis://" in str(info.value) and "s3cret" not in str(info.value)
