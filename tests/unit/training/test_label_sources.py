"""A labels file (`gendetect labels export`, or written by hand): a
transaction labelled again counts with its newest label; what cannot be
ordered or read is an error naming the file and the column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gendetect.errors import InputError
from training.labels import read_labels_file


def _write(tmp_path: Path, rows: list[tuple[object, int, str]]) -> str:
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["transaction_id", "is_fraud", "labelled_at"]).to_csv(
        path, index=False)
    return str(path)


def test_the_newest_label_of_a_transaction_counts(tmp_path: Path) -> None:
    # Written newest first: the order of the rows must not matter.
    path = _write(tmp_path, [(7, 0, "2024-03-05T00:00:00"), (7, 1, "2024-03-01T00:00:00"),
                             (8, 1, "2024-03-02T00:00:00"), (8, 1, "2024-03-02T00:00:00")])
    got = read_labels_file(path, "is_fraud").set_index("transaction_id")["is_fraud"]
    assert got.to_dict() == {7: 0, 8: 1}


def test_different_labels_at_the_same_time_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [(7, 0, "2024-03-05T00:00:00"), (7, 1, "2024-03-05T00:00:00")])
    with pytest.raises(InputError, match="transaction 7 has different labels") as info:
        read_labels_file(path, "is_fraud")
    assert info.value.source == path and info.value.field == "is_fraud"


@pytest.mark.parametrize("tid", ["abc", "7.5", "-3"])
def test_transaction_ids_that_are_not_ids_are_named(tmp_path: Path, tid: str) -> None:
    path = _write(tmp_path, [(tid, 1, "2024-03-05T00:00:00")])
    with pytest.raises(InputError) as info:
        read_labels_file(path, "is_fraud")
    assert info.value.source == path and info.value.field == "transaction_id"


def test_a_verdict_store_without_tables_gives_no_labels(tmp_path: Path) -> None:
    # Jobs read the store through gendetect.stores.export.store_labels: a
    # database no API has written to yet is empty, not an error.
    from training.labels import LabelSources

    sources = LabelSources(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    ((name, frame),) = sources.frames("is_fraud")
    assert name == "verdict_store" and frame.empty
    assert list(frame.columns) == ["transaction_id", "is_fraud", "labelled_at"]
