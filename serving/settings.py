"""The API's settings: the core's (gendetect.config.Settings: home, MLflow,
the hash key, the database) and what only the API reads: keys and scopes,
bind address, limits, the audit, the online state, drift, the registry
poll. Same prefix (GENDETECT_), same file (GENDETECT_CONFIG_FILE), same
loader: `get_settings(ServingSettings)`. The `serve` command names this
class (serving.commands), which is how the core knows these names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from gendetect.config import Settings
from gendetect.drift import DEFAULT_LEVEL

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


class ServingSettings(Settings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0: any free port")
    torch_threads: int = Field(1, ge=1, description="intra-op threads per API process")
    workers: int = Field(
        1, ge=1, le=64, description="API worker processes on the one port (more than one needs "
        "the Redis state store and a shared database: serving.workers)",
    )
    max_batch_size: int = Field(1000, ge=1)
    state_store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    state_snapshot_seconds: float = Field(
        3600.0, gt=0, description="memory store: the longest time between snapshots (one is "
        "also written when the journal reaches state_snapshot_journal_mb, and at shutdown)",
    )
    state_snapshot_journal_mb: float = Field(
        64.0, gt=0, description="memory store: a snapshot is written once the journal since "
        "the last one holds this many MiB (bounds the replay at start); rarer snapshots keep "
        "their pause out of the request tail",
    )
    state_journal_fsync_seconds: float = Field(
        1.0, gt=0, le=60,
        description="memory store: at most this much window history is lost on a crash "
        "(journal group-fsync period); labels are fsynced before they are acknowledged",
    )
    state_timeout_seconds: float = Field(
        0.2, gt=0, le=30, description="a state-store call that takes longer fails with 503"
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
    audit_enabled: bool = Field(
        True, description="store every decision the API returns before answering"
    )
    audit_writer: Literal["process", "thread"] = Field(
        "process", description="process: the audit commits run in a writer process of their "
        "own, out of the serving process' interpreter lock (the tail); thread: in a thread of "
        "the serving process (an in-memory SQLite database always uses the thread)",
    )
    audit_queue_max: int = Field(
        20_000, ge=1, description="decisions waiting for their commit beyond this are refused "
        "with 503 at once (back-pressure while the database is slow)",
    )
    micro_batch_max: int = Field(
        64, ge=1, description="single-record requests that reach the model in the same turn "
        "of the event loop are scored in one block of at most this many (serving.microbatch); "
        "1 scores every request alone, as one-at-a-time requests are scored (in a block a "
        "record's score can differ in the last float32 bit of a network error)",
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
    drift_level: float = Field(
        DEFAULT_LEVEL, gt=0, description="PSI at which /metrics marks an input as drifted"
    )
    drift_window_rows: int = Field(
        5000, ge=10, description="how many recent records /metrics compares with the training "
        "reference (about a day of traffic)",
    )
    log_level: str = "INFO"
    otel_enabled: bool = Field(
        False, description="OpenTelemetry traces: a span per request (continuing a caller's "
        "traceparent) with child spans for features, model and audit, sent to the OTLP "
        "endpoint of OTEL_EXPORTER_OTLP_ENDPOINT; needs the otel extra")

    @property
    def state_snapshot_path(self) -> Path:
        return self.home / "state" / "features.snapshot"

    @field_validator("drift_level", "drift_window_rows", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # These two were read from the environment by hand before, where an
        # empty variable meant the default; kept so.
        if value == "":
            return cls.model_fields[str(info.field_name)].default
        return value

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
        if not value:
            raise ValueError("names no key: name at least one key, or unset it")
        for name in value:
            if not re.match(KEY_NAME_PATTERN, name):
                raise ValueError(f"key name {name!r}: letters, digits, '_', '.', '-' (1-64)")
        secrets_seen = [spec.key.get_secret_value() for spec in value.values()]
        if len(set(secrets_seen)) != len(secrets_seen):
            raise ValueError("two names share one key: their scopes would be ambiguous")
        return value
