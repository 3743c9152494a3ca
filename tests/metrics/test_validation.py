"""metrics.yaml is checked at load: every mistake names the metric, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia_lib.metrics import MetricDefinitionError, MetricNotFoundError, MetricQueryError, load_catalog

MODEL = """
models:
  - name: deals
    table: marts.deals
    time: created_at
    dimensions: [stage, region]
    columns: [amount, is_won, closed_at]
"""
GOOD = """
  - {name: bookings, description: d, owner: o, unit: currency, type: simple, model: deals, agg: sum, expr: amount}
  - {name: deals, description: d, owner: o, unit: count, type: simple, model: deals, agg: count}
"""

INVALID = [
    ("  - {name: bookings, description: d, owner: o, unit: count, type: simple, model: deals, agg: count}",
     "metric 'bookings', key 'name': is defined twice"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: dealz, agg: count}",
     "model 'dealz' is not defined — did you mean 'deals'?"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: sum, expr: amont}",
     "metric 'x', key 'expr': unknown column(s) ['amont']"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, filter: won}",
     "metric 'x', key 'filter': unknown column(s) ['won']"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, time: closed}",
     "column 'closed' is not declared on model 'deals' — did you mean 'closed_at'?"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: sum}",
     "agg 'sum' needs an expression"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: total, expr: amount}",
     "metric 'x': agg: Input should be 'sum', 'count'"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: sum, "
     "expr: '(select 1)'}", "must be an expression over columns, not a query"),
    ("  - {name: x, description: d, owner: o, unit: ratio, type: ratio, numerator: bookngs, denominator: deals}",
     "metric 'x', key 'numerator': metric 'bookngs' is not defined — did you mean 'bookings'?"),
    ("  - {name: a, description: d, owner: o, unit: ratio, type: ratio, numerator: b, denominator: deals}\n"
     "  - {name: b, description: d, owner: o, unit: ratio, type: derived, expr: a * 2, metrics: [a]}",
     "cycle: a → b → a"),
    ("  - {name: x, description: d, owner: o, unit: ratio, type: derived, expr: bookings / prev, "
     "metrics: [bookings, {name: bookings, offset: 1 week, alias: prev}]}",
     "key 'grains': offset '1 week' is finer than grains ['month', 'quarter', 'year']"),
    ("  - {name: x, description: d, owner: o, unit: ratio, type: derived, expr: bookings * 2, "
     "metrics: [bookings, bookings]}", "'bookings' is used twice"),
    ("  - {name: x, description: d, owner: o, unit: ratio, type: derived, expr: bookings + deal, metrics: [bookings]}",
     "names ['deal'], which are not among its metrics ['bookings']"),
    ("  - {name: x, description: d, owner: o, unit: ratio, type: derived, expr: 'max(bookings)', metrics: [bookings]}",
     "Max is not allowed in a derived expression"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, "
     "grains: [fortnight]}",
     "metric 'x': grains.0: Input should be 'day', 'week'"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, grains: [week], "
     "default_grain: month}", "key 'default_grain': 'month' is not in its grains ['week']"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, "
     "dimensions: [owner]}", "key 'dimensions': ['owner'] are not dimensions of its inputs"),
    ("  - {name: x, description: d, owner: o, unit: c, type: cumulative, metric: bookings, window: 4 weeks}",
     "metric 'x': unit: Input should be 'currency'"),
    ("  - {name: x, description: d, owner: o, unit: count, type: cumulative, metric: bookings, window: fortnight}",
     "'fortnight' is not a period"),
    ("  - {name: x, description: d, owner: o, unit: count, type: gauge}", "type 'gauge' is not a metric type"),
    ("  - {name: x, owner: o, unit: count, type: simple, model: deals, agg: count}",
     "metric 'x': description: Field required"),
    ("  - {name: x, description: d, owner: o, unit: count, type: simple, model: deals, agg: count, agg: sum}",
     "key 'agg' appears twice"),
]


def write(tmp_path: Path, metrics: str, models: str = MODEL) -> Path:
    path = tmp_path / "metrics.yaml"
    path.write_text(f"{models}\nmetrics:\n{GOOD}{metrics}\n")
    return path


def test_a_good_file_loads(tmp_path: Path) -> None:
    catalog = load_catalog(path=write(tmp_path, ""))
    assert catalog.names == ["bookings", "deals"] and catalog.dimensions("bookings") == ["stage", "region"]


@pytest.mark.parametrize(("entry", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_definitions_are_explained(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(MetricDefinitionError) as err:
        load_catalog(path=write(tmp_path, entry))
    assert message in str(err.value)
    assert "fix:" in str(err.value)


def test_model_mistakes(tmp_path: Path) -> None:
    for models, message in [
        (MODEL.replace("marts.deals", "raw_salesforce.deals"), "is not a serving table"),
        (MODEL.replace("[stage, region]", "[stage, week]"), "['week'] collide with the time grain columns"),
        (MODEL + "  - {name: deals, table: marts.other, time: t}", "model 'deals', key 'name': is defined twice"),
    ]:
        with pytest.raises(MetricDefinitionError, match="model 'deals'") as err:
            load_catalog(path=write(tmp_path, "", models))
        assert message in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(MetricDefinitionError, match="does not exist"):
        load_catalog(path=tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("metrics: [\n")
    with pytest.raises(MetricDefinitionError, match="not valid YAML"):
        load_catalog(path=tmp_path / "bad.yaml")


def test_config_path_overrides_the_shipped_file(tmp_path: Path) -> None:
    from sophia_lib.config import SophiaConfig

    path = write(tmp_path, "")
    assert load_catalog(SophiaConfig(var_dir=tmp_path, metrics={"path": path})).names == ["bookings", "deals"]
    assert "pipeline_value" in load_catalog(SophiaConfig(var_dir=tmp_path))


def test_unknown_metric_suggests_names(engine_catalog) -> None:
    with pytest.raises(MetricNotFoundError, match="metric 'pipline_value' not found — did you mean 'pipeline_value'"):
        engine_catalog.get("pipline_value")
    with pytest.raises(KeyError):
        engine_catalog.compile("nope")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"by": ["stag"]}, "cannot be grouped by 'stag' — did you mean 'stage'?"),
    ({"by": ["amount"]}, "cannot be grouped by 'amount'"),
    ({"by": ["stage", "stage"]}, "names a dimension twice"),
    ({"grain": "day"}, "is not available by 'day'"),
    ({"start": "yesterday"}, "start='yesterday' is not a date"),
    ({"start": "2024-05-01", "end": "2024-01-01"}, "is after end"),
    ({"dialect": "mysql"}, "dialect 'mysql' is not supported"),
])
def test_bad_requests_are_explained(engine_catalog, kwargs, message) -> None:
    with pytest.raises(MetricQueryError) as err:
        engine_catalog.compile("bookings_mom", **kwargs)
    assert message in str(err.value)


def test_models_are_checked_against_the_warehouse(tmp_path: Path, duckdb_wh) -> None:
    models = MODEL.replace("[amount, is_won, closed_at]", "[amount, is_won, closed_at, amout]") + \
        "  - {name: other, table: marts.deal, time: t}\n"
    catalog = load_catalog(path=write(tmp_path, "", models))
    with duckdb_wh.reader() as r, pytest.raises(MetricDefinitionError) as err:
        load_catalog(path=catalog.path, reader=r)
    text = str(err.value)
    assert "column marts.deals.amout does not exist — did you mean 'amount'?" in text
    assert "table marts.deal does not exist — did you mean 'marts.deals'?" in text
    with duckdb_wh.reader() as r:
        assert load_catalog(path=write(tmp_path, ""), reader=r).names == ["bookings", "deals"]
