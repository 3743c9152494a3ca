"""No SQL gets in through ``where=``, ``by=``, dates or parameters: filters are rebuilt from a small
grammar over declared dimensions, and every value travels as a bound parameter."""

from __future__ import annotations

import pytest

from sophia_lib.metrics import MetricQueryError
from sophia_lib.warehouse.base import BIND_PARAM

REFUSED = [
    "1=1; drop table marts.deals",
    "stage = 'a'; drop table marts.deals",
    "stage = 'a' or 1=1 --",
    "1 = 1",
    "stage = region",
    "stage in (select stage from marts.deals)",
    "stage = (select max(stage) from marts.deals)",
    "exists (select 1 from marts.deals)",
    "lower(stage) = 'won'",
    "stage = lower('WON')",
    "stage = 'a' || 'b'",
    "amount > 5",
    "deals.stage = 'won'",
    "marts.deals.stage = 'won'",
    '"Stage" = \'won\'',
    "stage like '%'",
    "stage = 'a' union select * from marts.deals",
    "stage = current_user",
    "stage = :p0",
    "stage = $1",
    "region in (read_csv('/etc/passwd'))",
    "stage",
    "drop table marts.deals",
]


@pytest.mark.parametrize("where", REFUSED)
def test_filters_outside_the_grammar_are_refused(engine_catalog, where: str) -> None:
    with pytest.raises(MetricQueryError) as err:
        engine_catalog.compile("deals_created", where=where)
    assert "where:" in str(err.value) and "fix:" in str(err.value)


@pytest.mark.parametrize("where", [
    {"stage; drop table marts.deals": "x"}, {"amount": 5}, {"stage": object()}, {"stage": []}, ["stage"], 42])
def test_bad_dict_filters_are_refused(engine_catalog, where) -> None:
    with pytest.raises(MetricQueryError):
        engine_catalog.compile("deals_created", where=where)


HOSTILE = ["x' or '1'='1", "won'; drop table marts.deals; --", "won\\' or 1=1 --", ":start", "$1", "%(p0)s",
           "/* */", "won\x00"]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_are_parameters_never_sql(warehouse, engine_catalog, deals, value: str) -> None:
    wh, dialect = warehouse
    won = int((deals.stage == "won").sum())
    for where in ({"stage": value}, {"stage": [value, "won"]}):
        q = engine_catalog.compile("deals_created", where=where, dialect=dialect)
        assert value not in q.sql and set(BIND_PARAM.findall(q.sql)) == set(q.params)
        assert value in q.params.values()
        if "\x00" in value and dialect == "postgres":
            continue  # PostgreSQL refuses NUL in text parameters: an error, not an injection
        with wh.reader() as r:
            rows = r.query(q.sql, q.params).to_pandas()
        assert rows.deals_created.sum() == (0 if isinstance(where["stage"], str) else won)
    with wh.reader() as r:  # the table is still there
        assert r.query("select count(*) as n from marts.deals").to_pylist()[0]["n"] == 160


def test_comments_in_a_filter_never_reach_the_sql(engine_catalog) -> None:
    q = engine_catalog.compile("deals_created", where="stage = 'won' /* */ or owner = 'x' -- */ drop")
    assert "/*" not in q.sql and "--" not in q.sql and "drop" not in q.sql.lower()


def test_string_filter_literals_become_parameters(engine_catalog) -> None:
    q = engine_catalog.compile("deals_created", where="stage = 'x'' or ''1''=''1' and region <> 'EMEA'")
    assert "or '1'" not in q.sql.lower() and "EMEA" not in q.sql
    assert sorted(map(str, q.params.values())) == ["EMEA", "x' or '1'='1"]


@pytest.mark.parametrize("by", [["stage; drop table marts.deals"], ['stage" --'], ["1"], ["*"], [None]])
def test_by_must_name_declared_dimensions(engine_catalog, by) -> None:
    with pytest.raises(MetricQueryError, match="cannot be grouped by"):
        engine_catalog.compile("deals_created", by=by)


@pytest.mark.parametrize("start", ["2024-01-01'; drop table marts.deals; --", "now()", 20240101])
def test_dates_must_be_dates(engine_catalog, start) -> None:
    with pytest.raises(MetricQueryError, match="is not a date"):
        engine_catalog.compile("deals_created", start=start)


def test_metric_names_are_looked_up_never_pasted(engine_catalog) -> None:
    from sophia_lib.metrics import MetricNotFoundError

    with pytest.raises(MetricNotFoundError):
        engine_catalog.compile("deals_created; drop table marts.deals")
