"""The data contract: what passes, what is rejected, with which row number and reason."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.schema import (
    BAD_COLUMNS,
    DUPLICATE,
    SchemaError,
    check,
    extra_columns,
    infer_freq,
    infer_freq_parsed,
    map_columns,
    normalize_freq,
    parse,
    reason_kind,
    validate,
)

CFG = DataConfig()


def raw(rows: Sequence[tuple[str, ...]], columns: tuple[str, ...] = ("unique_id", "ds", "y")) -> pd.DataFrame:
    """A table as ingest reads it: every cell text."""
    return pd.DataFrame(rows, columns=list(columns), dtype="str")


def reasons(frame: pd.DataFrame, freq: str | None = "MS", cfg: DataConfig = CFG) -> list[tuple[int, str]]:
    bad = validate(frame, cfg, freq, source="f.csv", batch_id="b1").bad
    return list(zip(bad["row"].tolist(), bad["reason"].tolist(), strict=True))


def test_good_rows_pass_in_the_contract_types() -> None:
    frame = raw([("a", "2020-01-01", "1"), ("a", "2020-02-01", "2.5"), (" b ", "2020-01-01", " -3e2 ")])
    result = validate(frame, CFG, "MS", source="f.csv", batch_id="b1")
    expected = pd.DataFrame({
        "unique_id": pd.Series(["a", "a", "b"], dtype="str"),
        "ds": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-01-01"]).as_unit("us"),
        "y": [1.0, 2.5, -300.0],
    })
    pd.testing.assert_frame_equal(result.good, expected)
    assert result.bad.empty and tuple(result.bad.columns) == BAD_COLUMNS
    assert result.freq == "MS"


def test_each_rejection_gets_its_row_number_and_reason() -> None:
    frame = raw([
        ("a", "2020-01-01", "1"),        # 1 good
        ("a", "2020-02-01", "nan"),      # 2
        ("a", "2020-13-01", "3"),        # 3
        ("a", "2020-01-15", "4"),        # 4
        ("", "2020-03-01", "5"),         # 5
        ("b", "2020-01-01", "6"),        # 6 duplicate key ...
        ("b", "2020-01-01", "7"),        # 7 ... both copies go
        ("a", "2020-04-01", "abc"),      # 8
        ("a", "2020-05-01", ""),         # 9
        ("a", "", "1"),                  # 10
        ("a", "2020-06-01", "-inf"),     # 11
        ("a", "01/07/2020", "1"),        # 12 never guessed: not ISO 8601
    ])
    assert reasons(frame) == [
        (2, "y not finite: 'nan'"),
        (3, "ds unparsable: '2020-13-01'"),
        (4, "ds off the MS grid: 2020-01-15"),
        (5, "unique_id empty"),
        (6, "duplicate (unique_id, ds) in batch"),
        (7, "duplicate (unique_id, ds) in batch"),
        (8, "y not a number: 'abc'"),
        (9, "y missing"),
        (10, "ds missing"),
        (11, "y not finite: '-inf'"),
        (12, "ds unparsable: '01/07/2020'"),
    ]


def test_bad_rows_carry_batch_source_and_the_raw_row_as_json() -> None:
    frame = raw([("a", "2020-01-01", "1"), ("a", "2020-02-01", " nan ")])
    bad = validate(frame, CFG, "MS", source="in/f.csv", batch_id="b1").bad
    assert bad.to_dict("records") == [{
        "batch_id": "b1", "source": "in/f.csv", "row": 2, "reason": "y not finite: 'nan'",
        "raw": json.dumps({"unique_id": "a", "ds": "2020-02-01", "y": " nan "}),
    }]
    assert bad["row"].dtype == np.int64


def test_a_duplicate_is_rejected_even_when_its_twin_has_a_bad_value() -> None:
    frame = raw([("a", "2020-01-01", "nan"), ("a", "2020-01-01", "5"), ("a", "2020-02-01", "6")])
    assert reasons(frame) == [(1, "y not finite: 'nan'"), (2, "duplicate (unique_id, ds) in batch")]


def test_first_failing_check_wins() -> None:
    assert reasons(raw([("", "2020-01-15", "nan")])) == [(1, "unique_id empty")]


def test_tz_aware_timestamps_are_converted_to_utc_and_made_naive() -> None:
    frame = raw([
        ("a", "2020-01-01T02:00:00+02:00", "1"),
        ("a", "2020-01-01T01:00:00Z", "2"),
        ("a", "2020-01-01 02:00:00", "3"),
        ("a", "2020-01-01T00:00:00-03:00", "4"),
    ])
    good = validate(frame, CFG, "h", source="f", batch_id="b").good
    assert good["ds"].dtype == "datetime64[us]"
    assert good["ds"].tolist() == [
        pd.Timestamp("2020-01-01 00:00"), pd.Timestamp("2020-01-01 01:00"),
        pd.Timestamp("2020-01-01 02:00"), pd.Timestamp("2020-01-01 03:00"),
    ]


def test_tick_grids_use_floor_equality() -> None:
    frame = raw([("a", "2020-01-01", "1"), ("a", "2020-01-02 12:00", "2"), ("a", "2020-01-03T00:00:00+01:00", "3")])
    assert reasons(frame, "D") == [
        (2, "ds off the D grid: 2020-01-02 12:00:00"),
        (3, "ds off the D grid: 2020-01-02 23:00:00"),
    ]
    assert reasons(raw([("a", "2020-01-01 10:30", "1"), ("a", "2020-01-01 11:00", "2")]), "h") == [
        (1, "ds off the h grid: 2020-01-01 10:30:00"),
    ]


def test_month_start_grid_rejects_a_time_of_day() -> None:
    assert reasons(raw([("a", "2020-02-01 06:00", "1")])) == [(1, "ds off the MS grid: 2020-02-01 06:00:00")]


def test_covariates_must_exist_and_be_finite() -> None:
    cfg = DataConfig(covariates=("price",))
    frame = raw([("a", "2020-01-01", "1", "9.5"), ("a", "2020-02-01", "2", "inf"), ("a", "2020-03-01", "3", "")],
                columns=("unique_id", "ds", "y", "price"))
    result = validate(frame, cfg, "MS", source="f", batch_id="b")
    assert result.good["price"].tolist() == [9.5] and result.good["price"].dtype == np.float64
    assert reasons(frame, cfg=cfg) == [(2, "price not finite: 'inf'"), (3, "price missing")]
    with pytest.raises(SchemaError, match="'price' \\(covariate\\)"):
        validate(raw([("a", "2020-01-01", "1")]), cfg, "MS", source="f", batch_id="b")


def test_column_mapping_and_missing_columns() -> None:
    cfg = DataConfig(id_col="series", time_col="date", target_col="value")
    frame = raw([("s1", "2020-01-01", "4", "x")], columns=("series", "date", "value", "note"))
    assert list(map_columns(frame, cfg).columns) == ["unique_id", "ds", "y"]
    assert extra_columns(frame, cfg) == ("note",)
    assert validate(frame, cfg, "MS", source="f", batch_id="b").good["y"].tolist() == [4.0]
    with pytest.raises(SchemaError, match="missing column\\(s\\) 'ds' \\(from 'date'\\)"):
        map_columns(raw([("s1", "2020-01-01", "4")], columns=("series", "day", "value")), cfg)
    with pytest.raises(SchemaError, match="column 'ds' is present and also mapped from 'date'"):
        map_columns(raw([("s1", "2020-01-01", "4", "x")], columns=("series", "date", "value", "ds")), cfg)


def test_validate_infers_the_frequency_when_none_is_given() -> None:
    # Series b is irregular and abstains; a votes for month starts, so b's odd date is off-grid.
    frame = raw([("a", f"2020-0{m}-01", "1") for m in range(1, 5)]
                + [("b", d, "1") for d in ("2020-01-01", "2020-02-01", "2020-05-03")])
    result = validate(frame, CFG, None, source="f", batch_id="b")
    assert result.freq == "MS"
    assert list(zip(result.bad["row"], result.bad["reason"], strict=True)) == [(7, "ds off the MS grid: 2020-05-03")]


@pytest.mark.parametrize(("stamps", "expected"), [
    (["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"], "MS"),
    (["2020-04-01", "2020-05-01", "2020-06-01"], "MS"),
    (["2020-01-01", "2020-01-02", "2020-01-03"], "D"),
    (["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00"], "h"),
    (["2020-01-05", "2020-01-12", "2020-01-19"], "W-SUN"),
])
def test_infer_freq(stamps: list[str], expected: str) -> None:
    frame = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(stamps)})
    assert infer_freq(frame) == expected


def test_infer_freq_takes_the_most_common_alias_and_reads_text() -> None:
    frame = pd.DataFrame({
        "unique_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"],
        "ds": ["2020-01-01", "2020-02-01", "2020-03-01", "2021-05-01", "2021-06-01", "2021-07-01",
               "2020-01-01", "2020-01-02", "2020-01-03", "junk"],
    })
    assert infer_freq(frame) == "MS"


def test_infer_freq_says_why_it_cannot() -> None:
    with pytest.raises(ValueError, match="no series has 3 or more distinct timestamps"):
        infer_freq(pd.DataFrame({"unique_id": ["a", "a"], "ds": pd.to_datetime(["2020-01-01", "2020-02-01"])}))
    with pytest.raises(ValueError, match="series are irregular"):
        infer_freq(pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-03-01"])}))


def test_normalize_freq_and_reason_kind() -> None:
    assert [normalize_freq(f) for f in ("MS", "D", "h", "W")] == ["MS", "D", "h", "W-SUN"]
    with pytest.raises(ValueError, match="unknown frequency 'M'"):
        normalize_freq("M")
    assert reason_kind("y not finite: 'nan'") == "y not finite"
    assert reason_kind("duplicate (unique_id, ds) in batch") == "duplicate (unique_id, ds) in batch"


def test_ids_are_compared_after_stripping_so_padded_copies_are_duplicates() -> None:
    frame = raw([(" a", "2020-01-01", "1"), ("a ", "2020-01-01", "2"), ("b", "2020-01-01", "3")])
    assert reasons(frame) == [(1, DUPLICATE), (2, DUPLICATE)]


@pytest.mark.parametrize("order", ["grouped", "shuffled"])
def test_duplicates_are_found_whatever_the_row_order(order: str) -> None:
    rows = [(u, f"2020-{m:02d}-01", "1") for u in ("a", "b", "c") for m in range(1, 5)] + [("b", "2020-03-01", "9")]
    if order == "shuffled":
        rows = [rows[i] for i in (12, 3, 7, 0, 11, 5, 9, 1, 4, 10, 2, 8, 6)]
    found = reasons(raw(rows))
    positions = [i + 1 for i, r in enumerate(rows) if r[:2] == ("b", "2020-03-01")]
    assert found == [(p, DUPLICATE) for p in positions] and len(positions) == 2
    # An id that starts two runs in a grouped-looking file is caught too.
    split = raw([("a", "2020-01-01", "1"), ("b", "2020-01-01", "2"), ("a", "2020-01-01", "3")])
    assert reasons(split) == [(1, DUPLICATE), (3, DUPLICATE)]


def test_parse_takes_typed_columns_and_refuses_types_that_cannot_hold_the_contract() -> None:
    table = pa.table({
        "unique_id": pa.array([1, 2, None], type=pa.int64()),
        "ds": pa.array([pd.Timestamp("2020-01-01 01:00", tz="Europe/Paris"), None, pd.Timestamp("2020-01-01", tz="UTC")],
                       type=pa.timestamp("ns", tz="Europe/Paris")),
        "y": pa.array([1.5, 2.0, float("nan")], type=pa.float32()),
    })
    result = check(parse(table, CFG), "h", source="t.parquet", batch_id="b")
    assert result.good.to_pydict() == {
        "unique_id": ["1"], "ds": [pd.Timestamp("2020-01-01 00:00").to_pydatetime()], "y": [1.5],
    }
    assert result.bad[["row", "reason"]].values.tolist() == [[2, "ds missing"], [3, "unique_id empty"]]
    with pytest.raises(SchemaError, match="column 'y' has type bool; expected numbers"):
        parse(table.set_column(2, "y", pa.array([True, False, True])), CFG)
    with pytest.raises(SchemaError, match="column 'ds' \\(ds\\) has type int64"):
        parse(table.set_column(1, "ds", pa.array([20200101, 20200201, 20200301])), CFG)


def test_row_numbers_can_be_given_for_tables_with_rows_set_aside() -> None:
    table = pa.table({"unique_id": ["a", "a", "a"], "ds": ["2020-01-01", "bad", "2020-03-01"], "y": ["1", "2", "x"]})
    result = check(parse(table, CFG, rows=np.array([2, 5, 9])), "MS", source="f", batch_id="b")
    assert result.bad[["row", "reason"]].values.tolist() == [[5, "ds unparsable: 'bad'"], [9, "y not a number: 'x'"]]


def test_only_a_table_with_keys_needs_a_frequency() -> None:
    empty = parse(pa.table({"unique_id": pa.array([], pa.string()), "ds": pa.array([], pa.string()),
                            "y": pa.array([], pa.string())}), CFG)
    assert check(empty, None, source="f", batch_id="b").good.num_rows == 0
    keyless = parse(pa.table({"unique_id": ["a", ""], "ds": ["junk", "2020-01-01"], "y": ["1", "2"]}), CFG)
    assert check(keyless, None, "f", "b").bad["reason"].tolist() == ["ds unparsable: 'junk'", "unique_id empty"]
    with pytest.raises(ValueError, match="needs a frequency"):
        check(parse(pa.table({"unique_id": ["a"], "ds": ["2020-01-01"], "y": ["1"]}), CFG), None, "f", "b")


def test_infer_freq_parsed_votes_across_tables() -> None:
    one = parse(pa.table({"unique_id": ["a"] * 3, "ds": ["2020-01-01", "2020-02-01", "2020-03-01"], "y": ["1"] * 3}), CFG)
    two = parse(pa.table({"unique_id": ["b"] * 2 + ["c"] * 3,
                          "ds": ["2021-01-01", "2021-02-01", "2020-01-01", "2020-01-02", "2020-01-03"],
                          "y": ["1"] * 5}), CFG)
    # a votes MS, c votes D, b has two stamps and abstains: the tie goes to the first alias.
    assert infer_freq_parsed([one, two]) == "D"
    assert infer_freq_parsed([one]) == "MS"
