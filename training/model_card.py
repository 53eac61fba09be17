"""A model card for each run: what the model is for, what it saw, how it did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle
    from training.data import PreparedData


def model_card(bundle: FraudModelBundle, results: dict[str, float], data: PreparedData) -> str:
    meta: dict[str, Any] = bundle.metadata
    lines = [
        f"# gendetect {bundle.kind} detector",
        "",
        "## Intended use",
        "Ranks card transactions by how unusual they are against normal traffic, so",
        "that fraud analysts review the most suspicious first. Unsupervised: labels",
        "enter only through delayed terminal-risk features. Not a decision on its own.",
        "",
        "## Decision",
        f"- alert rate: {bundle.alert_rate:.2%} of traffic; threshold on the raw score: "
        f"{bundle.threshold_:.4f} (99th percentile of held-out normal-time validation scores)",
        "- risk: share of reference traffic scoring lower (0-1)",
        "",
        "## Data",
        f"- source: `{data.source}`; training rows: {len(data.train):,}; "
        f"held-out rows: {0 if data.test is None else len(data.test):,}",
        f"- fingerprint (sha256): `{meta.get('data', {}).get('sha256', 'n/a')}`",
        f"- features ({len(bundle.feature_names)}): {', '.join(bundle.feature_names)}",
        f"- personal data fields (never logged): {', '.join(bundle.schema.pii_fields) or 'none'}",
        "- explanation reasons: " + _reasons_line(bundle),
        "",
        "## Evaluation on the held-out period",
    ]
    if results:
        lines += [f"- {k}: {v:.4f}" for k, v in sorted(results.items())]
    else:
        lines.append("- no labels in the held-out period")
    lines += [
        "",
        "## Training",
        f"- parameters: {bundle.params.to_dict()}",
        f"- per network: {meta.get('training', {})}",
        f"- versions: {meta.get('versions', {})}",
        "",
        "## Limitations",
        "- Learns 'normal' from unlabeled history: fraud patterns frequent in training data",
        "  look normal. Retrain on fresh data and compare with the champion before promoting.",
        "- Calibrated risk is a rank against traffic, not a probability of fraud.",
    ]
    return "\n".join(lines) + "\n"


def _reasons_line(bundle: FraudModelBundle) -> str:
    """The schema's groups of features reported together in explanations."""
    rm = bundle.reason_map
    groups = [
        f"{reason} ({', '.join(members)})"
        for reason, members in zip(rm.reasons, rm.members, strict=True)
        if len(members) > 1
    ]
    return "; ".join(groups) or "none (each feature is its own reason)"
