"""One settings object, read from GENDETECT_* environment variables and an
optional YAML file (GENDETECT_CONFIG_FILE), with embedded defaults so that a
first run needs no configuration: a local folder `.gendetect/` holds the
SQLite-backed MLflow store, artifacts and the online feature state."""

from __future__ import annotations

import difflib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SettingsSourceError

from gendetect.errors import GendetectError
from gendetect.private_files import make_private_dir

# What a key may do (serving.auth maps routes to them): score (POST /v1/score*),
# feedback (verdicts and labels), review (the alert queue and decisions), admin
# (model reload). Any valid key may read /v1/model.
Scope = Literal["score", "feedback", "review", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("score", "feedback", "review", "admin")
KEY_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MIN_KEY_LENGTH = 16
AuthMode = Literal["required", "disabled"]


def key_problem(secret: str) -> str | None:
    """Why a configured API key must be refused, or None. A key that no
    client can present is refused at start instead of failing every request:
    HTTP strips a header value's surrounding spaces, and the server reads
    X-API-Key as latin-1 bytes, so a key outside printable ASCII never
    compares equal. The text never quotes the key."""
    if not secret.strip():
        return "set but empty"
    if secret != secret.strip():
        return ("has leading or trailing whitespace, which HTTP strips from the X-API-Key "
                "header: no client could present it")
    if not all(" " <= ch <= "~" for ch in secret):
        return ("has characters other than printable ASCII, which an X-API-Key header does "
                "not carry intact: no client could present it")
    if len(secret) < MIN_KEY_LENGTH:  # short keys can be guessed
        return f"keys must have at least {MIN_KEY_LENGTH} characters"
    return None


class ApiKeySpec(BaseModel):
    """One named key of GENDETECT_API_KEYS."""

    model_config = ConfigDict(extra="forbid")

    key: SecretStr = Field(description="the secret a client sends as X-API-Key")
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("key")
    @classmethod
    def _usable(cls, value: SecretStr) -> SecretStr:
        # The error's location (api_keys.<name>.key) names the key.
        problem = key_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
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
    accept_new_hash_key: bool = Field(
        False,
        description="the hash key changed on purpose (or the old one is lost for good): start "
        "the online state over (the memory store's snapshot and journal are moved to "
        "<home>/state/replaced-<time>/, the Redis prefix is cleared) and accept the new key in "
        "the audit database (its rows are kept). Without it a store written with another key "
        "stops the API at start. Set it for one start, then remove it.",
    )
    api_key: SecretStr | None = Field(
        None, description="one key named 'default' with every scope, sent as X-API-Key "
        "(kept for compatibility; see api_keys)"
    )
    # NoDecode: the JSON is parsed by _parse_api_keys, so that an empty, null or
    # malformed value is an error naming the variable (pydantic-settings took
    # null for "unset" and raised a traceback for the rest).
    api_keys: Annotated[dict[str, ApiKeySpec], NoDecode] = Field(
        default_factory=dict,
        validate_default=False,  # unset is no keys; set and empty is an error
        description='named keys with scopes, e.g. GENDETECT_API_KEYS=\'{"checkout": {"key": '
        '"...", "scopes": ["score"]}, "analysts": {"key": "...", "scopes": ["review", '
        '"feedback"]}}\' (JSON in the environment, a mapping in the YAML file)',
    )
    auth: AuthMode = Field(
        "required", description="required: every /v1 route needs a key (api_keys or api_key) "
        "and the API refuses to start without one; disabled: no key is asked for and every "
        "caller has every scope, admin included (for a local run; logged at start)",
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
    # Connection limits (serving.connections, serving.middleware): a client
    # that holds a connection without finishing its request is cut off.
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="a request's line and headers must arrive within this, "
        "counted from the connection's opening or from a later request's first byte; else 408 "
        "(or, before any byte, a silent close) and the connection is closed",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="a request body must arrive within this after its "
        "headers; else 408 and the connection is closed",
    )
    idle_timeout_seconds: float = Field(
        15.0, gt=0, le=3600, description="a kept-alive connection without a new request for "
        "this long is closed",
    )
    max_connections: int = Field(
        1000, ge=1, le=100_000, description="requests on connections beyond this many open "
        "ones are answered 503 and their connection is closed",
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

    @field_validator("api_key")
    @classmethod
    def _usable_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        problem = key_problem(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        # A key setting that is present but says nothing must not read as
        # "no keys": that used to start the API open. Messages never quote
        # the value (it holds secrets); JSON errors give line and column only.
        if value is None:
            raise ValueError("null: name at least one key, or unset it")
        if not isinstance(value, str):
            return value  # a mapping from the YAML file or an argument
        if not value.strip():
            raise ValueError("set but empty: name at least one key, or unset it")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}); expected {{\"<name>\": {{\"key\": \"...\", "
                             f"\"scopes\": [...]}}}}") from None
        if parsed is None:
            raise ValueError("null: name at least one key, or unset it")
        return parsed

    @field_validator("api_keys")
    @classmethod
    def _key_names(cls, value: dict[str, ApiKeySpec]) -> dict[str, ApiKeySpec]:
        import re

        if not value:
            raise ValueError("names no key: name at least one key, or unset it")
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

    @property
    def hash_key_source(self) -> str:
        """Where the key of `resolved_hash_key` comes from, for messages."""
        if self.hash_key is not None:
            return "GENDETECT_HASH_KEY"
        return f"the key file {self.home / 'secrets' / 'hash.key'}"

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
            make_private_dir(path.parent)  # <home> too, if this makes it
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
    except (ValidationError, FileNotFoundError, SettingsSourceError) as exc:
        raise SettingsError(describe_settings_error(exc)) from None
    _warn_of_misspelt_variables(os.environ)
    return settings


def misspelt_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, the setting it nearly names) for each GENDETECT_* variable
    that is not a setting but a near miss of one."""
    known = [f"GENDETECT_{name.upper()}" for name in Settings.model_fields]
    # Separators dropped or swapped (GENDETECT_APIKEY, GENDETECT_API-KEY) are
    # a near miss whatever the similarity ratio says.
    squashed = {_squash(name): name for name in known}
    found = []
    for name in sorted(environ):
        if not name.startswith("GENDETECT_") or name in known:
            continue
        close = squashed.get(_squash(name))
        if close is None:
            matches = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            close = matches[0] if matches else None
        if close is not None:
            found.append((name, close))
    return found


def _squash(name: str) -> str:
    return name.upper().replace("_", "").replace("-", "")


def _warn_of_misspelt_variables(environ: Mapping[str, str]) -> None:
    """Environment variables are not refused like unknown keys of the settings
    file (other GENDETECT_* variables exist: build arguments, test switches),
    but one that is a near miss of a setting is a typo whose setting silently
    keeps its default: say so once."""
    for name, close in misspelt_variables(environ):
        logging.getLogger("gendetect.config").warning(
            "%s is not a setting (did you mean %s?): ignored", name, close)


def describe_settings_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        # FileNotFoundError, or pydantic-settings' own parse error, which names
        # the field and never the value.
        return str(exc)
    where = os.environ.get("GENDETECT_CONFIG_FILE") or "environment"
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        # The variable is the top-level setting; the rest of the location is
        # inside its value (api_keys.<name>.key: GENDETECT_API_KEYS).
        variable = f"GENDETECT_{str(err['loc'][0]).upper()}" if err["loc"] else "settings"
        message = ("unknown key" if err["type"] == "extra_forbidden"
                   else err["msg"].removeprefix("Value error, "))
        problems.append(f"key '{key}' ({variable}): {message}")
    return f"settings from {where}: " + "; ".join(problems)
