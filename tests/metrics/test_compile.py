"""Compiled metrics return the numbers a pandas computation over the same rows gives, on DuckDB and
PostgreSQL alike: every metric type, aggregation, grain, filter and time range."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlglot

from sophia_lib.metrics import MetricCatalog
from sophia_lib.warehouse import Warehouse
from tests.metrics.conftest import monday, period

NULL = "<null>"


def run(warehouse: tuple[Warehouse, str], catalog: MetricCatalog, name: str, **kwargs: Any) -> pd.DataFrame:
    wh, dialect = warehouse
    compiled = catalog.compile(name, dialect=dialect, **kwargs)
    with wh.reader() as r:
        frame = r.query(compiled.sql, compiled.params).to_pandas()
    assert list(frame.columns) == list(compiled.output_columns)
    return normalise(frame, compiled.grain)


def normalise(frame: pd.DataFrame, grain: str) -> pd.DataFrame:
    frame = frame.copy()
    frame[grain] = pd.to_datetime(frame[grain]).dt.date
    for col in frame.columns[1:-1]:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), NULL).astype(str)
    frame[frame.columns[-1]] = frame[frame.columns[-1]].astype(float)
    return frame.sort_values(list(frame.columns[:-1])).reset_index(drop=True)


def expect(groups: pd.Series, grain: str, name: str) -> pd.DataFrame:
    frame = groups.rename(name).reset_index()
    frame = frame.rename(columns={"_period": grain})
    return normalise(frame, grain)


def check(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-9)


def won(deals: pd.DataFrame) -> pd.DataFrame:
    return deals[deals.is_won].assign(_period=lambda d: d.closed_at)


def test_sum_by_week_and_region(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    rows = rows.assign(_period=period(rows.closed_at, "week"), region=rows.region.fillna(NULL))
    expected = expect(rows.groupby(["_period", "region"]).amount.sum(), "week", "bookings")
    check(run(warehouse, engine_catalog, "bookings", by=["region"], grain="week"), expected)


@pytest.mark.parametrize("grain", ["day", "month", "quarter", "year"])
def test_every_grain(warehouse, engine_catalog, deals, grain: str) -> None:
    rows = deals.assign(_period=period(deals.created_at, grain))
    expected = expect(rows.groupby("_period").deal_id.count(), grain, "deals_created")
    check(run(warehouse, engine_catalog, "deals_created", grain=grain), expected)


@pytest.mark.parametrize(("name", "agg", "column"), [
    ("median_deal_size", "median", "amount"), ("active_owners", "nunique", "owner"),
    ("biggest_deal", "max", "amount")])
def test_aggregations(warehouse, engine_catalog, deals, name: str, agg: str, column: str) -> None:
    rows = deals.assign(_period=period(deals.created_at, "month"), stage=deals.stage)
    expected = expect(rows.groupby(["_period", "stage"])[column].agg(agg), "month", name)
    check(run(warehouse, engine_catalog, name, by=["stage"], grain="month"), expected)


def test_average_of_filtered_rows(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    expected = expect(rows.groupby(period(rows.closed_at, "quarter").rename("_period")).amount.mean(), "quarter",
                      "avg_deal_size")
    check(run(warehouse, engine_catalog, "avg_deal_size", grain="quarter"), expected)


def test_time_range_takes_whole_periods(warehouse, engine_catalog, deals) -> None:
    rows = deals.assign(_period=period(deals.created_at, "week"))
    first, last = monday(date(2024, 2, 7)), monday(date(2024, 3, 20))
    rows = rows[(rows._period >= first) & (rows._period <= last)]
    expected = expect(rows.groupby("_period").deal_id.count(), "week", "deals_created")
    actual = run(warehouse, engine_catalog, "deals_created", grain="week", start="2024-02-07", end=date(2024, 3, 20))
    check(actual, expected)
    assert actual.week.min() == date(2024, 2, 5) and actual.week.max() == date(2024, 3, 18)


@pytest.mark.parametrize("where", [
    {"region": ["EMEA", "APAC"], "stage": "won"},
    "region in ('EMEA', 'APAC') and stage = 'won'",
    "(region = 'EMEA' or region = 'APAC') and not stage <> 'won'",
])
def test_where_filters(warehouse, engine_catalog, deals, where) -> None:
    rows = deals[deals.region.isin(["EMEA", "APAC"]) & (deals.stage == "won")]
    rows = rows.assign(_period=period(rows.created_at, "month"))
    expected = expect(rows.groupby(["_period", "region"]).deal_id.count(), "month", "deals_created")
    check(run(warehouse, engine_catalog, "deals_created", by=["region"], grain="month", where=where), expected)


def test_where_null_and_between(warehouse, engine_catalog, deals) -> None:
    rows = deals[deals.region.isna()]
    expected = expect(rows.groupby(period(rows.created_at, "month").rename("_period")).deal_id.count(), "month",
                      "deals_created")
    check(run(warehouse, engine_catalog, "deals_created", grain="month", where={"region": None}), expected)
    check(run(warehouse, engine_catalog, "deals_created", grain="month", where="region is null"), expected)
    rows = deals[deals.owner.between("bob", "dee")]
    expected = expect(rows.groupby(period(rows.created_at, "month").rename("_period")).deal_id.count(), "month",
                      "deals_created")
    check(run(warehouse, engine_catalog, "deals_created", grain="month", where="owner between 'bob' and 'dee'"),
          expected)


@pytest.mark.parametrize(("name", "pick"), [("pipeline_value", "max"), ("pipeline_value_first", "min")])
@pytest.mark.parametrize("grain", ["week", "month"])
def test_snapshot_metric_takes_one_snapshot_per_period(warehouse, engine_catalog, pipeline, name, pick,
                                                       grain) -> None:
    rows = pipeline.assign(_period=period(pipeline.snapshot_date, grain))
    chosen = rows.groupby("_period").snapshot_date.transform(pick)
    rows = rows[rows.snapshot_date == chosen]
    expected = expect(rows.groupby(["_period", "stage"]).amount.sum(), grain, name)
    actual = run(warehouse, engine_catalog, name, by=["stage"], grain=grain)
    check(actual, expected)
    naive_sum = pipeline.assign(_period=period(pipeline.snapshot_date, grain)).groupby("_period").amount.sum()
    per_period = actual.groupby(grain)[name].sum().values
    assert (per_period <= naive_sum.values).all() and (per_period < naive_sum.values).sum() >= len(per_period) - 1


def test_ratio_fills_a_missing_numerator_with_zero(warehouse, engine_catalog, deals) -> None:
    rows = deals[deals.is_closed].assign(_period=lambda d: period(d.closed_at, "week"),
                                         region=lambda d: d.region.fillna(NULL))
    grouped = rows.groupby(["_period", "region"])
    expected = expect(grouped.is_won.sum() / grouped.is_won.count(), "week", "win_rate")
    actual = run(warehouse, engine_catalog, "win_rate", by=["region"], grain="week")
    check(actual, expected)
    assert (actual.win_rate == 0).any() and actual.win_rate.notna().all()


def test_derived_week_over_week(warehouse, engine_catalog, pipeline) -> None:
    rows = pipeline.assign(_period=period(pipeline.snapshot_date, "week"))
    rows = rows[rows.snapshot_date == rows.groupby("_period").snapshot_date.transform("max")]
    value = rows.groupby("_period").amount.sum()
    previous = value.rename(index=lambda d: d + pd.Timedelta(weeks=1))
    expected = (value / previous.reindex(value.index) - 1)
    actual = run(warehouse, engine_catalog, "pipeline_wow_change", grain="week")
    check(actual, expect(expected, "week", "pipeline_wow_change"))
    assert np.isnan(actual.pipeline_wow_change.iloc[0]) and actual.pipeline_wow_change.iloc[1:].notna().all()
    # a range reaches back one week for the comparison
    ranged = run(warehouse, engine_catalog, "pipeline_wow_change", grain="week", start="2024-03-04",
                 end="2024-03-31")
    check(ranged, actual[(actual.week >= date(2024, 3, 4)) & (actual.week <= date(2024, 3, 25))]
          .reset_index(drop=True))


def test_derived_month_offset_at_week_grain(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    weekly = rows.groupby(period(rows.closed_at, "week")).amount.sum()
    expected = {}
    for week, value in weekly.items():
        earlier = monday((pd.Timestamp(week) - pd.DateOffset(months=1)).date())
        expected[week] = value - weekly.get(earlier, 0.0)
    actual = run(warehouse, engine_catalog, "bookings_mom", grain="week")
    check(actual, expect(pd.Series(expected).rename_axis("_period"), "week", "bookings_mom"))


def test_cumulative_trailing_window(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    weekly = rows.groupby(period(rows.closed_at, "week")).amount.sum()
    weeks = pd.date_range(min(weekly.index), max(weekly.index), freq="W-MON").date
    dense = weekly.reindex(weeks, fill_value=0.0)
    trailing = dense.rolling(4, min_periods=1).sum()
    has_rows = pd.Series(pd.Index(weeks).isin(weekly.index), index=weeks).astype(float)
    window_has_rows = has_rows.rolling(4, min_periods=1).sum() > 0
    expected = trailing[np.asarray(window_has_rows)]
    actual = run(warehouse, engine_catalog, "bookings_trailing_4w")
    check(actual, expect(expected.rename_axis("_period"), "week", "bookings_trailing_4w"))
    ranged = run(warehouse, engine_catalog, "bookings_trailing_4w", start="2024-04-01", end="2024-04-28")
    check(ranged, actual[(actual.week >= date(2024, 4, 1)) & (actual.week <= date(2024, 4, 22))]
          .reset_index(drop=True))


def test_cumulative_running_total_and_year_to_date(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    monthly = rows.groupby(period(rows.closed_at, "month")).amount.sum()
    months = pd.date_range(min(monthly.index), max(monthly.index), freq="MS").date
    running = monthly.reindex(months, fill_value=0.0).cumsum()
    check(run(warehouse, engine_catalog, "bookings_running", grain="month"),
          expect(running.rename_axis("_period"), "month", "bookings_running"))
    ranged = run(warehouse, engine_catalog, "bookings_running", grain="month", start="2024-05-15",
                 end="2024-06-15")
    assert list(ranged.bookings_running) == pytest.approx([running[date(2024, 5, 1)], running[date(2024, 6, 1)]])
    ytd = monthly.reindex(months, fill_value=0.0)
    ytd = ytd.groupby([m.year for m in ytd.index]).cumsum()
    check(run(warehouse, engine_catalog, "bookings_ytd", grain="month"),
          expect(ytd.rename_axis("_period"), "month", "bookings_ytd"))


def test_cumulative_count_distinct_is_not_a_sum_of_periods(warehouse, engine_catalog, deals) -> None:
    rows = deals.assign(week=period(deals.created_at, "week"))
    actual = run(warehouse, engine_catalog, "owners_trailing_4w", by=["region"])
    for _, row in actual.sample(10, random_state=1).iterrows():
        region = rows.region.fillna(NULL)
        window = rows[(rows.week <= row.week) & (rows.week > row.week - pd.Timedelta(weeks=4).to_pytimedelta())
                      & (region == row.region)]
        assert row.owners_trailing_4w == window.owner.nunique()
    assert actual.owners_trailing_4w.max() <= 5


def test_derived_expression_with_fill(warehouse, engine_catalog, deals) -> None:
    rows = won(deals)
    bookings = rows.groupby(period(rows.closed_at, "month")).amount.sum()
    created = deals.groupby(period(deals.created_at, "month")).deal_id.count()
    index = sorted(set(bookings.index) | set(created.index))
    expected = (2 * bookings.reindex(index, fill_value=0.0) / created.reindex(index).replace(0, np.nan))
    check(run(warehouse, engine_catalog, "bookings_per_deal_created", grain="month"),
          expect(pd.Series(expected, index=index).rename_axis("_period"), "month", "bookings_per_deal_created"))


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_compiled_query_is_one_statement_with_its_lineage(engine_catalog, dialect) -> None:
    q = engine_catalog.compile("pipeline_wow_change", by=["stage"], grain="week", start="2024-02-01",
                               where={"region": "EMEA"}, dialect=dialect)
    assert len(sqlglot.parse(q.sql.replace(":", "$") if dialect == "duckdb" else q.sql, read=dialect)) == 1
    assert q.output_columns == ("week", "stage", "pipeline_wow_change")
    assert q.tables == {"marts.pipeline_snapshots"}
    assert q.columns == {f"marts.pipeline_snapshots.{c}" for c in ("snapshot_date", "stage", "region", "amount")}
    assert set(q.params) == {"p0", "start", "start1"} and q.params["p0"] == "EMEA"
    assert q.params["start"] == date(2024, 1, 29) and q.params["start1"] == date(2024, 1, 22)
    from sophia_lib.warehouse.base import BIND_PARAM

    assert set(BIND_PARAM.findall(q.sql)) == set(q.params)
    assert "EMEA" not in q.sql


def test_ratio_lineage_spans_both_inputs(engine_catalog) -> None:
    q = engine_catalog.compile("win_rate", grain="month")
    assert q.tables == {"marts.deals"}
    assert {"marts.deals.closed_at", "marts.deals.is_won", "marts.deals.is_closed"} <= q.columns
