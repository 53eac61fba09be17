"""A model card for each run: what the model is for, what it saw, how it did.

Markdown that reads in the MLflow UI (the run's artifact view and the
version's description): facts and numbers in tables, counts as integers,
rates as percentages, the parameters one per row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training import fairness

if TYPE_CHECKING:
    from gendetect.bundle import FraudModelBundle
    from training.data import PreparedData
    from training.gate import GateVerdict

# Metrics that are counts: shown as integers, whatever MLflow stored them as.
COUNTS = frozenset({"n_labels", "n_frauds"})


def model_card(bundle: FraudModelBundle, results: dict[str, float], data: PreparedData,
               *, verdict: GateVerdict | None = None) -> str:
    meta: dict[str, Any] = bundle.metadata
    lines = [
        f"# gendetect {bundle.kind} detector",
        "",
        "## Intended use",
        "Ranks card transactions by how unusual they are against normal traffic, so",
        "that fraud analysts review the most suspicious first. Not a decision on its own.",
        "",
        f"Mode: {_labels_line(meta.get('labels', {}))}",
        "",
        "## Decision",
        *table(("setting", "value"), [
            ("alert rate", f"{bundle.alert_rate:.2%} of traffic"),
            ("threshold on the raw score", f"{bundle.threshold_:.4f} (99th percentile of "
             "held-out normal-time validation scores)"),
            ("risk", "share of reference traffic scoring lower (0-1)"),
        ]),
    ]
    if verdict is not None:
        lines += ["", "## Quality gate", verdict.line(f"this {bundle.kind}")]
    lines += [
        "",
        "## Data",
        *table(("data", "value"), [
            ("source", f"`{data.source}`"),
            ("training rows", f"{len(data.train):,}"),
            ("held-out rows", f"{0 if data.test is None else len(data.test):,}"),
            ("window", _window_line(data.window)),
            ("labels", _label_sources_line(data.label_info)),
            ("fingerprint (sha256)", f"`{meta.get('data', {}).get('sha256', 'n/a')}`"),
            ("code version", f"`{meta.get('code_version', 'n/a')}`"),
            ("personal data fields (never logged)", ", ".join(bundle.schema.pii_fields)
             or "none"),
        ]),
        "",
        f"Features ({len(bundle.feature_names)}): {', '.join(bundle.feature_names)}",
        "",
        "Explanation reasons: " + _reasons_line(bundle),
        "",
        "## Evaluation on the held-out period",
    ]
    if results:
        lines += table(("metric", "value"), [(k, format_metric(k, v))
                                             for k, v in sorted(results.items())])
    else:
        lines.append("No labels in the held-out period.")
    lines += ["", "## Fairness (held-out period)",
              *fairness.card_lines(meta.get("fairness", {}), meta.get("fairness_differences"))]
    lines += ["## Training", "", "Parameters:", "",
              *table(("parameter", "value"), sorted(bundle.params.to_dict().items())),
              "", "Per network:", "", *_networks(meta.get("training", {})),
              "", "Versions: " + ", ".join(f"{k} {v}" for k, v in
                                          meta.get("versions", {}).items()),
              "",
              "## Limitations",
              "- Learns 'normal' from unlabeled history: fraud patterns frequent in training "
              "data look normal. Retrain on fresh data and compare with the champion before "
              "promoting.",
              "- Calibrated risk is a rank against traffic, not a probability of fraud."]
    return "\n".join(lines) + "\n"


def format_metric(name: str, value: float) -> str:
    """Counts as integers with thousands separators, the rest to 4 places."""
    if name in COUNTS or name.endswith(".n_labels") or name.endswith(".n_frauds"):
        return f"{int(value):,}"
    return f"{value:.4f}"


def table(header: tuple[str, str], rows: list[tuple[str, Any]]) -> list[str]:
    """A two-column Markdown table; values as given (lists joined)."""
    def cell(value: Any) -> str:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        return str(value).replace("|", "\\|")

    return [f"| {header[0]} | {header[1]} |", "|:---|:---|",
            *(f"| {cell(k)} | {cell(v)} |" for k, v in rows)]


def _networks(training: dict[str, dict[str, Any]]) -> list[str]:
    if not training:
        return ["n/a"]
    lines = ["| network | epochs run | best epoch | best validation loss | seconds |",
             "|:---|---:|---:|---:|---:|"]
    for kind, r in training.items():
        lines.append(f"| {kind} | {int(r['epochs_run'])} | {int(r['best_epoch'])} | "
                     f"{float(r['best_val_loss']):.4f} | {float(r['seconds']):.1f} |")
    return lines


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
        f"label-aware: {int(labels['frauds']):,} confirmed frauds, "
        f"{int(labels['genuine']):,} confirmed genuine, {int(labels['unknown']):,} unknown "
        f"rows{period}; a boosted head on the generative evidence (confirmed frauds never "
        "trained as normal)"
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
    sources = ", ".join(f"{k.replace('_', ' ')} {int(v):,}" for k, v in info["sources"].items())
    known = f"known by {info['known_by']}" if info.get("known_by") else "all known"
    return (f"{int(info['frauds']):,} fraud / {int(info['genuine']):,} genuine / "
            f"{int(info['unknown']):,} unknown training rows ({known}; from {sources})")


def _reasons_line(bundle: FraudModelBundle) -> str:
    """The schema's groups of features reported together in explanations."""
    rm = bundle.reason_map
    groups = [
        f"{reason} ({', '.join(members)})"
        for reason, members in zip(rm.reasons, rm.members, strict=True)
        if len(members) > 1
    ]
    return "; ".join(groups) or "none (each feature is its own reason)"
