"""The quality gate every registration passes through, `train` and `retrain`
alike: a candidate against the current champion on the same held-out rows.

One function (`quality_gate`) decides, so that `gendetect train --alias
champion` and `gendetect retrain` cannot disagree on what "better" means.
A candidate passes when
- its ROC AUC is at least `promotion.min_roc_auc` (a model near chance is
  refused even with no champion to compare with), and
- there is no champion yet, or the champion cannot score the held-out data
  (a changed schema: it is replaced), or the candidate beats the champion's
  `promotion.metric` by more than `promotion.min_improvement`.
Without labels (or frauds) in the held-out period nothing can be measured: with a
champion the candidate is refused (the champion is kept), without one it
passes (nothing to protect), and the verdict says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from gendetect.config import Settings
from gendetect.errors import GendetectError, ModelNotReadyError
from gendetect.tracking import RegisteredModel, alias_version, load_registered_bundle
from training.config import PromotionConfig
from training.data import PreparedData
from training.evaluation import evaluate

log = logging.getLogger(__name__)

# The version tag that records the gate's verdict (training.train).
GATE_TAG = "gendetect.gate"
PASSED, REFUSED, FORCED = "passed", "refused", "forced"
# The metric the near-chance floor reads: 0.5 is chance whatever the fraud rate.
FLOOR_METRIC = "roc_auc"


@dataclass(frozen=True)
class GateVerdict:
    """What the gate decided and why, with both sides' headline values."""

    passed: bool
    metric: str
    candidate: float
    champion: float | None
    champion_version: str | None
    reason: str
    # The champion's headline metrics on the same rows (the job's summary table).
    champion_results: Mapping[str, float] | None = None

    def line(self, candidate_name: str = "candidate") -> str:
        """One line: candidate vs champion on the headline metric, the verdict."""
        cand = _fmt(self.candidate)
        if self.champion_version is None:
            versus = "no champion"
        else:
            champ = "n/a" if self.champion is None else _fmt(self.champion)
            versus = f"champion (version {self.champion_version}) {champ}"
        verdict = "passed" if self.passed else "refused"
        return f"quality gate {verdict}: {candidate_name} {self.metric} {cand} vs {versus}: " \
               f"{self.reason}"


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def _value(metrics: Mapping[str, float], name: str) -> float:
    v = metrics.get(name)
    return float(v) if v is not None and math.isfinite(v) else float("-inf")


def quality_gate(candidate: Mapping[str, float], champion: RegisteredModel | None,
                 champion_results: Mapping[str, float] | None,
                 promotion: PromotionConfig) -> GateVerdict:
    """The verdict on `candidate`'s held-out metrics against the champion's
    on the same rows (`champion_results`: None without a held-out period,
    empty when the champion cannot score it)."""
    metric, margin, floor = promotion.metric, promotion.min_improvement, promotion.min_roc_auc
    value = _value(candidate, metric)
    current = None if champion_results is None else _value(champion_results, metric)
    version = None if champion is None else champion.version

    def verdict(passed: bool, reason: str) -> GateVerdict:
        return GateVerdict(passed, metric, value, current, version, reason)

    auc = _value(candidate, FLOOR_METRIC)
    if math.isfinite(auc) and auc < floor:
        return verdict(False, f"{FLOOR_METRIC} {auc:.4f} is below promotion.min_roc_auc "
                       f"{floor:g} (near chance)")
    if champion is None:
        return verdict(True, "no champion yet")
    if current is None or not math.isfinite(value):
        return verdict(False, f"{metric} cannot be measured on the held-out period (no labels "
                       "or no frauds in it): nothing to compare")
    if value > current + margin:
        return verdict(True, f"{metric} {value:.4f} > champion {_fmt(current)} + {margin:g}")
    return verdict(False, f"{metric} {value:.4f} does not beat champion {_fmt(current)} "
                   f"+ {margin:g}")


def champion_metrics(
    data: PreparedData, settings: Settings
) -> tuple[RegisteredModel | None, dict[str, float] | None]:
    """The current champion and its metrics on the candidates' held-out data
    (None without a held-out period; empty when it cannot score it)."""
    ref = alias_version(settings, settings.champion_alias)
    if ref is None or data.test is None:
        return ref, None
    try:
        bundle, ref = load_registered_bundle(
            f"models:/{settings.model_name}/{ref.version}", settings
        )
        results, _ = evaluate(bundle, data.test)
    except (ModelNotReadyError, GendetectError, KeyError, ValueError) as exc:
        # A champion that cannot score the new data (e.g. a changed schema)
        # cannot be compared; it is replaced, and the note says why.
        log.warning("champion version %s cannot be evaluated: %s", ref.version, exc)
        return ref, {}
    return ref, results
