"""The feature matrix is written in bands of rows (issue 20, batch speed):
the same array as np.column_stack, whatever the parts and the row count."""

from __future__ import annotations

import numpy as np
import pytest

from gendetect.features.pipeline import _STACK_ROWS, _stacked_columns


@pytest.mark.parametrize("n", [0, 1, 5, _STACK_ROWS, _STACK_ROWS + 1, 3 * _STACK_ROWS + 17])
def test_bands_give_column_stack(n: int) -> None:
    rng = np.random.default_rng(n)
    parts = [
        rng.normal(size=n),
        rng.normal(size=(n, 3)),  # a categorical block
        (rng.random(n) < 0.5).astype(np.float64),
        np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        rng.normal(size=(n, 1)),
    ]
    want = np.column_stack(parts)
    got = _stacked_columns(parts)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    assert np.array_equal(got, want, equal_nan=True)


def test_mixed_types_promote_as_column_stack() -> None:
    parts = [np.arange(10), np.ones(10, dtype=bool), np.linspace(0, 1, 10)]
    want = np.column_stack(parts)
    got = _stacked_columns(parts)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_unequal_lengths_fail_as_column_stack() -> None:
    with pytest.raises(ValueError):
        _stacked_columns([np.zeros(3), np.zeros(4)])
