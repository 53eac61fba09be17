"""Column-wise batch scoring: the same decisions as the API's per-record
path, explanations only where asked, Arrow/Parquet and CSV output, behaviour
features given or computed, and streaming in chunks with the history carried
across (exact)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gendetect.bundle import FraudModelBundle
from gendetect.decisions import BATCH_HISTORY_COLUMN
from gendetect.errors import InputError
from gendetect.features.pipeline import WindowHistory, split_at_last_time
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig
from gendetect.timestamps import column_to_ns
from scoring.batch import score_file

RTOL = 1e-6


@pytest.fixture(scope="module")
def history(small_transactions: pd.DataFrame) -> pd.DataFrame:
    return small_transactions.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)


@pytest.fixture(scope="module", params=["gan", "ensemble", "gan+labels"])
def bundle(request: pytest.FixtureRequest, history: pd.DataFrame) -> FraudModelBundle:
    """Unsupervised, and label-aware (fitted with its labels: the model a
    training with labels, e.g. `make demo`, gives users)."""
    kind, _, labels = request.param.partition("+")
    fitted = FraudModelBundle(
        kind,
        schema="transactions",
        max_epochs=1,
        seed=0,
        accelerator="cpu",
        alert_rate=0.05,
    ).fit(history, "is_fraud" if labels else None)
    assert fitted.label_head_.active == bool(labels)
    return fitted


def _api(bundle: FraudModelBundle, df: pd.DataFrame) -> list[dict]:
    """The API's path: records without labels, window features from the
    offline engine over the same rows."""
    config = bundle.pipeline.window_config
    windows = add_window_features(df, config)[list(config.feature_names)].to_dict("records")
    records = df.drop(columns=["is_fraud"]).to_dict("records")
    return bundle.score_records(records, windows)


def test_batch_equals_the_api_path(bundle: FraudModelBundle, history: pd.DataFrame) -> None:
    expected = _api(bundle, history)
    got = bundle.score_batch(history, explain="all")
    np.testing.assert_allclose(got.score, [e["score"] for e in expected], rtol=RTOL)
    np.testing.assert_allclose(got.risk, [e["risk"] for e in expected], rtol=RTOL, atol=1e-9)
    assert got.threshold == expected[0]["threshold"]
    near = np.abs(got.score - got.threshold) <= RTOL * abs(got.threshold)
    assert (got.is_fraud == [e["is_fraud"] for e in expected])[~near].all()
    assert got.batch_history_only
    for column, key in (("top_features", "feature"), ("top_reasons", "reason")):
        lists = got.explanation_lists(column)
        assert [[r[key] for r in row] for row in lists] == [
            [r[key] for r in e[column]] for e in expected
        ]
    # The top features' observed and expected values too (null in the same places).
    for name in ("value", "expected"):
        batch = [r[name] for row in got.explanation_lists("top_features") for r in row]
        api = [r[name] for e in expected for r in e["top_features"]]
        assert [v is None for v in batch] == [v is None for v in api]
        np.testing.assert_allclose([v for v in batch if v is not None],
                                   [v for v in api if v is not None], rtol=RTOL)


def test_scores_are_deterministic(bundle: FraudModelBundle, history: pd.DataFrame) -> None:
    first = bundle.score_batch(history)
    again = bundle.score_batch(history.copy())
    np.testing.assert_array_equal(first.score, again.score)
    np.testing.assert_array_equal(first.explained, again.explained)


def test_explanations_where_asked(bundle: FraudModelBundle, history: pd.DataFrame) -> None:
    flagged = bundle.score_batch(history)
    assert 0 < flagged.n_flagged < len(history)
    np.testing.assert_array_equal(flagged.explained, np.flatnonzero(flagged.is_fraud))
    lists = flagged.explanation_lists("top_features")
    assert all((len(v) == bundle.top_k) == f for v, f in zip(lists, flagged.is_fraud, strict=True))
    everything = bundle.score_batch(history, explain="all")
    assert len(everything.explained) == len(history)
    # The flagged rows' explanations are the same whichever rows are explained.
    rows = flagged.explained
    np.testing.assert_array_equal(flagged.feature_idx, everything.feature_idx[rows])
    np.testing.assert_allclose(flagged.reason_share, everything.reason_share[rows])
    np.testing.assert_array_equal(flagged.feature_expected, everything.feature_expected[rows])
    nothing = bundle.score_batch(history, explain="none")
    assert len(nothing.explained) == 0
    np.testing.assert_array_equal(nothing.score, flagged.score)
    with pytest.raises(InputError, match="explain"):
        bundle.score_batch(history, explain="some")


def test_arrow_output_is_typed(bundle: FraudModelBundle, history: pd.DataFrame) -> None:
    decisions = bundle.score_batch(history.head(2000))
    table = decisions.to_arrow("gd_")
    assert table.schema.field("gd_score").type == pa.float64()
    assert table.schema.field("gd_is_fraud").type == pa.bool_()
    features = table.schema.field("gd_top_features").type
    assert pa.types.is_list(features)
    assert features.value_type == pa.struct(
        [("feature", pa.string()), ("contribution", pa.float64()), ("value", pa.float64()),
         ("expected", pa.float64())]
    )
    assert table.schema.field("gd_top_reasons").type.value_type.names == ["reason", "contribution"]
    rows = table.column("gd_top_features").to_pylist()
    frame = decisions.to_pandas()
    assert rows == frame["top_features"].tolist()
    # The frame's explanation columns are the Arrow arrays themselves (no
    # Python list per row); an element still reads as a list of dicts.
    for column in ("top_features", "top_reasons"):
        assert isinstance(frame[column].dtype, pd.ArrowDtype)
    flagged_row = int(np.flatnonzero(decisions.is_fraud)[0])
    assert frame["top_features"][flagged_row] == rows[flagged_row]
    assert frame[BATCH_HISTORY_COLUMN].all()
    # Rows without an explanation: an empty list, never null.
    assert table.column("gd_top_features").null_count == 0
    assert sum(1 for r in rows if r) == decisions.n_flagged
    texts = decisions.explanation_json("top_reasons")
    assert [json.loads(t) for t in texts] == frame["top_reasons"].tolist()


def test_given_behaviour_features_are_used_as_given(
    bundle: FraudModelBundle, history: pd.DataFrame
) -> None:
    config = bundle.pipeline.window_config
    featured = add_window_features(history, config)
    tail = featured.tail(300)
    full = bundle.score_batch(history)
    given = bundle.score_batch(tail)
    assert not given.batch_history_only
    np.testing.assert_allclose(given.score, full.score[-300:], rtol=RTOL)
    # Without them the tail is its own history: other scores, and it says so.
    alone = bundle.score_batch(tail.drop(columns=list(config.feature_names)))
    assert alone.batch_history_only
    assert not np.allclose(alone.score, full.score[-300:], rtol=RTOL)
    with pytest.raises(InputError, match="in part") as info:
        bundle.score_batch(tail.drop(columns=["terminal_risk_7d"]))
    assert info.value.field == "terminal_risk_7d"
    bad = tail.copy()
    bad.iloc[3, bad.columns.get_loc("customer_nb_tx_1d")] = np.nan
    with pytest.raises(InputError) as info:
        bundle.score_batch(bad)
    assert info.value.field == "customer_nb_tx_1d"


# ---------------------------------------------------------------- streaming
def _with_ties(df: pd.DataFrame) -> pd.DataFrame:
    """Runs of equal timestamps (the same customer), ids out of time order
    inside them: the tie rule must hold across chunk boundaries."""
    df = df.copy()
    for start in range(50, len(df) - 20, 997):
        df.loc[start : start + 6, "timestamp"] = df.loc[start, "timestamp"]
        df.loc[start : start + 6, "customer_id"] = df.loc[start, "customer_id"]
        df.loc[start : start + 6, "transaction_id"] = df.loc[
            start : start + 6, "transaction_id"
        ].to_numpy()[::-1]
    return df


def _chunks(times: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Chunks of about `size` rows that never split a timestamp (as the
    scoring job cuts them)."""
    out, start = [], 0
    while start < len(times):
        stop = min(start + size, len(times))
        if stop < len(times):
            cut = start + split_at_last_time(times[start:stop])
            if cut == start:  # one timestamp fills the chunk: take all of its rows
                cut = stop
                while cut < len(times) and times[cut] == times[start]:
                    cut += 1
            stop = cut
        out.append((start, stop))
        start = stop
    return out


@pytest.mark.parametrize("chunk", [1, 333, 2048])
def test_carried_history_is_exact(history: pd.DataFrame, chunk: int) -> None:
    config = WindowConfig()
    df = _with_ties(history)
    expected = add_window_features(df, config)
    stream = WindowHistory(config)
    times = column_to_ns(df["timestamp"])
    parts = [
        pd.DataFrame(stream.features(df.iloc[a:b], times[a:b])) for a, b in _chunks(times, chunk)
    ]
    got = pd.concat(parts, ignore_index=True)
    assert len(got) == len(df)
    for name in config.feature_names:
        np.testing.assert_allclose(
            got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=name
        )
    # The tail holds the rows within the windows' reach, no more.
    reach = max(config.customer_horizon_ns, config.terminal_horizon_ns)
    assert stream.tail_rows == int((times > times.max() - reach).sum())


def test_streaming_refuses_rows_out_of_time_order(history: pd.DataFrame) -> None:
    config = WindowConfig()
    stream = WindowHistory(config)
    later, earlier = history.iloc[3000:], history.iloc[:3000]
    stream.features(later, column_to_ns(later["timestamp"]))
    with pytest.raises(InputError, match="time order"):
        stream.features(earlier, column_to_ns(earlier["timestamp"]))


def test_parquet_dictionaries_skip_floating_point_columns(
    bundle: FraudModelBundle, history: pd.DataFrame, tmp_path: Path
) -> None:
    data, out = tmp_path / "tx.parquet", tmp_path / "scored.parquet"
    history.head(1500).to_parquet(data, index=False)
    score_file(bundle, data, out)
    meta = pq.ParquetFile(out).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings
                 for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["gd_score"]
    assert "RLE_DICTIONARY" not in encodings["amount"]
    assert "RLE_DICTIONARY" in encodings["gd_top_features.list.element.feature"]
    assert "RLE_DICTIONARY" in encodings["customer_id"]
    written = pq.read_table(out)
    assert written.column("gd_top_features").to_pylist() == bundle.score_batch(
        history.head(1500)).explanation_lists("top_features")


def _scores(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_score_file_streams_like_one_piece(
    bundle: FraudModelBundle, history: pd.DataFrame, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if bundle.label_head_.active:
        # Known, and not the head's: the carried history's window features
        # match the whole file's to 1e-9, not bit for bit (summation order),
        # and one row sits on a split of the trees (the reference traversal
        # flips it too). Strict: passes once streaming is bitwise exact.
        request.applymarker(pytest.mark.xfail(strict=True, reason="streamed window features "
                                              "are exact to 1e-9, not bitwise"))
    data = tmp_path / "tx.parquet"
    # Small row groups: the reader streams them as chunks.
    pq.write_table(
        pa.Table.from_pandas(_with_ties(history), preserve_index=False), data, row_group_size=700
    )
    whole = score_file(bundle, data, tmp_path / "whole.parquet", chunk_rows=0)
    streamed = score_file(
        bundle, data, tmp_path / "streamed.parquet", chunk_rows=999, extra={"model_version": "7"}
    )
    assert streamed.streamed and streamed.chunks > 3 and not whole.streamed
    a, b = _scores(tmp_path / "whole.parquet"), _scores(tmp_path / "streamed.parquet")
    assert len(a) == len(b) == len(history)
    pd.testing.assert_series_equal(a["transaction_id"], b["transaction_id"])
    np.testing.assert_allclose(b["gd_score"], a["gd_score"], rtol=RTOL)
    assert set(b["gd_model_version"]) == {"7"}
    assert b["gd_batch_history_only"].all()
    expected = bundle.score_batch(_with_ties(history))
    np.testing.assert_allclose(a["gd_score"], expected.score, rtol=RTOL)
    assert streamed.flagged == int(b["gd_is_fraud"].sum())


def test_score_file_out_of_time_order_is_scored_in_one_piece(
    bundle: FraudModelBundle,
    history: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shuffled = history.sample(frac=1.0, random_state=0)
    data = tmp_path / "shuffled.parquet"
    pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), data, row_group_size=500)
    summary = score_file(bundle, data, tmp_path / "out.parquet", chunk_rows=800)
    assert not summary.streamed
    assert "not in time order" in capsys.readouterr().err
    out = _scores(tmp_path / "out.parquet")
    np.testing.assert_allclose(out["gd_score"], bundle.score_batch(shuffled).score, rtol=RTOL)


def test_score_file_never_writes_over_its_input(
    bundle: FraudModelBundle, history: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "tx.parquet"
    pq.write_table(pa.Table.from_pandas(history, preserve_index=False), data)
    before = data.read_bytes()
    with pytest.raises(InputError, match="replace the input"):
        score_file(bundle, data, tmp_path / "." / "tx.parquet")
    assert data.read_bytes() == before


@pytest.mark.parametrize("chunk_rows", [0, 800])  # read whole / streamed
def test_score_file_numeric_timestamps_name_file_and_column(
    bundle: FraudModelBundle, history: pd.DataFrame, tmp_path: Path, chunk_rows: int
) -> None:
    epochs = history.assign(timestamp=history["timestamp"].astype("int64") // 10**9)
    data = tmp_path / "epochs.parquet"
    pq.write_table(pa.Table.from_pandas(epochs, preserve_index=False), data, row_group_size=500)
    with pytest.raises(InputError, match="not numbers") as info:
        score_file(bundle, data, tmp_path / "out.parquet", chunk_rows=chunk_rows)
    assert info.value.field == "timestamp" and info.value.source == str(data)
    assert not (tmp_path / "out.parquet").exists()


def test_score_file_csv_has_json_text(
    bundle: FraudModelBundle, history: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "tx.csv"
    history.head(1500).to_csv(data, index=False)
    score_file(bundle, data, tmp_path / "out.csv", explain="all")
    out = pd.read_csv(tmp_path / "out.csv")
    lists = [json.loads(v) for v in out["gd_top_features"]]
    assert all(len(v) == bundle.top_k for v in lists)
    expected = bundle.score_batch(history.head(1500), explain="all")
    np.testing.assert_allclose(out["gd_score"], expected.score, rtol=RTOL)
    assert lists == expected.explanation_lists("top_features")
