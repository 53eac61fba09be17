"""The bundle logged as an MLflow pyfunc model (scoring.pyfunc through its
models-from-code entry), with its signature, input example, pinned runtime
requirements and its own code: copies of the `gendetect` and `scoring`
packages travel inside the model (code_paths), so it loads where neither is
installed (a Spark executor, a serving image) and always runs the code it
was logged with.

Registering the logged model is the registry's (gendetect.tracking
.register_bundle); jobs log in their run, end it, then register.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property
from mlflow.types.schema import Schema as MlflowSchema

import gendetect
import scoring
from gendetect.bundle import FraudModelBundle
from gendetect.config import Settings
from gendetect.decisions import BATCH_HISTORY_COLUMN, EXPLANATION_KEYS, FEATURE_VALUE_KEYS
from gendetect.tracking import (
    BUNDLE_ARTIFACT,
    LoggedBundle,
    RegisteredModel,
    configure,
    register_bundle,
)
from scoring.pyfunc import DEFAULT_EXPLAIN

_PYFUNC_ENTRY = str(Path(__file__).with_name("pyfunc_entry.py"))
# The packages the model's code needs at load: the pyfunc wrapper (scoring)
# and the core it scores with (gendetect).
_CODE_PACKAGES = (Path(gendetect.__file__).resolve().parent,
                  Path(scoring.__file__).resolve().parent)
# What the logged model's code imports when it loads and scores (the core
# library's own dependencies on that path), pinned to the versions it was
# logged with. gendetect itself is not among them: its code travels inside
# the model (code_paths), so no index needs to have it.
_RUNTIME_REQUIREMENTS = ("mlflow", "torch", "pytorch-lightning", "numpy", "pandas", "pyarrow",
                         "pyyaml")
# Schema field kind -> MLflow column type, for fields the input example lacks.
_KIND_TYPES = {"numeric": "double", "label": "double", "boolean": "double", "id": "long",
               "timestamp": "datetime", "entity": "string", "categorical": "string"}


def log_bundle_model(
    bundle: FraudModelBundle, example: pd.DataFrame, *, name: str = "model"
) -> LoggedBundle:
    """Log the bundle (in the active run) as a pyfunc model with signature and
    input example, without registering it (see `register_bundle`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        example = example.head(5).reset_index(drop=True)
        signature = _signature(bundle, example)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=_PYFUNC_ENTRY,
            artifacts={BUNDLE_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            code_paths=[str(p) for p in _package_copies(Path(tmp) / "code")],
        )
    return LoggedBundle(info.model_uri, info.run_id, info.model_id)


def _package_copies(folder: Path) -> list[Path]:
    """The model's own code packages as they are now, without bytecode
    caches (MLflow puts their folder first on sys.path at load)."""
    targets = []
    for package in _CODE_PACKAGES:
        target = folder / package.name
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        targets.append(target)
    return targets


def log_bundle(
    bundle: FraudModelBundle,
    example: pd.DataFrame,
    settings: Settings,
    *,
    name: str = "model",
) -> RegisteredModel:
    """Log the bundle in the active run and register it at once (the run is
    still RUNNING when the version appears: for fixtures and benchmarks; the
    training job uses `log_bundle_model`, ends its run, then `register_bundle`)."""
    configure(settings)
    logged = log_bundle_model(bundle, example, name=name)
    return register_bundle(logged, settings, require_finished=False)


def _signature(bundle: FraudModelBundle, example: pd.DataFrame) -> ModelSignature:
    """Input columns from the schema: every field the bundle can use, with the
    schema's optional ones (labels, evaluation-only columns) optional, so
    that MLflow neither drops labels that feed terminal risk nor demands
    columns production data does not have; then the behaviour features,
    optional (used as given when present, see scoring.pyfunc). Outputs
    typed by hand: explanations are lists of records, absent for rows
    without one, which inference from an example cannot know."""
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: ids and
        # counts are integers by the schema, which validates them before scoring.
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column",
                                category=UserWarning)
        inferred = {c.name: c.type for c in infer_signature(example).inputs}
    columns = [
        ColSpec(inferred.get(f.name, _KIND_TYPES.get(f.kind, "string")), f.name,
                required=f.required)
        for f in bundle.schema.fields
    ]
    taken = {c.name for c in columns}
    columns += [ColSpec("double", name, required=False)
                for name in bundle.pipeline.window_feature_names if name not in taken]
    outputs = [ColSpec("double", "score"), ColSpec("double", "risk"),
               ColSpec("boolean", "is_fraud"), ColSpec("double", "threshold")]
    outputs += [
        ColSpec(Array(Object([
            Property(key, "string"), Property("contribution", "double"),
            # A top feature's observed and expected values: null where there is none.
            *(Property(name, "double", required=False)
              for name in (FEATURE_VALUE_KEYS if column == "top_features" else ())),
        ])), column, required=False)
        for column, key in EXPLANATION_KEYS.items()
    ]
    outputs.append(ColSpec("boolean", BATCH_HISTORY_COLUMN))
    return ModelSignature(
        inputs=MlflowSchema(columns),
        outputs=MlflowSchema(outputs),
        params=ParamSchema([ParamSpec("explain", "string", DEFAULT_EXPLAIN)]),
    )


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Local build tags (torch's "+cpu") are not on any index: pin the release.
    return [f"{name}=={version(name).split('+')[0]}" for name in _RUNTIME_REQUIREMENTS]
