"""Explanation reasons: model features grouped by the signal they carry.

A detector's per-feature contributions split the credit for one signal among
every column that carries it. The amount of a transaction reaches the model
through the amount, its logarithm, its ratio to the customer's 7- and 30-day
averages and the customer averages themselves (which include the current
transaction), so a record flagged for an inflated amount can show
`customer_avg_amount_1d` first and the amount itself nowhere. Analysts act
on signals ("amount far above this card's usual spend", "terminal with
recent fraud"), so a schema may name reasons, each a list of feature names or
shell-style patterns, and a record's reasons are ranked by the summed
contributions of their features. Features that no reason claims are their
own reason, under their own name.

A gap indicator (`<field> missing`, gendetect.features.missing) is a signal
of its own: a wildcard pattern never claims it, so that when a record is
flagged because a field is missing where it usually is not, the reason says
`<field> missing` rather than the field's name. Only a pattern naming the
indicator exactly puts it in a group.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gendetect.errors import InputError
from gendetect.features.missing import is_indicator

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ReasonMap:
    """Which features make up each reason: `matrix[j, r]` is 1 when feature j
    belongs to reason r (each feature belongs to exactly one)."""

    reasons: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    matrix: np.ndarray

    @classmethod
    def build(
        cls,
        feature_names: Sequence[str],
        reasons: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> ReasonMap:
        """Assign each feature to the first reason with a matching pattern.

        A pattern without wildcards must name a feature: a typo would
        otherwise silently drop a column from its reason. A wildcard pattern
        may match nothing (e.g. a window size the configuration left out)."""
        owner: dict[str, str] = {}
        for reason, patterns in reasons:
            for pattern in patterns:
                matched = fnmatch.filter(feature_names, pattern)
                if _GLOB_CHARS & set(pattern):
                    matched = [name for name in matched if not is_indicator(name)]
                if not matched and not _GLOB_CHARS & set(pattern):
                    raise InputError(
                        f"explanation reason {reason!r} names {pattern!r}, which is not a "
                        f"model feature; features: {list(feature_names)}",
                        field="reasons",
                    )
                for name in matched:
                    owner.setdefault(name, reason)
        order: list[str] = []
        for name in feature_names:
            reason = owner.get(name, name)
            if reason not in order:
                order.append(reason)
        matrix = np.zeros((len(feature_names), len(order)))
        for j, name in enumerate(feature_names):
            matrix[j, order.index(owner.get(name, name))] = 1.0
        members = tuple(
            tuple(n for n in feature_names if owner.get(n, n) == reason) for reason in order
        )
        return cls(tuple(order), members, matrix)

    def top(self, contributions: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """Per row, the top_k reasons with their share of the total
        contribution (shares over all reasons sum to 1)."""
        return top_shares(self.sums(contributions), self.reasons, top_k)

    def sums(self, contributions: np.ndarray) -> np.ndarray:
        """Per row, the summed contributions of each reason's features."""
        return contributions @ self.matrix


def top_share_indices(values: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise form of `top_shares`: per row of non-negative `values`, the
    indices (n, k) of the top_k columns by share of the row's total, largest
    first (ties keep column order), and those shares (n, k)."""
    shares = values / np.maximum(values.sum(axis=1, keepdims=True), 1e-12)
    k = min(top_k, shares.shape[1])
    top = np.argsort(-shares, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(shares, top, axis=1)


def top_shares(
    values: np.ndarray, names: Sequence[str], top_k: int
) -> list[list[tuple[str, float]]]:
    """Per row of non-negative `values`, the top_k columns by share of the
    row's total, largest first (ties keep column order)."""
    top, shares = top_share_indices(values, top_k)
    return [
        [(names[j], float(s)) for j, s in zip(idx.tolist(), row.tolist(), strict=True)]
        for idx, row in zip(top, shares, strict=True)
    ]
