"""The bundle as an MLflow pyfunc model, so `mlflow models serve`, Spark UDFs
and `mlflow.pyfunc.load_model` can score with it. The API loads the bundle
directly instead (no per-request DataFrame), from the same artifact."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

BUNDLE_ARTIFACT = "bundle"


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from gendetect.bundle import FraudModelBundle

        self.bundle = FraudModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from gendetect.bundle import explanations_as_json

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return explanations_as_json(self.bundle.score_frame(model_input))
