"""Behaviour features on Spark, by the one engine.

Every declared aggregate (gendetect.features.aggregates) is computed by
gendetect.features.aggregate_engine.group_features, the function the
offline engine and the online stores use: per aggregate group, the rows are
grouped by the group's key (`groupBy(key).applyInPandas`) and the engine
runs over each key's events, which are all the history a key's features
need. Each group's features join back to the rows by the row key; rows
whose key is missing (null) get NaN, as offline. Values equal the offline
engine's to rounding (1e-9; the engine's sums do not depend on where a
key's history starts).

Times are integer nanoseconds (a timestamp column is converted from
microseconds, Spark's resolution; Parquet files written by pandas hold
nanoseconds, read as such with `spark.sql.legacy.parquet.nanosAsLong`,
which `spark_session` sets). The tie order is the integer id column, else
`monotonically_increasing_id()`, the file order when it is read in order,
as the engine uses the row position (the ids are materialized once, so
that every group sees the same).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gendetect.features.aggregate_engine import code_values, group_features
from gendetect.features.aggregates import AggregateGroup
from gendetect.features.behaviour import Behaviour
from gendetect.features.windows import WindowConfig

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

TIME_NS = "__gd_time_ns"
_ORDER = "__gd_order"
_LABEL = "__gd_label"
_ROW = "__gd_row"


def time_ns_column(df: DataFrame, name: str) -> Column:
    """The column `name` as integer nanoseconds since the epoch (UTC)."""
    from pyspark.sql import functions as F

    kind = dict(df.dtypes)[name]
    if kind in ("bigint", "int"):
        return F.col(name).cast("long")
    if kind.startswith("timestamp"):
        return F.unix_micros(F.col(name).cast("timestamp")) * F.lit(1000)
    return F.unix_micros(F.to_timestamp(F.col(name))) * F.lit(1000)


def window_features(df: DataFrame, config: WindowConfig | Behaviour | None = None) -> DataFrame:
    """`df` with the behaviour feature columns (double) added, named as the
    engine names them: a legacy WindowConfig (default: the handbook's) or a
    schema's declaration (`Behaviour.from_schema`). Row order is Spark's:
    join or sort by the id."""
    behaviour = config if isinstance(config, Behaviour) else Behaviour.from_window_config(
        config or WindowConfig())
    return aggregate_features(df, behaviour)


def aggregate_features(df: DataFrame, behaviour: Behaviour) -> DataFrame:
    """`df` with every declared feature (double) added."""
    from pyspark.sql import functions as F

    for name in (behaviour.time_col, *behaviour.input_columns):
        if name not in df.columns:
            raise ValueError(f"column {name!r} is required for behaviour features")
    types = dict(df.dtypes)
    has_id = types.get(behaviour.id_col or "", "") in ("bigint", "int", "smallint")
    label = (F.col(behaviour.label_col).cast("double")
             if behaviour.label_col and behaviour.label_col in df.columns else F.lit(0.0))
    names = set(behaviour.feature_names)
    base = df.drop(*[c for c in df.columns if c in names])
    row = F.col(behaviour.id_col).cast("long") if has_id else F.monotonically_increasing_id()
    work = (base.withColumn(_ROW, row)
            .withColumn(TIME_NS, time_ns_column(df, behaviour.time_col))
            .withColumn(_ORDER, F.col(_ROW))
            .withColumn(_LABEL, label))
    if not has_id:
        # Materialize the generated ids once: every group must see the same.
        work = work.localCheckpoint(eager=True)
    result = work
    for group in behaviour.declaration.groups:
        columns = list(dict.fromkeys([_ROW, TIME_NS, _ORDER, _LABEL, *group.key,
                                      *group.value_columns, *group.distinct_columns]))
        schema = ", ".join([f"{_ROW} long", *[f"`{n}` double" for n in group.feature_names]])
        feats = (work.select(*columns).groupBy(*group.key)
                 .applyInPandas(partial(_one_key, group), schema=schema))
        result = result.join(feats, on=_ROW, how="left")
    return result.select(*base.columns, *behaviour.feature_names)


def _one_key(group: AggregateGroup, events: pd.DataFrame) -> pd.DataFrame:
    """The engine over one key's events (all its history in the file)."""
    missing = events[list(group.key)].isna().any(axis=1).to_numpy()
    key_codes = np.where(missing, -1, 0).astype(np.int64)
    values = {c: pd.to_numeric(events[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
              for c in group.value_columns}
    distinct = {c: code_values(events[c].to_numpy()) for c in group.distinct_columns}
    label = events[_LABEL].to_numpy(np.float64, na_value=np.nan) if group.needs_label else None
    out = group_features(group, key_codes, events[TIME_NS].to_numpy(np.int64),
                         events[_ORDER].to_numpy(np.int64), values, distinct, label)
    return pd.DataFrame({_ROW: events[_ROW].to_numpy(np.int64), **out})
