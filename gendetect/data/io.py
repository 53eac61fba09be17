"""Reading and writing tables, and fingerprints of data for experiment tracking.

Every failure to read names the file (as `InputError.source`) so a user sees
which of several inputs was wrong.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gendetect.errors import InputError
from gendetect.timestamps import to_utc_datetime64

READ_SUFFIXES = (".parquet", ".csv", ".npz")
WRITE_SUFFIXES = (".parquet", ".csv")
TIME_COLUMN = "timestamp"
# Label columns a fingerprint reports the positive rate of, first found wins:
# transactions use is_fraud, ADBench files read as `label`.
LABEL_COLUMNS = ("is_fraud", "label")

# What the readers raise on unreadable or corrupt content (pandas' parser
# errors and pyarrow's ArrowInvalid are ValueErrors; ArrowException covers
# the rest of pyarrow).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, pa.ArrowException)


_NO_ROWS = "the file has no rows (empty, or a header only)"


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _parse_timestamps(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Parse `timestamp` to naive UTC datetime64[ns] (the resolution the rest
    of the project expects; pandas would infer us from CSV text)."""
    if TIME_COLUMN not in df.columns:
        return df
    try:
        df[TIME_COLUMN] = to_utc_datetime64(df[TIME_COLUMN])
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"cannot parse timestamps: {exc}", field=TIME_COLUMN, source=source
        ) from exc
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    return _parse_timestamps(pd.read_csv(path), str(path))


def _read_parquet(path: Path) -> pd.DataFrame:
    # Parquet has a timestamp type, but a writer may have stored numbers or
    # text: the same parse (and the same error naming file and column) as CSV.
    return _parse_timestamps(pd.read_parquet(path), str(path))


def _read_npz(path: Path) -> pd.DataFrame:
    """ADBench layout: `X` (rows x features) and `y` (1 = anomaly)."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in ("X", "y") if key not in npz.files]
        if missing:
            raise InputError(f"npz file lacks key(s) {missing}; expected X and y", source=str(path))
        features = np.asarray(npz["X"])
        labels = np.asarray(npz["y"]).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise InputError(
            f"expected X of shape (n, d) and y of length n, "
            f"got {features.shape} and {labels.shape}",
            source=str(path),
        )
    df = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    df["label"] = labels.astype(np.int64)
    return df


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".parquet": _read_parquet,
    ".csv": _read_csv,
    ".npz": _read_npz,
}


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a .parquet, .csv or ADBench .npz file into a DataFrame.

    Raises InputError (with `source` = the path) for an unknown extension, a
    missing file, content that cannot be read, or a table without rows (an
    empty file, a header-only CSV, a 0-row parquet): every job needs rows,
    and an empty input otherwise fails later with a message about something
    else (a dtype, a percentile).
    """
    path = Path(path)
    reader = _READERS.get(_suffix(path))
    if reader is None:
        raise InputError(
            f"unsupported file type {path.suffix!r}; expected one of {', '.join(READ_SUFFIXES)}",
            source=str(path),
        )
    if not path.exists():
        raise InputError("file not found", source=str(path))
    try:
        df = reader(path)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        # A 0-byte CSV: pandas says "No columns to parse from file".
        raise InputError(_NO_ROWS, source=str(path)) from None
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read {_suffix(path)[1:]} file: {exc}", source=str(path)) from exc
    if len(df) == 0:
        raise InputError(_NO_ROWS, source=str(path))
    return df


def prepare_output(path: str | os.PathLike[str],
                   inputs: tuple[str | os.PathLike[str], ...] = ()) -> Path:
    """Check an output path before any work is done: a type we write, not one
    of the job's `inputs` (the input would be replaced by the output), and a
    folder that exists (created) and can be written. InputError otherwise."""
    path = Path(path)
    if _suffix(path) not in WRITE_SUFFIXES:
        raise InputError(
            f"cannot write {path.suffix!r} files; expected one of {', '.join(WRITE_SUFFIXES)}",
            source=str(path),
        )
    for given in inputs:
        if path.resolve() == Path(given).resolve():
            raise InputError("the output would replace the input file: choose another --out",
                             source=str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create its folder: {exc.strerror}", source=str(path)) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError("its folder is not writable", source=str(path))
    return path


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write `df` as .parquet or .csv (by extension), creating parent folders.

    Writes to a temporary file in the same folder and renames it into place,
    so readers never see a half-written file even if the process dies.
    """
    path = prepare_output(path)
    suffix = _suffix(path)
    # A unique name created by pandas itself (not mkstemp) so the final file
    # gets the usual umask-based permissions rather than 0600.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _content_sha256(df: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    # Column names and dtypes are part of the identity of the data, but
    # hash_pandas_object only hashes values.
    for name, dtype in df.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    # Index excluded: the same rows under a reset index are the same data.
    row_hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest.update(row_hashes.astype("<u8").tobytes())
    return digest.hexdigest()


def _time_range(df: pd.DataFrame) -> dict[str, str | None]:
    times = df[TIME_COLUMN]
    if len(times) == 0 or times.isna().all():
        return {"time_min": None, "time_max": None}
    return {
        "time_min": pd.Timestamp(times.min()).isoformat(),
        "time_max": pd.Timestamp(times.max()).isoformat(),
    }


def fingerprint(df: pd.DataFrame) -> dict[str, Any]:
    """A JSON-serialisable summary that identifies a dataset in an MLflow run.

    Keys: n_rows, columns ({name: dtype}), sha256 (over names, dtypes and
    values in row order); time_min/time_max when there is a `timestamp`
    column; label_rate when there is an `is_fraud` (or ADBench `label`) column.
    """
    info: dict[str, Any] = {
        "n_rows": len(df),
        "columns": {str(name): str(dtype) for name, dtype in df.dtypes.items()},
        "sha256": _content_sha256(df),
    }
    if TIME_COLUMN in df.columns:
        info.update(_time_range(df))
    label = next((name for name in LABEL_COLUMNS if name in df.columns), None)
    if label is not None:
        info["label_rate"] = float(df[label].mean()) if len(df) else None
    return info
