"""MLflow "models from code" entry point: MLflow stores this file with the
model and runs it at load time, instead of unpickling an object (unpickling
can execute arbitrary code). Imported by nothing else."""

from mlflow.models import set_model

from scoring.pyfunc import BundlePyfunc

set_model(BundlePyfunc())
