"""Behaviour window features with Spark's window functions.

The offline engine's definitions (gendetect.features.windows), written as
range frames over the event time in integer nanoseconds:
- customer, window w: rows of the customer with time in (t - w, t]:
  `rangeBetween(-(w - 1 ns), 0)`; among rows at the same timestamp only
  those up to the current one in transaction id order count (the engine's
  tie rule), so the peers after it (a frame over (customer, time) ordered by
  id) are subtracted from the range's count and sum.
- terminal, window w, delay d: rows with time in (t - d - w, t - d]:
  `rangeBetween(-(d + w) + 1 ns, -d)`; risk = frauds / count, 0 when empty.
  The window ends before t, so ties do not matter (for d > 0; with d = 0 the
  customer rule applies).

Integer nanoseconds keep the bounds exact (a timestamp column is converted
from microseconds, Spark's resolution; Parquet files written by pandas hold
nanoseconds, read as such with `spark.sql.legacy.parquet.nanosAsLong`, which
`spark_session` sets). Without an integer id column the tie order is
`monotonically_increasing_id()`, the file order when it is read in order,
as the engine uses the row position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gendetect.features.windows import WindowConfig
from gendetect.timestamps import days_to_ns

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

TIME_NS = "__gd_time_ns"
_ORDER = "__gd_order"
_LABEL = "__gd_label"


def time_ns_column(df: DataFrame, name: str) -> Column:
    """The column `name` as integer nanoseconds since the epoch (UTC)."""
    from pyspark.sql import functions as F

    kind = dict(df.dtypes)[name]
    if kind in ("bigint", "int"):
        return F.col(name).cast("long")
    if kind.startswith("timestamp"):
        return F.unix_micros(F.col(name).cast("timestamp")) * F.lit(1000)
    return F.unix_micros(F.to_timestamp(F.col(name))) * F.lit(1000)


def window_features(df: DataFrame, config: WindowConfig | None = None) -> DataFrame:
    """`df` with the behaviour feature columns (double) added, named as the
    engine names them. Row order is Spark's: join or sort by the id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    config = config or WindowConfig()
    for name in (config.time_col, config.customer_col, config.terminal_col, config.amount_col):
        if name not in df.columns:
            raise ValueError(f"column {name!r} is required for behaviour features")
    id_kind = dict(df.dtypes).get(config.id_col, "")
    order = (
        F.col(config.id_col).cast("long")
        if id_kind in ("bigint", "int", "smallint")
        else F.monotonically_increasing_id()
    )
    label = (
        F.coalesce(F.col(config.label_col).cast("double"), F.lit(0.0))
        if config.label_col in df.columns
        else F.lit(0.0)
    )
    work = (
        df.withColumn(TIME_NS, time_ns_column(df, config.time_col))
        .withColumn(_ORDER, order)
        .withColumn(_LABEL, label)
    )
    amount = F.col(config.amount_col).cast("double")
    names = config.feature_names

    def later_peers(entity: str, value: Column) -> tuple[Column, Column]:
        """Count and sum over the rows of the same entity and timestamp after
        this one in id order (the engine's windows end at the current row)."""
        peers = (
            Window.partitionBy(entity, TIME_NS)
            .orderBy(F.col(_ORDER).desc())
            .rowsBetween(Window.unboundedPreceding, -1)
        )
        return (F.count(F.lit(1)).over(peers), F.coalesce(F.sum(value).over(peers), F.lit(0.0)))

    by_customer = Window.partitionBy(config.customer_col).orderBy(TIME_NS)
    later_n, later_sum = later_peers(config.customer_col, amount)
    columns: dict[str, Column] = {}
    for j, w in enumerate(config.customer_windows_days):
        frame = by_customer.rangeBetween(-(days_to_ns(w) - 1), 0)
        nb = F.count(F.lit(1)).over(frame) - later_n
        total = F.sum(amount).over(frame) - later_sum
        columns[names[2 * j]] = nb.cast("double")
        columns[names[2 * j + 1]] = total / nb
    delay = days_to_ns(config.delay_days)
    by_terminal = Window.partitionBy(config.terminal_col).orderBy(TIME_NS)
    t_later_n, t_later_sum = later_peers(config.terminal_col, F.col(_LABEL))
    offset = 2 * len(config.customer_windows_days)
    for j, w in enumerate(config.terminal_windows_days):
        frame = by_terminal.rangeBetween(-(delay + days_to_ns(w)) + 1, -delay)
        nb = F.count(F.lit(1)).over(frame)
        frauds = F.coalesce(F.sum(F.col(_LABEL)).over(frame), F.lit(0.0))
        if delay == 0:
            nb, frauds = nb - t_later_n, frauds - t_later_sum
        columns[names[offset + 2 * j]] = nb.cast("double")
        columns[names[offset + 2 * j + 1]] = F.when(nb > 0, frauds / nb).otherwise(F.lit(0.0))
    kept = [c for c in df.columns if c not in columns]
    return work.select(*kept, *[columns[n].alias(n) for n in names])
