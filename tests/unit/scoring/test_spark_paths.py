"""The Spark engine replaces its output folder (overwrite): the paths are
checked before Spark starts, so that no input or unrelated folder is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from gendetect.errors import InputError
from scoring.spark.job import check_paths


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "tx.parquet"
    path.write_bytes(b"PAR1")
    return path


@pytest.mark.parametrize(
    ("out", "message"),
    [
        # Before: the input file was replaced by the scores' folder.
        (lambda d: d, "would replace the input"),
        (lambda d: d.parent, "would replace the input"),
        (lambda d: d.with_name("notes.txt"), "is a file"),
        (lambda d: d.with_name("results"), "not an earlier Spark output"),
    ],
    ids=["the input", "around the input", "a file", "another folder"],
)
def test_outputs_that_would_lose_data_are_refused(data: Path, out, message: str) -> None:
    (data.parent / "notes.txt").write_text("keep")
    (data.parent / "results").mkdir()
    (data.parent / "results" / "report.md").write_text("keep")
    with pytest.raises(InputError, match=message):
        check_paths(str(data), str(out(data)))
    assert data.read_bytes() == b"PAR1" and (data.parent / "notes.txt").exists()


def test_an_earlier_spark_output_and_a_new_folder_are_fine(data: Path) -> None:
    earlier = data.with_name("scored")
    earlier.mkdir()
    (earlier / "_SUCCESS").write_text("")
    check_paths(str(data), str(earlier))
    check_paths(str(data), str(data.with_name("new-folder")))


def test_a_missing_local_input_is_named_and_remote_uris_are_left_to_spark(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match="file not found"):
        check_paths(str(tmp_path / "absent.parquet"), str(tmp_path / "out"))
    check_paths("s3a://bucket/tx.parquet", str(tmp_path / "out"))
