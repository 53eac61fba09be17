"""Categorical fields: declared categories as before, learned levels for the
rest (top levels + other + missing + log training frequency), unseen levels
as "other" and counted, and no one-hot explosion for high cardinality."""

from __future__ import annotations

import numpy as np
import pytest

from gendetect.features.categorical import OTHER, CategoricalEncoder, level_text
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import FieldSpec
from tests.gappy import MAX_LEVELS, N_DOMAINS, gappy_frame, gappy_schema

SPEC = FieldSpec("domain", "categorical", nullable=True, max_levels=3, min_level_count=2)


def _values(*items: object) -> np.ndarray:
    return np.array(items, dtype=object)


def test_levels_are_the_frequent_ones_with_a_minimum_count() -> None:
    train = _values(*["a"] * 5, *["b"] * 4, *["c"] * 3, *["d"] * 2, "e", None, None)
    enc = CategoricalEncoder.learn(SPEC, train)
    assert enc.levels == ("a", "b", "c")  # max_levels=3
    assert enc.feature_names == ["domain=a", "domain=b", "domain=c", f"domain={OTHER}",
                                 "domain missing", "domain frequency"]
    rare = CategoricalEncoder.learn(FieldSpec("d", "categorical", min_level_count=5), train)
    assert rare.levels == ("a",)  # only "a" is seen 5 times


def test_encoding_of_known_rare_unseen_and_missing_values() -> None:
    train = _values(*["a"] * 5, *["b"] * 4, *["c"] * 3, *["d"] * 2, "e", None, None)
    n = len(train)
    enc = CategoricalEncoder.learn(SPEC, train)
    out, unseen = enc.transform(_values("a", "d", "zzz", None))
    onehot, other, missing, freq = out[:, :3], out[:, 3], out[:, 4], out[:, 5]
    np.testing.assert_array_equal(onehot, [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(other, [0, 1, 1, 0])  # rare and unseen share "other"
    np.testing.assert_array_equal(missing, [0, 0, 0, 1])
    # log((count + 1) / (rows + 1)): a missing value is a level of its own (count 2).
    np.testing.assert_allclose(freq, np.log(np.array([6, 3, 1, 3]) / (n + 1)))
    assert unseen == 1  # only "zzz"; "d" was seen in training


def test_codes_read_the_same_from_a_csv_float_column_and_from_json() -> None:
    text, missing = level_text(np.array([5411.0, np.nan, 7995.0]))
    assert list(text[~missing]) == ["5411", "7995"] and missing.tolist() == [False, True, False]
    assert list(level_text(_values("5411", 5411, 5411.0))[0]) == ["5411"] * 3
    # Long columns take another path (text per distinct value): same text.
    long = np.tile([5411.0, np.nan, 2.5, -3.0], 50)
    text, missing = level_text(long)
    expected = np.tile(["5411", "", "2.5", "-3"], 50)
    assert (text[~missing] == expected[~missing]).all() and missing.sum() == 50


def test_declared_categories_encode_as_before() -> None:
    spec = FieldSpec("channel", "categorical", categories=("web", "pos"))
    enc = CategoricalEncoder.from_spec(spec)
    assert enc is not None and enc.feature_names == ["channel=web", "channel=pos"]
    out, unseen = enc.transform(_values("pos", "web"))
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])
    assert unseen == 0


def test_high_cardinality_costs_a_bounded_number_of_columns() -> None:
    df = gappy_frame(2000, 0)
    assert df["email_domain"].nunique() > 300  # out of N_DOMAINS = 500
    pipeline = FeaturePipeline(gappy_schema()).fit(df)
    domain = [n for n in pipeline.feature_names if n.startswith("email_domain")]
    assert len(domain) == MAX_LEVELS + 3 < N_DOMAINS
    x = pipeline.transform_frame(df)
    assert x.shape[1] == len(pipeline.feature_names)
    # The frequency column tells the rare levels inside "other" apart.
    freq = x[:, pipeline.feature_names.index("email_domain frequency")]
    other = x[:, pipeline.feature_names.index(f"email_domain={OTHER}")] == 1
    assert len(np.unique(freq[other])) > 10


def test_unseen_levels_become_other_and_are_counted_per_pipeline() -> None:
    pipeline = FeaturePipeline(gappy_schema()).fit(gappy_frame(500, 0))
    test = gappy_frame(20, 1)
    test.loc[:4, "email_domain"] = [f"new{k}.example" for k in range(5)]
    before = pipeline.unseen_levels().get("email_domain", 0)
    x = pipeline.transform_frame(test)
    counted = pipeline.unseen_levels()["email_domain"]
    assert counted >= before + 5
    # A second look at scored records (live drift) does not count them again.
    again = pipeline.transform(pipeline.columns_from_frame(test), count_unseen=False)
    np.testing.assert_array_equal(again, x)
    assert pipeline.unseen_levels()["email_domain"] == counted
    names = pipeline.feature_names
    assert (x[:5, names.index(f"email_domain={OTHER}")] == 1).all()
    floor = np.log(1 / (500 + 1))
    assert x[:5, names.index("email_domain frequency")] == pytest.approx([floor] * 5)
