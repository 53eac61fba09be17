"""The settings (the core's and the API's, one loader): bad values and file
keys are one-line errors that name the key; a misspelt environment variable
is reported, not silently ignored."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gendetect.config import Settings, SettingsError, get_settings
from serving.settings import ServingSettings


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
        get_settings(ServingSettings)
    assert str(info.value) == (f"settings from {path}: key 'portt' (GENDETECT_PORTT): "
                               "unknown key")


@pytest.mark.parametrize("port", ["-1", "65536", "99999"])
def test_a_port_outside_the_tcp_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    # Before: 99999 served on port 34463 (99999 mod 65536), silently.
    monkeypatch.setenv("GENDETECT_PORT", port)
    with pytest.raises(SettingsError, match="GENDETECT_PORT"):
        get_settings(ServingSettings)


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
        get_settings(ServingSettings)
    assert "redis://" in str(info.value) and "s3cret" not in str(info.value)


def test_the_accept_new_hash_key_setting_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().accept_new_hash_key is False
    monkeypatch.setenv("GENDETECT_ACCEPT_NEW_HASH_KEY", "true")
    get_settings.cache_clear()
    assert get_settings().accept_new_hash_key is True


def test_the_files_under_home_are_private(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated hash key and the local MLflow store, in folders we
    create: 0600 files in 0700 folders (the MLflow database was 0644, and
    <home> itself took the umask's 0755)."""
    import os

    from gendetect import tracking

    # The default store under home, whatever an earlier test pointed MLflow at.
    for name in ("MLFLOW_TRACKING_URI", "GENDETECT_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)

    old_umask = os.umask(0o022)  # the common default, whatever the runner's
    try:
        home = tmp_path / "made" / "home"
        settings = Settings(home=home)
        settings.resolved_hash_key()
        tracking.ensure_experiment(settings)
        modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in (
            home.parent, home, home / "secrets", home / "secrets" / "hash.key",
            home / "mlflow.db", home / "mlartifacts")}
        assert modes == {
            "made": 0o700, "made/home": 0o700, "made/home/secrets": 0o700,
            "made/home/secrets/hash.key": 0o600, "made/home/mlflow.db": 0o600,
            "made/home/mlartifacts": 0o700,
        }
    finally:
        os.umask(old_umask)


SECRET = "s3cret-s3cret-s3cret"  # never in a message


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("GENDETECT_API_KEYS", "", "set but empty"),
    ("GENDETECT_API_KEYS", "  ", "set but empty"),
    ("GENDETECT_API_KEYS", "null", "null"),
    ("GENDETECT_API_KEYS", "{}", "names no key"),
    ("GENDETECT_API_KEYS", '{"ops": {"key": "' + SECRET + '",', "not valid JSON"),
    ("GENDETECT_API_KEYS", '["' + SECRET + '"]', "Input should be a valid dictionary"),
    ("GENDETECT_API_KEY", "", "set but empty"),
    ("GENDETECT_API_KEY", "null", "keys must have at least 16 characters"),
])
def test_empty_null_or_malformed_key_settings_are_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    # Before: '' and bad JSON raised pydantic-settings' own error (a traceback
    # at start), null and {} read as "no keys" (the API started open).
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        get_settings(ServingSettings)
    message = str(info.value)
    assert f"({variable}): {problem}" in message
    assert "\n" not in message and SECRET not in message


@pytest.mark.parametrize(("key", "problem"), [
    (f" {SECRET}", "leading or trailing whitespace"),
    (f"{SECRET} ", "leading or trailing whitespace"),
    (f"{SECRET}é", "other than printable ASCII"),
    (f"{SECRET}\x00x", "other than printable ASCII"),
])
def test_keys_no_client_could_present_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    # Before: accepted at start, and no request could ever authenticate.
    monkeypatch.setenv("GENDETECT_API_KEYS", json.dumps(
        {"checkout": {"key": SECRET + "-ok", "scopes": ["score"]},
         "analysts": {"key": key, "scopes": ["review"]}}))
    with pytest.raises(SettingsError) as info:
        get_settings(ServingSettings)
    message = str(info.value)
    assert "'api_keys.analysts.key' (GENDETECT_API_KEYS)" in message and problem in message
    assert SECRET not in message


def test_a_key_with_inner_spaces_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENDETECT_API_KEYS", json.dumps(
        {"checkout": {"key": "correct horse battery staple", "scopes": ["score"]}}))
    assert list(get_settings(ServingSettings).api_keys) == ["checkout"]


def test_auth_is_required_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENDETECT_AUTH", raising=False)
    assert get_settings(ServingSettings).auth == "required"
    monkeypatch.setenv("GENDETECT_AUTH", "disabled")
    get_settings.cache_clear()
    assert get_settings(ServingSettings).auth == "disabled"
    monkeypatch.setenv("GENDETECT_AUTH", "off")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="GENDETECT_AUTH"):
        get_settings(ServingSettings)


@pytest.mark.parametrize(("typo", "meant"), [
    ("GENDETECT_APIKEY", "GENDETECT_API_KEY"),
    ("GENDETECT_APIKEYS", "GENDETECT_API_KEYS"),
    ("GENDETECT_API-KEY", "GENDETECT_API_KEY"),
    ("GENDETECT_AUHT", "GENDETECT_AUTH"),
    ("GENDETECT_MAX_CONNECTION", "GENDETECT_MAX_CONNECTIONS"),
])
def test_near_misses_of_the_key_settings_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, typo: str, meant: str
) -> None:
    monkeypatch.setenv(typo, SECRET)
    with caplog.at_level(logging.WARNING, logger="gendetect.config"):
        get_settings(ServingSettings)
    assert [r.getMessage() for r in caplog.records] == [
        f"{typo} is not a setting (did you mean {meant}?): ignored"]
    assert SECRET not in caplog.text


def test_connection_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEADER_TIMEOUT_SECONDS", "BODY_TIMEOUT_SECONDS", "IDLE_TIMEOUT_SECONDS",
                 "MAX_CONNECTIONS"):
        monkeypatch.delenv(f"GENDETECT_{name}", raising=False)
    settings = get_settings(ServingSettings)
    assert (settings.header_timeout_seconds, settings.body_timeout_seconds,
            settings.idle_timeout_seconds, settings.max_connections) == (10, 30, 15, 1000)
    monkeypatch.setenv("GENDETECT_HEADER_TIMEOUT_SECONDS", "0")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="GENDETECT_HEADER_TIMEOUT_SECONDS"):
        get_settings(ServingSettings)


def test_a_job_reads_a_file_that_also_configures_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One file, one environment for every layer: the core's settings take
    the API's keys and variables for settings (not unknown keys, not near
    misses of GENDETECT_HOME), and still refuse a typo."""
    path = tmp_path / "cfg.yaml"
    path.write_text("experiment: fraud\nport: 8080\nmax_batch_size: 50\n")
    monkeypatch.setenv("GENDETECT_CONFIG_FILE", str(path))
    monkeypatch.setenv("GENDETECT_HOST", "0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="gendetect.config"):
        assert get_settings().experiment == "fraud"
        served = get_settings(ServingSettings)
    assert (served.experiment, served.port, served.max_batch_size, served.host) == (
        "fraud", 8080, 50, "0.0.0.0")
    assert caplog.records == []
    path.write_text("experiment: fraud\nportt: 8080\n")
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as info:
        get_settings()
    assert str(info.value) == (f"settings from {path}: key 'portt' (GENDETECT_PORTT): "
                               "unknown key")


def test_the_core_settings_hold_no_api_setting() -> None:
    assert not {"host", "port", "api_keys", "auth", "drift_level"} & set(Settings.model_fields)
    assert set(Settings.model_fields) < set(ServingSettings.model_fields)


def test_the_drift_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings(ServingSettings)
    assert (settings.drift_level, settings.drift_window_rows) == (0.2, 5000)
    monkeypatch.setenv("GENDETECT_DRIFT_LEVEL", "0.1")
    monkeypatch.setenv("GENDETECT_DRIFT_WINDOW_ROWS", "")  # empty: the default, as before
    get_settings.cache_clear()
    settings = get_settings(ServingSettings)
    assert (settings.drift_level, settings.drift_window_rows) == (0.1, 5000)
    for variable, value in (("GENDETECT_DRIFT_LEVEL", "0"), ("GENDETECT_DRIFT_WINDOW_ROWS", "9")):
        monkeypatch.setenv(variable, value)
        get_settings.cache_clear()
        with pytest.raises(SettingsError, match=variable):
            get_settings(ServingSettings)
        monkeypatch.delenv(variable)
