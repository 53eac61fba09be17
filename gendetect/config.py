"""One settings object, read from GENDETECT_* environment variables and an
optional YAML file (GENDETECT_CONFIG_FILE), with embedded defaults so that a
first run needs no configuration: a local folder `.gendetect/` holds the
SQLite-backed MLflow store, artifacts and the online feature state."""

from __future__ import annotations

import difflib
import logging
import os
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gendetect.errors import GendetectError

# What a key may do (serving.auth maps routes to them): score (POST /v1/score*),
# feedback (verdicts and labels), review (the alert queue and decisions), admin
# (model reload). Any valid key may read /v1/model.
Scope = Literal["score", "feedback", "review", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("score", "feedback", "review", "admin")
KEY_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class ApiKeySpec(BaseModel):
    """One named key of GENDETECT_API_KEYS."""

    model_config = ConfigDict(extra="forbid")

    key: SecretStr = Field(description="the secret a client sends as X-API-Key")
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # Short keys can be guessed; the message never quotes the key.
        if len(value.get_secret_value().strip()) < 16:
            raise ValueError("keys must have at least 16 characters")
        return value


class Settings(BaseSettings):
    # A typo in the YAML file is an error; unknown GENDETECT_* variables are
    # not (other tools share the prefix space of the environment).
    model_config = SettingsConfigDict(env_prefix="GENDETECT_", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then GENDETECT_* variables, then the YAML file named by
        GENDETECT_CONFIG_FILE (pydantic-settings' own YAML source)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("GENDETECT_CONFIG_FILE")
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"GENDETECT_CONFIG_FILE: {path}: no such file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    home: Path = Field(Path(".gendetect"), description="local state folder")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else SQLite in home"
    )
    experiment: str = "gendetect"
    model_name: str = "gendetect"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    model_uri: str | None = Field(None, description="default models:/<model_name>@<champion>")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0: any free port")
    torch_threads: int = Field(1, ge=1, description="intra-op threads per API process")
    max_batch_size: int = Field(1000, ge=1)
    state_store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    state_snapshot_seconds: float = Field(30.0, gt=0)
    state_journal_fsync_seconds: float = Field(
        1.0, gt=0, le=60,
        description="memory store: at most this much window history is lost on a crash "
        "(journal group-fsync period); labels are fsynced before they are acknowledged",
    )
    state_timeout_seconds: float = Field(
        0.2, gt=0, le=30, description="a state-store call that takes longer fails with 503"
    )
    hash_key: SecretStr | None = Field(
        None,
        description="secret for keyed hashes (HMAC-SHA256) of customer/terminal ids at rest; "
        "default: a random key created once in <home>/secrets/hash.key (mode 0600). Replicas "
        "that share state must share this key.",
    )
    api_key: SecretStr | None = Field(
        None, description="if set, required as X-API-Key; a single key with every scope "
        "(kept for compatibility; see api_keys)"
    )
    api_keys: dict[str, ApiKeySpec] = Field(
        default_factory=dict,
        description='named keys with scopes, e.g. GENDETECT_API_KEYS=\'{"checkout": {"key": '
        '"...", "scopes": ["score"]}, "analysts": {"key": "...", "scopes": ["review", '
        '"feedback"]}}\' (JSON in the environment, a mapping in the YAML file)',
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the audit/verdict database; default a SQLite "
        "file <home>/gendetect.db; postgresql://... uses psycopg (the postgres extra)"
    )
    audit_enabled: bool = Field(
        True, description="store every decision the API returns before answering"
    )
    database_timeout_seconds: float = Field(
        2.0, gt=0, le=60,
        description="the longest a request waits on the database (audit commit, connection, "
        "lock); past it scoring answers 503 audit_unavailable",
    )
    audit_queue_max: int = Field(
        20_000, ge=1, description="decisions waiting for their commit beyond this are refused "
        "with 503 at once (back-pressure while the database is slow)",
    )
    metrics_require_key: bool = Field(False, description="/metrics needs the API key too")
    docs_require_key: bool = Field(
        False, description="/docs, /redoc and /openapi.json need the API key too"
    )
    max_clock_skew_seconds: float = Field(
        86_400.0, ge=0, description="timestamps at most this far ahead of the server clock"
    )
    model_poll_seconds: float = Field(
        30.0, ge=0, description="how often the API checks the registry alias (0: never)"
    )
    log_level: str = "INFO"

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        from_env = os.environ.get("MLFLOW_TRACKING_URI")
        if from_env:
            return from_env
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def resolved_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@{self.champion_alias}"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        # Caught here, at start: otherwise the API starts and retries a
        # client that can never connect. The message never quotes the URL
        # (it may hold a password).
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("api_keys")
    @classmethod
    def _key_names(cls, value: dict[str, ApiKeySpec]) -> dict[str, ApiKeySpec]:
        import re

        for name in value:
            if not re.match(KEY_NAME_PATTERN, name):
                raise ValueError(f"key name {name!r}: letters, digits, '_', '.', '-' (1-64)")
        secrets_seen = [spec.key.get_secret_value() for spec in value.values()]
        if len(set(secrets_seen)) != len(secrets_seen):
            raise ValueError("two names share one key: their scopes would be ambiguous")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'gendetect.db').resolve()}"

    @property
    def state_snapshot_path(self) -> Path:
        return self.home / "state" / "features.snapshot"

    def resolved_hash_key(self) -> bytes:
        """The keyed-hash secret: from the environment when set, else a random
        key made once under `home` (readable by the owner only)."""
        if self.hash_key is not None:
            key = self.hash_key.get_secret_value().encode()
            if not key:
                raise ValueError("GENDETECT_HASH_KEY is set but empty")
            return key
        path = self.home / "secrets" / "hash.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_hex(32).encode())
        return path.read_bytes().strip()


class SettingsError(GendetectError):
    """Settings that do not validate: names the key and where it came from."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        settings = Settings()
    except (ValidationError, FileNotFoundError) as exc:
        raise SettingsError(describe_settings_error(exc)) from None
    _warn_of_misspelt_variables(os.environ)
    return settings


def _warn_of_misspelt_variables(environ: Mapping[str, str]) -> None:
    """Environment variables are not refused like unknown keys of the settings
    file (other GENDETECT_* variables exist: build arguments, test switches),
    but one that is a near miss of a setting is a typo whose setting silently
    keeps its default: say so once."""
    known = [f"GENDETECT_{name.upper()}" for name in Settings.model_fields]
    for name in sorted(environ):
        if not name.startswith("GENDETECT_") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            logging.getLogger("gendetect.config").warning(
                "%s is not a setting (did you mean %s?): ignored", name, close[0])


def describe_settings_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    where = os.environ.get("GENDETECT_CONFIG_FILE") or "environment"
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"key '{key}' (GENDETECT_{key.upper()}): {message}")
    return f"settings from {where}: " + "; ".join(problems)
