"""The core's settings, read from GENDETECT_* environment variables and an
optional YAML file (GENDETECT_CONFIG_FILE), with embedded defaults so that a
first run needs no configuration: a local folder `.gendetect/` holds the
SQLite-backed MLflow store, artifacts and the online feature state.

`Settings` holds what the core and the jobs read (home, MLflow, the hash
key, the database). A layer with settings of its own extends it (the API's:
serving.settings.ServingSettings) and names the class on its command
(gendetect.cli.Command.settings): one prefix, one file, one loader
(`get_settings`), and every layer's names known to each, so that a job
reading a file that also configures the API does not refuse the API's keys,
and a near miss is judged against every setting.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import secrets
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SettingsSourceError

from gendetect.errors import GendetectError
from gendetect.private_files import make_private_dir


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
            sources.append(_LayerYamlSource(settings_cls, yaml_file=path))
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
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the audit/verdict database; default a SQLite "
        "file <home>/gendetect.db; postgresql://... uses psycopg (the postgres extra)"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as text, or one JSON object per line (time, level, "
        "logger, message, request_id) for a log pipeline",
    )
    database_timeout_seconds: float = Field(
        2.0, gt=0, le=60,
        description="the longest a request waits on the database (audit commit, connection, "
        "lock); past it scoring answers 503 audit_unavailable",
    )

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

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'gendetect.db').resolve()}"

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


S = TypeVar("S", bound=Settings)


@cache
def get_settings(cls: type[S] = Settings) -> S:  # type: ignore[assignment]
    """The settings of `cls` (the core's, or a layer's class extending
    them), read once per process; errors as one SettingsError line."""
    try:
        settings = cls()
    except (ValidationError, FileNotFoundError, SettingsSourceError) as exc:
        raise SettingsError(describe_settings_error(exc)) from None
    _warn_of_misspelt_variables(os.environ)
    return settings


@lru_cache(maxsize=1)
def _layer_classes() -> tuple[type[Settings], ...]:
    """The settings classes that the layers above the core name on their
    commands (loaded through the `gendetect.commands` entry points, so that
    the core never imports those layers)."""
    from gendetect.cli import registered_commands

    found: list[type[Settings]] = []
    for command in registered_commands():
        if command.settings:
            module, name = command.settings.split(":")
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def setting_names() -> frozenset[str]:
    """Every setting's field name: the core's and each layer's."""
    names = set(Settings.model_fields)
    for cls in _layer_classes():
        names.update(cls.model_fields)
    return frozenset(names)


class _LayerYamlSource(YamlConfigSettingsSource):
    """The YAML file, less the keys that are another layer's settings: one
    file configures the jobs and the API, so a job takes the API's keys for
    what they are. Any other key still reaches the model, where an unknown
    one is an error."""

    def __init__(self, settings_cls: type[BaseSettings], yaml_file: Path | str) -> None:
        # Set before the base class reads the file (its __init__ does).
        self._own = set(settings_cls.model_fields)
        super().__init__(settings_cls, yaml_file=yaml_file)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        if not isinstance(data, dict):
            return data  # not a mapping: pydantic-settings says so
        foreign = setting_names() - self._own
        return {key: value for key, value in data.items() if key not in foreign}


def misspelt_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, the setting it nearly names) for each GENDETECT_* variable
    that is not a setting but a near miss of one."""
    known = sorted(f"GENDETECT_{name.upper()}" for name in setting_names())
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
