"""The SQL guard on its own: refusals, the rewrite, and CTE scoping (an in-memory DuckDB, no service)."""

from __future__ import annotations

import duckdb
import pytest

from sophia_lib.query.errors import BadQueryError, ForbiddenError
from sophia_lib.query.guard import Catalog, Column, guard
from sophia_lib.query.policy import load_policy
from sophia_lib.warehouse.base import BIND_PARAM

EMAIL = "jane.doe@acme.com"


@pytest.fixture(scope="module")
def db() -> tuple[duckdb.DuckDBPyConnection, Catalog]:
    con = duckdb.connect()
    con.execute("create schema core; create schema marts; create schema raw_x")
    con.execute(f"create table core.people as select 'p1' person_key, '{EMAIL}' email, '+1 415 555 1234' phone, "
                "'Jane' first_name, 'Doe' last_name, 'Jane Doe' full_name")
    con.execute("create table core.accounts as "
                "select * from (values ('a1', 'emea'), ('a2', 'amer')) t(account_key, region)")
    con.execute("create table marts.people as select 1 as n")
    con.execute("create table raw_x.secret as select 'raw' s")
    rows = con.execute("select table_schema, table_name, column_name, data_type from information_schema.columns "
                       "order by table_schema, table_name, ordinal_position").fetchall()
    tables: dict = {}
    for schema, table, column, dtype in rows:
        tables.setdefault((schema, table), []).append(Column(column, dtype))
    return con, Catalog("s1", {k: tuple(v) for k, v in tables.items()})


def run(db, sql: str, role: str = "analyst", groups=(), params=None) -> list[tuple]:
    con, catalog = db
    guarded = guard(sql, params, load_policy().scope(role, groups), catalog, salt="pepper")
    text = BIND_PARAM.sub(r"$\1", guarded.sql)
    return con.execute(text, guarded.params).fetchall() if guarded.params else con.execute(text).fetchall()


def test_cte_named_like_a_table_is_still_guarded(db) -> None:
    """A CTE defined later, or in another branch, never hides a base table from the guard."""
    sqls = [
        "with a as (select * from people), people as (select 1 as x) select email from a",
        "select people.email from (with people as (select 1 as e) select * from people) q, core.people",
        "with x as (select 1) select email from core.people",
    ]
    for sql in sqls:
        try:
            rows = run(db, sql)
        except (BadQueryError, ForbiddenError):
            continue  # refusing is fine too (an unqualified `people` is ambiguous here)
        for row in rows:
            assert EMAIL not in map(str, row), sql


def test_cte_reference_is_not_mistaken_for_a_table(db) -> None:
    assert run(db, "with people as (select 'mine' as email) select email from people") == [("mine",)]


def test_unqualified_name_ambiguous_across_schemas(db) -> None:
    with pytest.raises(BadQueryError, match="ambiguous"):
        run(db, "select * from people", role="analyst")
    # a viewer only reads marts, so `people` is marts.people for them
    assert run(db, "select * from people", role="executive_viewer") == [(1,)]


def test_masked_values(db) -> None:
    row = run(db, "select email, phone, first_name, full_name from core.people")[0]
    assert row[0] != EMAIL and len(row[0]) == 16
    assert row[1:] == ("***1234", "J***", "J***")
    assert run(db, "select email from core.people", role="super_user") == [(EMAIL,)]


@pytest.mark.parametrize("sql", [
    "select * from raw_x.secret", "select * from core.people p, raw_x.secret s",
    "select (select s from raw_x.secret) x", "select * from memory.core.people",
    "select * from core.people at (version => 1)", "select pg_read_file('/etc/passwd')",
    "select * from query_to_xml('select * from raw_x.secret', true, false, '')",
    "select $1", "select ?", "select 1 into t",
    "with d as (delete from core.people returning *) select * from d",
])
def test_refused(db, sql: str) -> None:
    with pytest.raises((ForbiddenError, BadQueryError)):
        run(db, sql)


def test_region_filter_and_limit(db) -> None:
    assert run(db, "select region from core.accounts", groups=["sophia-region-emea"]) == [("emea",)]
    con, catalog = db
    guarded = guard("select * from core.accounts", None, load_policy().scope("analyst", []), catalog, max_rows=10)
    assert guarded.sql.endswith("LIMIT 11") and guarded.tables == ["core.accounts"]
