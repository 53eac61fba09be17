"""Spark engine for data beyond one machine (the `spark` extra: pyspark, Java 17).

- `window_features(df, config)` / `aggregate_features(df, behaviour)`: the
  declared behaviour features, computed per key by the one aggregate engine
  (gendetect.features.aggregate_engine) in `applyInPandas`, equal to the
  offline engine to rounding.
- `score(df, model_uri)`: the registered pyfunc through
  `mlflow.pyfunc.spark_udf`, with the window features passed as inputs, so
  that the scores are those of `gendetect score` and the API.
- `python -m scoring.spark` / `gendetect score --engine spark`: both on a
  file (see scoring.spark.job).

Importing this package does not import pyspark; its functions do.
"""

from __future__ import annotations

from scoring.spark.features import aggregate_features, window_features
from scoring.spark.job import score, spark_session

__all__ = ["aggregate_features", "score", "spark_session", "window_features"]
