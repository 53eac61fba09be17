"""scikit-learn's parameter protocol for the bundle: constructor arguments
stored as given and checked in fit, `get_params` / `set_params` (what
`clone`, pipelines and grid searches use), and PyOD's `contamination` as the
alert rate.

The bundle's constructor takes the detector parameters as keywords
(`**params`); scikit-learn reads an estimator's parameters from the
constructor's signature, so `with_parameter_signature` gives the
constructor one that names them all, with the defaults DetectorParams
declares.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Self, TypeVar

from gendetect.params import DetectorParams

# The constructor's own arguments, beside the detector parameters.
NAMED = {"kind": "vae", "schema": "numeric", "alert_rate": 0.01, "top_k": 3}
DETECTOR_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DetectorParams)}

T = TypeVar("T", bound=type)


class EstimatorParams:
    kind: str
    alert_rate: float
    top_k: int
    _schema_arg: Any
    _params: dict[str, Any]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor parameter: as given, else its default."""
        named = {"kind": self.kind, "schema": self._schema_arg, "alert_rate": self.alert_rate,
                 "top_k": self.top_k}
        return {**named, **{k: self._params.get(k, d) for k, d in DETECTOR_DEFAULTS.items()}}

    def set_params(self, **params: Any) -> Self:
        for name, value in params.items():
            if name == "schema":
                self._schema_arg = value
            elif name in NAMED:
                setattr(self, name, value)
            elif name in DETECTOR_DEFAULTS:
                self._params[name] = value
            else:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
        return self

    @property
    def params(self) -> DetectorParams:
        """The detector parameters, checked."""
        return DetectorParams.from_dict(self._params)

    def check_params(self) -> DetectorParams:
        """The parameters, checked (fit does this; make_detector at once)."""
        if not 0.0 < self.alert_rate < 1.0:
            raise ValueError("alert_rate must be in (0, 1)")
        return self.params

    @property
    def contamination(self) -> float:
        """PyOD's name for the share of rows flagged: the alert rate."""
        return self.alert_rate

    @contamination.setter
    def contamination(self, value: float) -> None:
        self.alert_rate = value


def with_parameter_signature(cls: T) -> T:
    """`cls` with a constructor signature naming every parameter."""
    P = inspect.Parameter
    cls.__init__.__signature__ = inspect.Signature(  # type: ignore[misc]
        [
            P("self", P.POSITIONAL_OR_KEYWORD),
            P("kind", P.POSITIONAL_OR_KEYWORD, default=NAMED["kind"]),
            *(
                P(name, P.KEYWORD_ONLY, default=default)
                for name, default in {**NAMED, **DETECTOR_DEFAULTS}.items()
                if name != "kind"
            ),
        ]
    )
    return cls
