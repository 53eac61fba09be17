"""The bundle as an MLflow pyfunc model, so `mlflow models serve`, Spark UDFs
and `mlflow.pyfunc.load_model` can score with it. The API loads the bundle
directly instead (no per-request DataFrame), from the same artifact.

One meaning on every surface: the input may carry the behaviour (window)
feature columns, e.g. from `gendetect features` or scoring.spark over the
full history; they are then used as given, and every surface returns the
scores of `gendetect score` and the API. Without them the features are
computed from the rows of the batch itself, and the output column
`batch_history_only` says so: right when a batch holds the whole history of
its customers and terminals (a complete file), wrong for a lone request or a
Spark partition, whose customers then look new.

Explanations come as lists of {feature|reason, contribution} records, for
flagged rows by default; the `explain` parameter ("flagged", "all", "none")
chooses. The output frame holds them as Arrow list<struct> columns
(pd.ArrowDtype, see gendetect.decisions): an element reads as a list of
dicts (the scoring server's JSON, Spark's conversion), but none is made per
row on the way out.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

DEFAULT_EXPLAIN = "flagged"


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from gendetect.bundle import FraudModelBundle
        from gendetect.tracking import BUNDLE_ARTIFACT

        self.bundle = FraudModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        explain = (params or {}).get("explain") or DEFAULT_EXPLAIN
        # A fresh index: Spark and the scoring server align outputs by position.
        model_input = model_input.reset_index(drop=True)
        return self.bundle.score_batch(model_input, explain=str(explain)).to_pandas()
