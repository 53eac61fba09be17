"""A model card for each run: what the model is for, what it saw, how it did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training import fairness

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
        "that fraud analysts review the most suspicious first. Not a decision on its own.",
        f"- mode: {_labels_line(meta.get('labels', {}))}",
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
        f"- window: {_window_line(data.window)}",
        f"- labels: {_label_sources_line(data.label_info)}",
        f"- code version: `{meta.get('code_version', 'n/a')}`",
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
    lines += ["", "## Fairness (held-out period)", *fairness.card_lines(meta.get("fairness", {}))]
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


def _labels_line(labels: dict[str, Any]) -> str:
    """Which mode the detector runs in, from how many labels of which period."""
    if labels.get("mode") != "label-aware":
        why = labels.get("reason") or "no confirmed labels given"
        return (
            "unsupervised (labels enter only through delayed terminal-risk features; "
            f"{why})"
        )
    period = ""
    if labels.get("labelled_from"):
        period = f", labelled {labels['labelled_from']} to {labels['labelled_to']}"
    return (
        f"label-aware: {labels['frauds']:,} confirmed frauds, {labels['genuine']:,} confirmed "
        f"genuine, {labels['unknown']:,} unknown rows{period}; a boosted head on the "
        "generative evidence (confirmed frauds never trained as normal)"
    )


def _window_line(window: dict[str, str]) -> str:
    if not window:
        return "the whole file (no held-out period)"
    return (f"trained on [{window['since']}, {window['until']}), evaluated on "
            f"[{window['holdout_start']}, {window['holdout_end']})")


def _label_sources_line(info: dict[str, Any]) -> str:
    """How many training labels each source gave, known by when."""
    if not info:
        return "none"
    sources = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in info["sources"].items())
    known = f"known by {info['known_by']}" if info.get("known_by") else "all known"
    return (f"{info['frauds']:,} fraud / {info['genuine']:,} genuine / {info['unknown']:,} "
            f"unknown training rows ({known}; from {sources})")


def _reasons_line(bundle: FraudModelBundle) -> str:
    """The schema's groups of features reported together in explanations."""
    rm = bundle.reason_map
    groups = [
        f"{reason} ({', '.join(members)})"
        for reason, members in zip(rm.reasons, rm.members, strict=True)
        if len(members) > 1
    ]
    return "; ".join(groups) or "none (each feature is its own reason)"
