"""The input contract: which fields a record has, their kinds and ranges, which
are personal data, and which become model features.

One YAML file per data source drives three things, so they cannot drift apart:
validation of files (errors name the file and column), the API's request
models (errors are HTTP 422 naming the field), and the feature pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from gendetect.aggregates import AggregateDeclaration
from gendetect.errors import InputError

FieldKind = Literal["numeric", "boolean", "categorical", "timestamp", "entity", "id", "label"]
_KINDS: frozenset[str] = frozenset(FieldKind.__args__)  # type: ignore[attr-defined]
DERIVED_OPS: frozenset[str] = frozenset(
    {"log1p", "hour_sin", "hour_cos", "weekend", "night", "log_ratio", "ratio"}
)
BUILTIN_SCHEMAS = ("transactions", "numeric", "rich")

# Bounds every record is held to, so that nothing the state stores or the
# model see can overflow: ids fit a signed 64-bit integer, string ids and
# categories have a bounded length, and timestamps start no earlier than
# `DEFAULT_NOT_BEFORE` (the nanosecond clocks of pandas and the state stores
# end in 1677 and 2262; no card transaction predates 1970). The upper bound
# on timestamps is the server clock plus a skew (a setting), checked by the API.
INT64_MAX = 2**63 - 1
DEFAULT_MAX_LENGTH = 64
DEFAULT_NOT_BEFORE = "1970-01-01T00:00:00"


# Kinds whose values may be missing when a field says `nullable: true`. Ids
# and timestamps key the audit and the windows: a record without them cannot
# be placed, so they never are. An entity may have gaps (a device id the
# channel does not report): a record without the key is in no window of the
# aggregate groups it keys, and those features are gaps (gendetect.aggregates).
NULLABLE_KINDS: frozenset[str] = frozenset({"numeric", "boolean", "categorical", "entity"})
# Categorical fields without declared `categories` learn their levels from the
# training data (gendetect.features.categorical): at most this many, each seen
# at least this often; the rest share one "other" level.
DEFAULT_MAX_LEVELS = 20
DEFAULT_MIN_LEVEL_COUNT = 10


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record.

    `required` is about presence: a required field's column must be in every
    file and its key in every record; an optional one may be left out.
    `nullable` is about values: a nullable field may hold gaps (null, NaN, an
    empty cell), and an optional nullable field that is left out is a gap in
    every row. A model feature must have a value or be nullable, so an
    optional field that is a feature (or a derived feature's source) must be
    nullable: the schema refuses it otherwise, at load. Gaps never count as
    fraud or as normal by themselves (gendetect.features.missing)."""

    name: str
    kind: FieldKind
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    pii: bool = False
    protected: bool = False
    # Numeric/boolean/categorical fields are model inputs unless feature: false.
    feature: bool = True
    description: str = ""
    # String ids and free categories: at most this many characters.
    max_length: int | None = None
    # Timestamps: the earliest accepted (ISO 8601, naive = UTC).
    not_before: str | None = None
    # Categorical features without `categories`: how many levels to learn
    # from training data, and how often a level must occur to get its own
    # column (None: DEFAULT_MAX_LEVELS, DEFAULT_MIN_LEVEL_COUNT).
    max_levels: int | None = None
    min_level_count: int | None = None

    @property
    def level_limits(self) -> tuple[int, int]:
        """(max levels, min count) for learned categorical levels."""
        return (DEFAULT_MAX_LEVELS if self.max_levels is None else self.max_levels,
                DEFAULT_MIN_LEVEL_COUNT if self.min_level_count is None else self.min_level_count)

    @property
    def length_limit(self) -> int:
        return self.max_length if self.max_length is not None else DEFAULT_MAX_LENGTH

    @property
    def earliest(self) -> pd.Timestamp:
        return _utc(self.not_before or DEFAULT_NOT_BEFORE)

    @property
    def is_feature(self) -> bool:
        # A protected attribute (age, sex, ...) is never a model input, whatever
        # `feature` says: it is read only to report group rates (fairness).
        return (self.feature and not self.protected
                and self.kind in ("numeric", "boolean", "categorical"))


@dataclass(frozen=True)
class DerivedSpec:
    name: str
    op: str
    source: str
    # Second operand of two-column ops (log_ratio, ratio): a field or a window feature.
    by: str | None = None


@dataclass(frozen=True)
class Schema:
    name: str
    fields: tuple[FieldSpec, ...]
    derived: tuple[DerivedSpec, ...] = ()
    windows: dict[str, Any] | None = None
    # Declared behaviour features (gendetect.features.aggregates).
    aggregates: AggregateDeclaration | None = None
    extra_numeric: bool = False
    version: int = 1
    # Explanation reasons: (reason name, feature names or patterns); see
    # gendetect.reasons.
    reasons: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.name!r}: duplicate field names")
        for f in self.fields:
            if f.kind not in _KINDS:
                raise ValueError(
                    f"schema {self.name!r}: field {f.name!r} has unknown kind {f.kind}"
                )
            if f.max_length is not None and not 1 <= f.max_length <= 4096:
                raise ValueError(f"schema {self.name!r}: field {f.name!r}: max_length 1..4096")
            if f.not_before is not None:
                try:
                    _utc(f.not_before)
                except (ValueError, TypeError) as exc:
                    raise ValueError(
                        f"schema {self.name!r}: field {f.name!r}: not_before: {exc}"
                    ) from None
        for d in self.derived:
            if d.op not in DERIVED_OPS:
                raise ValueError(f"schema {self.name!r}: derived {d.name!r} has unknown op {d.op}")
            if d.source not in names:
                raise ValueError(f"schema {self.name!r}: derived {d.name!r} needs {d.source!r}")
        sources = {d.source for d in self.derived} | {d.by for d in self.derived if d.by}
        for f in self.fields:
            _check_values_rule(self.name, f, f.name in sources)
        self._by_name.update({f.name: f for f in self.fields})

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> FieldSpec:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @cached_property
    def feature_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.is_feature]

    @property
    def label_field(self) -> str | None:
        return next((f.name for f in self.fields if f.kind == "label"), None)

    @property
    def pii_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.pii]

    @cached_property
    def input_fields(self) -> list[FieldSpec]:
        """Fields a record may carry besides the label (which arrives separately)."""
        return [f for f in self.fields if f.kind != "label"]

    @cached_property
    def request_fields(self) -> list[FieldSpec]:
        """The input fields scoring reads: what an API client sends (and what
        the API documents). The others are `file_only_fields`."""
        file_only = set(self.file_only_fields)
        return [f for f in self.input_fields if f.name not in file_only]

    @cached_property
    def file_only_fields(self) -> tuple[str, ...]:
        """Input fields that only data files carry, for evaluation: protected
        attributes (read for the fairness report, never by the model) and
        fields that are not features and that no derived feature or
        aggregate reads (the simulator's `fraud_scenario`). The legacy
        `windows:` settings may read any column: with them, only protected
        fields are file-only."""
        read = {d.source for d in self.derived} | {d.by for d in self.derived if d.by}
        if self.aggregates is not None:
            for g in self.aggregates.groups:
                read.update((*g.key, *g.value_columns, *g.distinct_columns))
        return tuple(
            f.name for f in self.input_fields
            if f.protected or (self.windows is None and not f.feature and f.name not in read
                               and f.kind in ("numeric", "boolean", "categorical")))

    # ------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        fields = []
        for item in raw.get("fields", []):
            item = dict(item)
            if item.get("categories") is not None:
                item["categories"] = tuple(str(c) for c in item["categories"])
            fields.append(FieldSpec(**item))
        derived = tuple(DerivedSpec(**d) for d in raw.get("derived", []) or [])
        aggregates = AggregateDeclaration.from_schema(raw, {f.name: f.kind for f in fields})
        return cls(
            name=str(raw["name"]),
            version=int(raw.get("version", 1)),
            fields=tuple(fields),
            derived=derived,
            windows=dict(raw["windows"]) if raw.get("windows") else None,
            aggregates=aggregates,
            extra_numeric=bool(raw.get("extra_numeric", False)),
            reasons=_parse_reasons(raw.get("reasons")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        fields = []
        for f in self.fields:
            d = {k: v for k, v in asdict(f).items() if v not in (None, "")}
            if not f.nullable:
                # Written only when set: schemas (and bundles) from before
                # nullable fields read and write as they did.
                d.pop("nullable")
            if f.categories is not None:
                d["categories"] = list(f.categories)
            fields.append(d)
        out["fields"] = fields
        if self.derived:
            out["derived"] = [{k: v for k, v in asdict(d).items() if v is not None}
                              for d in self.derived]
        if self.windows:
            out["windows"] = self.windows
        if self.aggregates is not None:
            out["aggregates"] = self.aggregates.to_list()
        if self.extra_numeric:
            out["extra_numeric"] = True
        if self.reasons:
            out["reasons"] = {name: list(patterns) for name, patterns in self.reasons}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def resolve_columns(self, columns: list[str]) -> Schema:
        """Fix an open (extra_numeric) schema to concrete columns: every column
        that is not declared becomes a required numeric feature."""
        if not self.extra_numeric:
            return self
        extra = tuple(FieldSpec(name=str(c), kind="numeric") for c in columns if c not in self)
        return replace(self, fields=extra + self.fields, extra_numeric=False, _by_name={})

    # -------------------------------------------------------------- validation
    def validate_frame(self, df: pd.DataFrame, *, source: str | None = None) -> None:
        """Raise InputError naming the first bad column (and the file, if given)."""
        for f in self.fields:
            if f.name not in df.columns:
                if f.required:
                    raise InputError("required column is missing", field=f.name, source=source)
                continue
            validate_column(f, df[f.name], source)

    def validate_record(self, record: dict[str, Any]) -> None:
        """Validation for one record as a dict (the Python API's path; the REST
        API validates with request models generated from the same schema)."""
        for f in self.input_fields:
            if f.name not in record:
                if f.required:
                    raise InputError("field required", field=f.name)
                continue
            if record[f.name] is None:
                if f.required and not f.nullable:
                    raise InputError("field required (null is allowed only in nullable "
                                     "fields)", field=f.name)
                continue
            validate_column(f, pd.Series([record[f.name]]), None)


def _check_values_rule(schema: str, f: FieldSpec, derived_source: bool) -> None:
    """The presence/gap rules of FieldSpec, and the level settings."""
    where = f"schema {schema!r}: field {f.name!r}"
    if f.nullable and f.kind not in NULLABLE_KINDS:
        raise ValueError(f"{where}: kind {f.kind} cannot be nullable (only "
                         f"{sorted(NULLABLE_KINDS)} fields can)")
    if not f.required and not f.nullable and (f.is_feature or derived_source):
        raise ValueError(
            f"{where} is optional (required: false) and a model input, so a record without "
            "it would have no value to score: declare it `nullable: true` (a left-out field "
            "is then a gap the model allows for) or make it required")
    for key in ("max_levels", "min_level_count"):
        value = getattr(f, key)
        if value is None:
            continue
        if f.kind != "categorical" or f.categories is not None:
            raise ValueError(f"{where}: {key} applies to categorical fields without "
                             "declared categories (their levels are learned)")
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer")
    if f.pii and f.is_feature and f.kind == "categorical" and f.categories is None:
        # Learned levels are stored in the model: personal data would be at rest.
        raise ValueError(f"{where}: personal data (pii) cannot be a categorical model "
                         "input with learned levels (they are stored with the model); "
                         "declare its categories or set feature: false")


def _parse_reasons(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`reasons:` is a mapping of reason name -> list of feature names/patterns."""
    if not raw:
        return ()
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in raw.values()
    ):
        raise ValueError("schema 'reasons' must map each reason name to a list of feature names")
    return tuple((str(name), tuple(patterns)) for name, patterns in raw.items())


def validate_column(f: FieldSpec, col: pd.Series, source: str | None = None) -> None:
    """Raise InputError naming `f` (and the file, if given) when `col` does
    not hold values of its kind and range."""
    def fail(message: str) -> None:
        raise InputError(message, field=f.name, source=source)

    if f.kind in ("entity", "id", "timestamp") and not f.nullable and col.isna().any():
        fail(f"{int(col.isna().sum())} missing value(s)")
    if f.kind == "timestamp":
        times = col
        if not pd.api.types.is_datetime64_any_dtype(col):
            try:
                times = pd.to_datetime(col, utc=True, format="ISO8601")
            except (ValueError, TypeError, OverflowError) as exc:
                fail(f"not a timestamp ({exc})")
        if len(times):
            first = times.min()
            first = first.tz_localize("UTC") if first.tzinfo is None else first
            if first < f.earliest:
                fail(f"timestamp {first.isoformat()} before the earliest accepted "
                     f"{f.earliest.isoformat()}")
        return
    if f.kind == "id" and len(col):
        if not pd.api.types.is_integer_dtype(col):
            fail(f"expected integer ids, found {col.dtype}")
        if col.min() < 0 or col.max() > INT64_MAX:
            fail(f"ids must be within 0..{INT64_MAX}")
        # One id, one transaction: decisions, labels and the window engine's
        # tie order are keyed by it (the API answers a repeat with 409).
        repeated = col.duplicated()
        if repeated.any():
            fail(f"{int(repeated.sum())} repeated id(s) (first {col[repeated].iloc[0]} "
                 f"at row {int(np.argmax(repeated.to_numpy()))})")
    if f.kind == "entity" and len(col):
        # Integers or text, as in the API. A float column is accepted when
        # every value is whole (CSV readers turn an integer column with gaps
        # into floats); 1.5 or True is a wrong column, not an id.
        if pd.api.types.is_bool_dtype(col):
            fail("expected integer or text ids, found booleans")
        if pd.api.types.is_float_dtype(col):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            fractional = values != np.round(values)
            if fractional.any():
                fail(f"expected integer or text ids, found {values[fractional][0]:g} "
                     f"at row {int(np.argmax(fractional))}")
    free_text = f.kind == "entity" or (f.kind == "categorical" and f.categories is None)
    if free_text and len(col) and (col.dtype == object or pd.api.types.is_string_dtype(col)):
        longest = int(col.astype(str).str.len().max())
        if longest > f.length_limit:
            fail(f"values longer than {f.length_limit} characters")
    if f.kind == "boolean" and col.dtype == object:
        # True/False with gaps: a CSV reader leaves such a column as objects.
        try:
            col = col.astype("boolean")
        except (TypeError, ValueError):
            fail("expected booleans (true/false or 0/1)")
    if f.kind in ("numeric", "label", "boolean"):
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            fail(f"expected numbers, found {col.dtype}")
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if f.nullable:
            # Gaps are allowed; an infinity is not a gap but a broken value.
            infinite = np.isinf(values)
            if infinite.any():
                fail(f"{int(infinite.sum())} infinite value(s) (first at row "
                     f"{int(np.argmax(infinite))}); gaps are allowed (the field is nullable)")
        elif f.kind != "label" and bad.any():
            first = int(np.argmax(bad))
            hint = ("; declare the field nullable: true if gaps are expected"
                    if np.isnan(values).any() else "")
            fail(f"{int(bad.sum())} missing, NaN or infinite value(s) (first at row {first})"
                 + hint)
        finite = values[~bad]
        if f.kind == "label" and (np.isinf(values).any() or not np.isin(finite, (0, 1, -1)).all()):
            # Labels are 1 (confirmed fraud), 0 (confirmed genuine) or
            # -1 / missing (unknown): anything else is a mislabelled file,
            # never silently "unknown".
            found = sorted({float(v) for v in values[~np.isnan(values)]} - {0.0, 1.0, -1.0})
            fail(
                "labels must be 0 or 1 (genuine or confirmed fraud), -1 or missing (unknown); "
                f"found {found[:5]}"
            )
        if f.kind == "boolean" and finite.size and not np.isin(finite, (0, 1)).all():
            fail("values must be 0 or 1")
        if f.min is not None and finite.size and finite.min() < f.min:
            fail(f"value {finite.min()} below the minimum {f.min}")
        if f.max is not None and finite.size and finite.max() > f.max:
            fail(f"value {finite.max()} above the maximum {f.max}")
    if f.kind == "categorical" and f.is_feature and not f.nullable and col.isna().any():
        # A feature needs a value: an unnoticed gap would read as a level.
        fail(f"{int(col.isna().sum())} missing value(s) (first at row "
             f"{int(np.argmax(col.isna().to_numpy()))}); declare the field nullable: true "
             "if gaps are expected")
    if f.kind == "categorical" and f.categories is not None:
        unknown = set(col.dropna().astype(str)) - set(f.categories)
        if unknown:
            fail(f"unknown categories {sorted(unknown)[:5]}; allowed: {list(f.categories)}")


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def load_schema(name_or_path: str | Path) -> Schema:
    """A built-in schema by name (`transactions`, `numeric`) or a YAML file."""
    text: str
    if str(name_or_path) in BUILTIN_SCHEMAS:
        text = resources.files("gendetect.schemas").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError("schema file not found", source=str(path))
        text = path.read_text()
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or "name" not in raw:
        raise InputError("not a schema (needs 'name' and 'fields')", source=str(name_or_path))
    try:
        return Schema.from_dict(raw)
    except InputError as exc:
        # A declaration error keeps the key it names (aggregates[0].key).
        raise InputError(f"invalid schema: {exc.message}", field=exc.field,
                         source=str(name_or_path)) from exc
    except (TypeError, ValueError) as exc:
        # A hand-written schema file: say which file, without a traceback.
        raise InputError(f"invalid schema: {exc}", source=str(name_or_path)) from exc
