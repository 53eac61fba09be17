"""serving.auth fails closed: no key and no explicit GENDETECT_AUTH=disabled
is a start-up error (naming a misspelt key variable when there is one),
open mode is only ever the explicit setting, and a key ring without keys
lets nobody in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from serving.auth import OPEN, ConfigurationError, KeyRing
from serving.settings import ApiKeySpec, ServingSettings

SECRET = "s3cret-s3cret-s3cret"


def _settings(tmp_path: Path, **values: object) -> ServingSettings:
    # Built without the environment's key settings, whatever the shell has.
    base = ServingSettings(home=tmp_path).model_copy(
        update={"api_key": None, "api_keys": {}, "auth": "required"})
    return base.model_copy(update=values)


def test_no_key_is_a_startup_error_not_an_open_api(tmp_path: Path) -> None:
    # Before: an open ring, every scope (admin included), and a warning.
    with pytest.raises(ConfigurationError) as info:
        KeyRing.from_settings(_settings(tmp_path), environ={})
    message = str(info.value)
    assert "no API key configured" in message
    assert "GENDETECT_API_KEYS" in message and "GENDETECT_AUTH=disabled" in message


def test_the_error_names_a_misspelt_key_variable(tmp_path: Path) -> None:
    environ = {"GENDETECT_APIKEY": SECRET, "GENDETECT_IMAGE_TAG": "1.0"}
    with pytest.raises(ConfigurationError) as info:
        KeyRing.from_settings(_settings(tmp_path), environ=environ)
    message = str(info.value)
    assert "GENDETECT_APIKEY is not a setting: did you mean GENDETECT_API_KEY?" in message
    assert SECRET not in message and "IMAGE_TAG" not in message


def test_open_only_when_disabled_explicitly(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gendetect.serving"):
        ring = KeyRing.from_settings(_settings(tmp_path, auth="disabled"), environ={})
    assert ring.is_open and ring.identify(None) is OPEN
    assert "GENDETECT_AUTH=disabled: the API is open" in caplog.text


def test_disabled_with_keys_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, auth="disabled", api_key=SecretStr(SECRET))
    with pytest.raises(ConfigurationError, match="keys are configured"):
        KeyRing.from_settings(settings, environ={})


def test_a_ring_without_keys_lets_nobody_in() -> None:
    ring = KeyRing({})
    assert not ring.is_open
    assert ring.identify(None) is None and ring.identify(SECRET) is None


def test_scoped_keys_identify_their_principal(tmp_path: Path) -> None:
    keys = {"checkout": ApiKeySpec(key=SecretStr(SECRET), scopes=["score"])}
    ring = KeyRing.from_settings(_settings(tmp_path, api_keys=keys), environ={})
    principal = ring.identify(SECRET)
    assert principal is not None and principal.name == "checkout"
    assert principal.may("score") and not principal.may("admin")
    assert ring.identify(SECRET + "x") is None and ring.identify(None) is None


@pytest.mark.parametrize("key", [f" {SECRET}", f"{SECRET}é", "short"])
def test_unusable_keys_are_refused_even_without_validation(tmp_path: Path, key: str) -> None:
    # model_copy skips validation: the ring checks again, by the key's name.
    keys = {"analysts": ApiKeySpec.model_construct(key=SecretStr(key), scopes=["review"])}
    with pytest.raises(ConfigurationError) as info:
        KeyRing.from_settings(_settings(tmp_path, api_keys=keys), environ={})
    assert "'analysts'" in str(info.value) and key not in str(info.value)
