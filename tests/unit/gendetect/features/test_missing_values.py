"""Gaps in nullable fields: the schema's rules (`required` = presence,
`nullable` = gaps), validation that still names the field and the file,
the pipeline's NaN + indicator columns, and the scaler's statistics over
observed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.features.scaling import RobustScaler
from gendetect.schema import FieldSpec, Schema, load_schema
from tests.gappy import gappy_frame, gappy_schema

SOURCE = "data/cards.csv"


def _schema(*extra: FieldSpec, derived: tuple = ()) -> Schema:
    return Schema(name="t", fields=(FieldSpec("a", "numeric"), *extra), derived=derived)


# ------------------------------------------------------------------ schema
def test_an_optional_feature_must_be_nullable() -> None:
    with pytest.raises(ValueError, match=r"'b' is optional.*nullable: true"):
        _schema(FieldSpec("b", "numeric", required=False))
    # Not a model input: optional without gaps is fine (evaluation columns).
    _schema(FieldSpec("b", "numeric", required=False, feature=False))
    _schema(FieldSpec("b", "numeric", required=False, nullable=True))


def test_an_optional_derived_source_must_be_nullable() -> None:
    from gendetect.schema import DerivedSpec

    with pytest.raises(ValueError, match="'b' is optional"):
        _schema(FieldSpec("b", "numeric", required=False, feature=False),
                derived=(DerivedSpec("log_b", "log1p", "b"),))


@pytest.mark.parametrize("kind", ["id", "entity", "timestamp", "label"])
def test_keys_and_times_cannot_be_nullable(kind: str) -> None:
    with pytest.raises(ValueError, match=f"kind {kind} cannot be nullable"):
        _schema(FieldSpec("b", kind, nullable=True))  # type: ignore[arg-type]


def test_level_settings_only_for_learned_categoricals() -> None:
    with pytest.raises(ValueError, match="max_levels applies to categorical"):
        _schema(FieldSpec("b", "numeric", max_levels=3))
    with pytest.raises(ValueError, match="min_level_count applies"):
        _schema(FieldSpec("b", "categorical", categories=("x",), min_level_count=3))
    with pytest.raises(ValueError, match="positive integer"):
        _schema(FieldSpec("b", "categorical", max_levels=0))


def test_personal_data_is_never_a_learned_categorical() -> None:
    """Learned levels are stored with the model: raw personal values at rest."""
    with pytest.raises(ValueError, match="personal data"):
        _schema(FieldSpec("b", "categorical", pii=True))
    _schema(FieldSpec("b", "categorical", pii=True, feature=False))


def test_nullable_round_trips_and_older_schemas_read_as_before() -> None:
    schema = gappy_schema()
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
    assert again["balance"].nullable and not again["amount"].nullable
    # A field that is not nullable writes no key: older readers see the same YAML.
    assert "nullable" not in load_schema("transactions").to_dict()["fields"][0]


def test_load_names_the_schema_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cards.yaml"
    path.write_text("name: cards\nfields:\n  - {name: a, kind: numeric, required: false}\n")
    with pytest.raises(InputError) as info:
        load_schema(path)
    assert info.value.source == str(path) and "nullable" in str(info.value)


# -------------------------------------------------------------- validation
def test_gaps_pass_only_in_nullable_fields_and_errors_name_file_and_column() -> None:
    schema = gappy_schema()
    df = gappy_frame(200, 0)
    schema.validate_frame(df, source=SOURCE)  # 20% gaps in balance and email_domain
    for column, gap in (("amount", np.nan), ("channel", None)):
        bad = df.copy()
        bad.loc[5, column] = gap
        with pytest.raises(InputError) as info:
            schema.validate_frame(bad, source=SOURCE)
        assert info.value.field == column and info.value.source == SOURCE
        assert "missing" in str(info.value)
    inf = df.copy()
    inf.loc[3, "balance"] = np.inf
    with pytest.raises(InputError, match="infinite") as info:
        schema.validate_frame(inf, source=SOURCE)
    assert info.value.field == "balance"


def test_an_optional_nullable_column_may_be_left_out_a_required_one_not() -> None:
    schema = gappy_schema()
    df = gappy_frame(50, 0)
    schema.validate_frame(df.drop(columns=["balance", "email_domain"]), source=SOURCE)
    with pytest.raises(InputError) as info:
        schema.validate_frame(df.drop(columns=["x1"]), source=SOURCE)
    assert info.value.field == "x1" and info.value.source == SOURCE


def test_records_absent_or_null() -> None:
    schema = gappy_schema()
    record = gappy_frame(1, 0).drop(columns=["balance"]).iloc[0].to_dict()
    schema.validate_record({**record, "email_domain": None})
    with pytest.raises(InputError) as info:
        schema.validate_record({**record, "amount": None})
    assert info.value.field == "amount"
    required_nullable = Schema(name="t", fields=(FieldSpec("a", "numeric", nullable=True),))
    required_nullable.validate_record({"a": None})  # present, null: a gap
    with pytest.raises(InputError, match="field required"):
        required_nullable.validate_record({})  # required: the key must be there


# ---------------------------------------------------------------- pipeline
def _fitted(df: pd.DataFrame) -> FeaturePipeline:
    return FeaturePipeline(gappy_schema()).fit(df)


def test_a_gap_is_nan_with_an_indicator_and_derived_features_follow() -> None:
    from gendetect.schema import DerivedSpec

    schema = Schema(name="t", fields=(
        FieldSpec("a", "numeric"), FieldSpec("b", "numeric", required=False, nullable=True)),
        derived=(DerivedSpec("log_b", "log1p", "b"),))
    pipeline = FeaturePipeline(schema)
    assert pipeline.feature_names == ["a", "b", "b missing", "log_b"]
    x = pipeline.transform_frame(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, np.nan]}))
    np.testing.assert_array_equal(x[0], [1.0, 3.0, 0.0, np.log1p(3.0)])
    assert x[1, 0] == 2.0 and np.isnan(x[1, 1]) and x[1, 2] == 1.0 and np.isnan(x[1, 3])


def test_frames_and_records_give_the_same_matrix_with_gaps_and_left_out_fields() -> None:
    df = gappy_frame(300, 0)
    pipeline = _fitted(df)
    test = gappy_frame(40, 1).drop(columns=["balance"])  # left out of the file
    from_frame = pipeline.transform_frame(test)
    records = []
    for row in test.to_dict("records"):
        # JSON records: None for gaps, the left-out field absent.
        records.append({k: (None if v is None or v is pd.NA or v != v else v)
                        for k, v in row.items()})
    from_records = pipeline.transform(pipeline.columns_from_records(records))
    np.testing.assert_array_equal(from_frame, from_records)
    names = pipeline.feature_names
    assert np.isnan(from_frame[:, names.index("balance")]).all()
    assert (from_frame[:, names.index("balance missing")] == 1.0).all()
    gaps = test["email_domain"].isna().to_numpy()
    np.testing.assert_array_equal(from_frame[:, names.index("email_domain missing")], gaps)


def test_the_pipeline_state_travels_as_json_and_encodes_identically() -> None:
    import json

    df = gappy_frame(400, 0)
    pipeline = _fitted(df)
    state = json.loads(json.dumps(pipeline.state()))
    again = FeaturePipeline(gappy_schema(), state)
    test = gappy_frame(100, 2)
    assert again.feature_names == pipeline.feature_names
    np.testing.assert_array_equal(again.transform_frame(test), pipeline.transform_frame(test))


def test_unfitted_learned_categoricals_say_so() -> None:
    with pytest.raises(RuntimeError, match=r"email_domain.*fit the pipeline"):
        _ = FeaturePipeline(gappy_schema()).feature_names


def test_a_nullable_field_cannot_feed_the_behaviour_windows() -> None:
    raw = load_schema("transactions").to_dict()
    for f in raw["fields"]:
        if f["name"] == "amount":
            f["nullable"] = True
    with pytest.raises(ValueError, match="'amount' feeds the behaviour windows"):
        FeaturePipeline(Schema.from_dict(raw))


# ------------------------------------------------------------------ scaler
def test_the_scaler_learns_from_observed_values_and_keeps_gaps() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(500, 3))
    x[rng.random(500) < 0.3, 1] = np.nan
    x[:, 2] = np.nan  # never observed
    scaler = RobustScaler().fit(x)
    observed = x[~np.isnan(x[:, 1]), 1]
    q25, q50, q75 = np.percentile(observed, [25, 50, 75])
    assert scaler.center_[1] == pytest.approx(q50)
    assert scaler.scale_[1] == pytest.approx((q75 - q25) / 1.349)
    assert (scaler.center_[2], scaler.scale_[2]) == (0.0, 1.0)
    complete = RobustScaler().fit(x[:, :1])
    assert scaler.center_[0] == complete.center_[0] and scaler.scale_[0] == complete.scale_[0]
    z = scaler.transform(x)
    np.testing.assert_array_equal(np.isnan(z), np.isnan(x))
