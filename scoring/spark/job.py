"""Scoring on Spark: the registered pyfunc through `mlflow.pyfunc.spark_udf`
after the behaviour features computed by Spark (scoring.spark.features).

    python -m scoring.spark --data in.parquet --out scored/ [--model-uri URI]
                              [--master local[*]] [--explain flagged|all|none]
    spark-submit scoring/spark/__main__.py --data ... --out ...
    gendetect score --engine spark --data ... --out ...

The output is a Parquet folder (one file per partition, Spark's way): the
input columns, the behaviour features, and the decisions prefixed `gd_`
(explanations as list<struct>, for the flagged rows by default). Rows come
in Spark's order; the transaction id joins them back.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gendetect.config import Settings, get_settings
from gendetect.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from gendetect.schema import Schema

PREFIX = "gd_"
_DECISION = "__gd_decision"


def spark_session(
    master: str | None = None, app_name: str = "gendetect", config: dict[str, str] | None = None
) -> SparkSession:
    """A SparkSession (the active one when there is one) set up for these
    jobs: UTC session time (timestamps reach the model as UTC, as
    everywhere in gendetect) and nanosecond Parquet timestamps read as
    integers (pandas writes them; Spark has no nanosecond type)."""
    from pyspark.sql import SparkSession

    # Local workers run this interpreter (the one with gendetect's
    # dependencies), not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    spark = (builder.config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.legacy.parquet.nanosAsLong", "true").getOrCreate())
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


def score(
    df: DataFrame, model_uri: str, *, explain: str = "flagged", prefix: str = PREFIX
) -> DataFrame:
    """`df` with the pyfunc's decision columns (prefixed) added. `df` should
    carry the behaviour features (`window_features`): without them each
    Arrow batch of a partition would be scored as its own history, and the
    `batch_history_only` column says so."""
    import mlflow.pyfunc
    from mlflow.types.schema import DataType
    from pyspark.sql import functions as F

    spark = df.sparkSession
    info = mlflow.models.get_model_info(model_uri)
    specs = [c for c in info.signature.inputs.inputs if c.name in df.columns]
    inputs = [c.name for c in specs]
    times = {c.name for c in specs if c.type == DataType.datetime}
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local",
                                  params={"explain": explain})
    outputs = [c.name for c in info.signature.outputs.inputs]
    model_input = F.struct(*[_as_model_input(df, c, c in times) for c in inputs])
    scored = df.withColumn(_DECISION, udf(model_input))
    return scored.select(
        *df.columns, *[F.col(f"{_DECISION}.{name}").alias(prefix + name) for name in outputs]
    )


def _as_model_input(df: DataFrame, name: str, is_time: bool) -> object:
    """Columns as the signature types them: a nanosecond time read as an
    integer goes back to a timestamp (the model derives hour and weekday
    from it; sub-microsecond digits do not change them)."""
    from pyspark.sql import functions as F

    if is_time and dict(df.dtypes)[name] == "bigint":
        return F.timestamp_micros(F.floor(F.col(name) / 1000)).alias(name)
    return F.col(name)


def score_file_with_spark(
    data: str,
    out: str,
    model_uri: str,
    settings: Settings,
    *,
    explain: str = "flagged",
    progress: bool = False,
    master: str | None = None,
) -> int:
    """Read `data` (Parquet file or folder, or CSV with a header), compute
    the behaviour features unless it carries them, score with the
    registered model, write a Parquet folder to `out`."""
    from pyspark.sql import functions as F

    from gendetect.tracking import configure, resolve
    from scoring.spark.features import window_features

    check_paths(data, out)
    configure(settings)
    ref = resolve(model_uri, settings)
    concrete = f"models:/{ref.name}/{ref.version}"
    spark = spark_session(master)
    if not progress:
        spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    reader = spark.read
    df = (reader.option("header", True).option("inferSchema", True).csv(data)
          if data.lower().endswith(".csv") else reader.parquet(data))
    from gendetect.tracking import load_registered_bundle

    bundle, _ = load_registered_bundle(concrete, settings)
    pipeline = bundle.pipeline
    assert pipeline is not None
    check_column_types(df, bundle.schema, data)
    behaviour = pipeline.behaviour
    if behaviour is not None and not set(pipeline.window_feature_names) <= set(df.columns):
        df = window_features(df, behaviour)
    scored = score(df, concrete, explain=explain).withColumn(
        PREFIX + "model_version", F.lit(ref.version))
    scored.write.mode("overwrite").parquet(out)
    written = spark.read.parquet(out)
    counts = written.agg(F.count(F.lit(1)).alias("rows"),
                         F.sum(F.col(PREFIX + "is_fraud").cast("long")).alias("flagged")).first()
    seconds = time.perf_counter() - started
    print(f"scored {counts['rows']:,} rows with {ref.name} v{ref.version} on Spark: "
          f"{counts['flagged'] or 0:,} flagged -> {out} ({seconds:.1f} s)")
    return 0


def check_paths(data: str, out: str) -> None:
    """Before Spark starts: a local input exists, and the output (a folder
    Spark replaces) is neither the input nor around or inside it, and not a
    file or a folder of something else. Remote URIs (s3a://, hdfs://) are
    left to Spark."""
    if "://" in data or "://" in out:
        return
    source, target = Path(data).resolve(), Path(out).resolve()
    if not source.exists():
        raise InputError("file not found", source=data)
    if target == source or target in source.parents or source in target.parents:
        raise InputError("the output folder would replace the input: choose another --out",
                         source=out)
    if target.is_file():
        raise InputError("is a file; the Spark engine writes a Parquet folder", source=out)
    if target.is_dir() and any(target.iterdir()) and not (target / "_SUCCESS").exists():
        # Spark's overwrite deletes the folder first: only a finished Spark
        # output (its _SUCCESS marker) may be replaced.
        raise InputError("a folder that is not an earlier Spark output: choose another --out",
                         source=out)


_INTEGER = ("tinyint", "smallint", "int", "bigint")
_NUMBER = (*_INTEGER, "float", "double", "decimal")
# Spark type names (without precision: decimal(10,2) -> decimal) per field kind.
_SPARK_TYPES: dict[str, tuple[str, ...]] = {
    "numeric": _NUMBER, "label": (*_NUMBER, "boolean"), "boolean": (*_NUMBER, "boolean"),
    "id": _INTEGER, "entity": (*_INTEGER, "string"),
    "timestamp": ("timestamp", "timestamp_ntz", "date", "string"),
}


def check_column_types(df: DataFrame, schema: Schema, source: str) -> None:
    """The schema's columns have Spark types of their kind (values are not
    scanned: bounds and missing values are the model's input checks).
    Timestamps may be bigint in Parquet only: Spark reads pandas' nanosecond
    timestamps so (spark.sql.legacy.parquet.nanosAsLong); in a CSV file a
    column of integers is epoch numbers of unknown unit, refused as locally."""
    types = dict(df.dtypes)
    for f in schema.fields:
        kind_of = types.get(f.name)
        if kind_of is None:
            if f.required:
                raise InputError("required column is missing", field=f.name, source=source)
            continue
        allowed = _SPARK_TYPES.get(f.kind)
        if allowed is not None and f.kind == "timestamp" and not source.lower().endswith(".csv"):
            allowed = (*allowed, "bigint")
        if allowed is not None and kind_of.split("(")[0] not in allowed:
            raise InputError(f"expected {f.kind} values, found Spark type {kind_of}",
                             field=f.name, source=source)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.spark",
                                     description="Score a file on Spark with a registered model.")
    parser.add_argument("--data", required=True, help="Parquet file/folder or CSV file")
    parser.add_argument("--out", required=True, help="output Parquet folder")
    parser.add_argument("--model-uri", default=None,
                        help="registry URI (default: models:/<name>@<champion alias>)")
    parser.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    parser.add_argument("--explain", choices=("flagged", "all", "none"), default="flagged")
    args = parser.parse_args(argv)
    settings = get_settings()
    return score_file_with_spark(args.data, args.out, args.model_uri or settings.resolved_model_uri,
                                 settings, explain=args.explain, progress=sys.stderr.isatty(),
                                 master=args.master)
