"""Reading, writing and fingerprinting tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.data.io import fingerprint, prepare_output, read_table, write_table
from gendetect.errors import InputError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": np.arange(4, dtype=np.int64),
            "timestamp": pd.to_datetime(
                [
                    "2024-01-01 00:00:00",
                    "2024-01-01 08:30:05",
                    "2024-01-02 23:59:59",
                    "2024-01-03 12:00:00",
                ]
            ).astype("datetime64[ns]"),
            "amount": [12.34, 0.01, 250.5, 99.99],
            "is_fraud": np.array([0, 0, 1, 0], dtype=np.int64),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip(frame: pd.DataFrame, tmp_path, suffix: str) -> None:
    path = tmp_path / "nested" / "dir" / f"data{suffix}"
    write_table(frame, path)
    pd.testing.assert_frame_equal(read_table(path), frame)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_leaves_no_temporary_files(frame: pd.DataFrame, tmp_path, suffix: str) -> None:
    write_table(frame, tmp_path / f"data{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"data{suffix}"]


def test_failed_write_keeps_the_old_file(frame: pd.DataFrame, tmp_path) -> None:
    path = tmp_path / "data.parquet"
    write_table(frame, path)
    unwritable = pd.DataFrame({"mixed": [1, "a", 2.5]}, dtype=object)
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises
        write_table(unwritable, path)
    pd.testing.assert_frame_equal(read_table(path), frame)
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]


def test_write_rejects_unknown_extension(frame: pd.DataFrame, tmp_path) -> None:
    path = tmp_path / "data.json"
    with pytest.raises(InputError, match=r"data\.json"):
        write_table(frame, path)
    assert not path.exists()


def test_csv_timestamps_with_offsets_become_naive_utc(tmp_path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text("timestamp,x\n2024-01-01T02:00:00+02:00,1\n2024-01-01T00:30:00Z,2\n")
    df = read_table(path)
    assert str(df["timestamp"].dtype) == "datetime64[ns]"
    assert list(df["timestamp"]) == [
        pd.Timestamp("2024-01-01 00:00"),
        pd.Timestamp("2024-01-01 00:30"),
    ]


def test_csv_without_timestamp_is_left_alone(tmp_path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    df = read_table(path)
    assert list(df.columns) == ["a", "b"] and str(df["a"].dtype) == "int64"


def test_csv_bad_timestamps_name_the_column_and_file(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,x\nnot a time,1\n")
    with pytest.raises(InputError, match=r"bad\.csv") as info:
        read_table(path)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_numeric_timestamps_are_refused_naming_the_column_and_file(tmp_path, suffix) -> None:
    # Seconds or milliseconds since 1970? Refused rather than guessed.
    path = tmp_path / f"epochs{suffix}"
    df = pd.DataFrame({"timestamp": [1_700_000_000, 1_700_000_060], "x": [1.0, 2.0]})
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    with pytest.raises(InputError, match="not numbers") as info:
        read_table(path)
    assert info.value.field == "timestamp" and info.value.source == str(path)


def test_npz_in_adbench_format(tmp_path) -> None:
    path = tmp_path / "tiny.npz"
    features = np.array([[0.5, 1.0, -2.0], [3.0, 4.0, 5.0]])
    np.savez(path, X=features, y=np.array([0.0, 1.0]))
    df = read_table(path)
    assert list(df.columns) == ["f0", "f1", "f2", "label"]
    np.testing.assert_array_equal(df[["f0", "f1", "f2"]].to_numpy(), features)
    assert list(df["label"]) == [0, 1] and str(df["label"].dtype) == "int64"


def test_npz_without_labels_is_an_input_error(tmp_path) -> None:
    path = tmp_path / "nolabel.npz"
    np.savez(path, X=np.zeros((2, 2)))
    with pytest.raises(InputError, match=r"nolabel\.npz"):
        read_table(path)


@pytest.mark.parametrize("name", ["data.json", "data", "missing.parquet", "missing.csv"])
def test_unknown_extension_or_missing_file(tmp_path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.source == str(path) and name in str(info.value)


@pytest.mark.parametrize("name", ["corrupt.parquet", "corrupt.npz", "corrupt.csv"])
def test_corrupt_file_is_an_input_error(tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00\xff garbage \x89PNG" * 3 if name != "corrupt.csv" else b"")
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.source == str(path)


def test_fingerprint_fields(frame: pd.DataFrame) -> None:
    fp = fingerprint(frame)
    assert fp["n_rows"] == 4
    assert fp["columns"] == {
        "transaction_id": "int64",
        "timestamp": "datetime64[ns]",
        "amount": "float64",
        "is_fraud": "int64",
    }
    assert len(fp["sha256"]) == 64
    assert fp["time_min"] == "2024-01-01T00:00:00"
    assert fp["time_max"] == "2024-01-03T12:00:00"
    assert fp["label_rate"] == pytest.approx(0.25)


def test_fingerprint_is_stable_and_ignores_the_index(frame: pd.DataFrame) -> None:
    reindexed = frame.set_axis([10, 11, 12, 13])
    assert fingerprint(frame) == fingerprint(frame.copy()) == fingerprint(reindexed)


def test_fingerprint_changes_with_content(frame: pd.DataFrame) -> None:
    changed = frame.copy()
    changed.loc[1, "amount"] = 0.02
    renamed = frame.rename(columns={"amount": "value"})
    hashes = {fingerprint(f)["sha256"] for f in (frame, changed, renamed, frame.iloc[::-1])}
    assert len(hashes) == 4


def test_fingerprint_without_time_or_label() -> None:
    fp = fingerprint(pd.DataFrame({"a": [1.0, 2.0]}))
    assert set(fp) == {"n_rows", "columns", "sha256"}


# A file without rows is refused when read, naming the file: every job needs
# rows, and later steps would fail with a message about something else.
def _zero_row_parquet(path, frame: pd.DataFrame) -> None:
    frame.head(0).to_parquet(path, index=False)


def _zero_byte_csv(path, frame: pd.DataFrame) -> None:
    path.write_bytes(b"")


def _header_only_csv(path, frame: pd.DataFrame) -> None:
    frame.head(0).to_csv(path, index=False)
    assert path.read_text().strip() == ",".join(frame.columns)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("empty.parquet", _zero_row_parquet),
        ("empty.csv", _zero_byte_csv),
        ("header.csv", _header_only_csv),
    ],
)
def test_a_file_without_rows_is_an_input_error(
    frame: pd.DataFrame, tmp_path, name: str, write
) -> None:
    path = tmp_path / name
    write(path, frame)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.source == str(path)
    assert str(info.value) == f"{path}: the file has no rows (empty, or a header only)"


def test_a_npz_without_rows_is_an_input_error(tmp_path) -> None:
    path = tmp_path / "empty.npz"
    np.savez(path, X=np.zeros((0, 3)), y=np.zeros(0))
    with pytest.raises(InputError, match="no rows") as info:
        read_table(path)
    assert info.value.source == str(path)


def test_one_row_is_enough(frame: pd.DataFrame, tmp_path) -> None:
    path = tmp_path / "one.csv"
    write_table(frame.head(1), path)
    assert len(read_table(path)) == 1


def test_an_output_that_would_replace_the_input_is_refused(tmp_path) -> None:
    data = tmp_path / "tx.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(data)
    for same in (data, tmp_path / "." / "tx.parquet"):
        with pytest.raises(InputError, match="replace the input"):
            prepare_output(same, inputs=(data,))
    assert read_table(data)["x"].tolist() == [1.0]  # untouched
    assert prepare_output(tmp_path / "out" / "scored.parquet", inputs=(data,)).parent.is_dir()


def test_an_output_folder_that_cannot_be_made_is_an_input_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot create its folder") as info:
        write_table(pd.DataFrame({"x": [1]}), blocker / "out.csv")
    assert info.value.source == str(blocker / "out.csv")
