"""MLflow "models from code" entry point: MLflow stores this file with the
model and runs it at load time, instead of unpickling an object (unpickling
can execute arbitrary code). Not imported by gendetect itself."""

from mlflow.models import set_model

from gendetect.pyfunc import BundlePyfunc

set_model(BundlePyfunc())
