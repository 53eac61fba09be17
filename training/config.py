"""The training job's configuration: `configs/default.yaml` with the user's
`--config` YAML merged over it, validated as one typed pydantic model.

Every section forbids unknown keys, so a typo (`holdout_dayz`, `alert_rat`)
is an error naming the file and the dotted key instead of a silently ignored
setting. The `model:` section is built from `DetectorParams`' own fields and
types, so a new detector parameter is configurable without touching this
file, and the detector's own checks run here too (before any data is read).

Import-light on purpose (pydantic and yaml; no torch, scikit-learn, MLflow
or Lightning): `gendetect train` validates the config before it imports the
job, so a typo is reported in a fraction of a second.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from gendetect.errors import InputError
from gendetect.params import DetectorParams, validate_params

DEFAULT_CONFIG = "default.yaml"
# Keys users put in a training config that belong elsewhere: the unknown-key
# error says where instead of only "unknown key".
_MISPLACED = {
    "windows": "window settings belong to the schema's `windows:` (training) "
    "or to the `gendetect features --config` file",
}


class ConfigError(InputError):
    """A training config that does not validate: names the file and the
    dotted key (`my.yaml: key 'model.max_epochs': input should be ...`).

    An InputError (so a GendetectError): the CLI prints it as one line and
    exits 2."""

    def __str__(self) -> str:
        where = [str(self.source)] if self.source else []
        if self.field:
            where.append(f"key '{self.field}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationConfig(_Section):
    """How the data is split in time: the last `holdout_days` are held out
    for evaluation, `delay_days` before them are dropped (label delay), and
    the first `warmup_days` are skipped while the windows fill."""

    holdout_days: Annotated[int, Field(ge=0)] = 7
    delay_days: Annotated[int, Field(ge=0)] = 7
    warmup_days: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"


class PromotionConfig(_Section):
    metric: str = "average_precision"
    min_improvement: float = 0.0
    # The quality gate's floor (training.gate): a candidate whose held-out
    # ROC AUC is below this is near chance and gets no alias.
    min_roc_auc: Annotated[float, Field(ge=0, le=1)] = 0.6

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        # Promotion compares "higher is better" evaluation metrics; a typo
        # would make every model -inf and never promote, without saying why.
        known = PROMOTION_METRICS
        if value not in known and not re.fullmatch(r"recall_at_alert_rate_scenario_\d+", value):
            raise ValueError(
                f"unknown metric {value!r}; expected one of {sorted(known)} "
                "or recall_at_alert_rate_scenario_<n>"
            )
        return value


class DriftConfig(_Section):
    # PSI at or above this marks an input (or the score) as drifted in the
    # retraining run; see gendetect.drift for the reading of the scale.
    level: Annotated[float, Field(gt=0)] = 0.2


class JobsConfig(_Section):
    # A RUNNING run whose process cannot be checked (it was started on another
    # host) is only taken for dead after this long; see training/runs.py.
    stale_run_hours: Annotated[float, Field(gt=0)] = 24.0


# The names gendetect.metrics.evaluate_scores reports, written out so that
# validating a config does not import scikit-learn (a config error is
# reported before the heavy imports); a unit test keeps the two equal.
PROMOTION_METRICS = frozenset({
    "roc_auc", "average_precision", "precision_at_alert_rate", "recall_at_alert_rate",
    "recall_at_1pct_fpr",
})


def _model_section() -> type[BaseModel]:
    """A pydantic model with one optional field per DetectorParams field, of
    the same type and default: unknown parameters and wrong types fail here
    with the key's name."""
    hints = typing.get_type_hints(DetectorParams)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(DetectorParams):
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        elif f.default is dataclasses.MISSING:
            fields[f.name] = (hints[f.name], ...)
        else:
            fields[f.name] = (hints[f.name], f.default)
    return create_model(
        "ModelConfig",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Detector parameters (gendetect.detector.DetectorParams).",
        **fields,
    )


ModelConfig = _model_section()


class TrainingConfig(_Section):
    """The whole training config (sections as in configs/default.yaml)."""

    schema_: str = Field("transactions", alias="schema")
    alert_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    evaluation: EvaluationConfig = EvaluationConfig()
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[valid-type]
    promotion: PromotionConfig = PromotionConfig()
    drift: DriftConfig = DriftConfig()
    jobs: JobsConfig = JobsConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def schema_name(self) -> str:
        return self.schema_

    def model_params(self) -> dict[str, Any]:
        """The detector parameters the config sets (default.yaml's and the
        user's), as FraudModelBundle(**params) / DetectorParams.from_dict take
        them; parameters nobody set keep DetectorParams' defaults there."""
        return self.model.model_dump(mode="json", exclude_unset=True)

    def as_dict(self) -> dict[str, Any]:
        """Plain values by section, as the YAML spells them (logged as run params)."""
        out = self.model_dump(mode="json", by_alias=True)
        out["model"] = self.model_params()
        return out


def default_config_text() -> str:
    return resources.files("training.configs").joinpath(DEFAULT_CONFIG).read_text()


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainingConfig:
    """The default config, with a user YAML file (and then `overrides`, e.g.
    command-line flags) merged over it, validated. Errors name the file that
    holds the bad key and the dotted key."""
    default_source = f"training/configs/{DEFAULT_CONFIG}"
    raw = _parse_yaml(default_config_text(), default_source)
    user: dict[str, Any] = {}
    source = default_source
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError("config file not found", source=source)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc}", source=source) from exc
        user = _parse_yaml(text, source)
        raw = _deep_merge(raw, user)
    if overrides:
        raw = _deep_merge(raw, dict(overrides))
    return validate_config(raw, source=source, user=user, default_source=default_source)


def validate_config(
    raw: Mapping[str, Any],
    *,
    source: str = "config",
    user: Mapping[str, Any] | None = None,
    default_source: str | None = None,
) -> TrainingConfig:
    """`raw` (merged) as a TrainingConfig, or a ConfigError. A bad value is
    blamed on the user's file when it holds that key, else on the default
    file (`default_source`)."""
    try:
        config = TrainingConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise _config_error(exc, raw, source, user or {}, default_source) from None
    try:
        # The detector's own cross-field checks (ensemble weights, ranges) and each model's.
        validate_params(None, config.model_params())
    except (ValueError, TypeError) as exc:
        # Its messages start with the parameter's name when there is one.
        first = str(exc).split(" ", 1)[0]
        key = f"model.{first}" if first in ModelConfig.model_fields else "model"
        blamed = source if default_source is None or _has_key(user or {}, key) else default_source
        raise ConfigError(str(exc), source=blamed, field=key) from None
    return config


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # One line: the parser's own message spans several, with context.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        message = " ".join(f"{where}{problem}".split())
        raise ConfigError(f"not valid YAML: {message}", source=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings", source=source)
    return data


def _config_error(
    exc: ValidationError,
    raw: Mapping[str, Any],
    source: str,
    user: Mapping[str, Any],
    default_source: str | None,
) -> ConfigError:
    # key -> messages; a union type reports one error per member under the
    # same key, which read best as alternatives.
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        key = _dotted_key(error["loc"], raw)
        if error["type"] == "extra_forbidden":
            hint = _MISPLACED.get(key)
            message = f"unknown key; {hint}" if hint else "unknown key"
        elif error["type"] == "value_error":
            # Our own validators' messages, without pydantic's "Value error, ".
            message = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            message = error["msg"][:1].lower() + error["msg"][1:]
        if message not in problems.setdefault(key, []):
            problems[key].append(message)
    (key, messages), *others = problems.items()
    message = " or ".join(messages)
    if others:
        message += " (also " + "; ".join(f"'{k}': {' or '.join(m)}" for k, m in others) + ")"
    # The default file is valid on its own: a bad key comes from the user's
    # file when it holds that key.
    blamed = source if default_source is None or _has_key(user, key) else default_source
    return ConfigError(message, source=blamed, field=key)


def _dotted_key(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """The part of pydantic's error location that names keys of the config
    (`model.hidden[1]`), without pydantic's union-member tags."""
    parts: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            parts.append(str(part))
            node = node[part]
        elif parts and isinstance(node, list | tuple) and isinstance(part, int):
            parts[-1] += f"[{part}]"
            node = node[part]
        else:
            break
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _has_key(data: Mapping[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in re.sub(r"\[\d+\]", "", dotted).split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
