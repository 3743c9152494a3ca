"""The SQL guard: parse a query, refuse what a role may not run, and rewrite it so it can only see
what the policy lets that role see.

Free SQL (and every compiled metric) is parsed with sqlglot. Only one read-only query is accepted (a
SELECT with CTEs, UNION, subqueries); statements, table functions (``read_csv``, ``glob``…),
system catalogs, file paths as tables and three-part names are refused. Then **every base table
reference is replaced by a subquery the guard writes itself**::

    FROM core.people p   →   FROM (SELECT "person_key", <masked "email">, … FROM "core"."people"
                                   WHERE <row filter>) AS p

so aliases, ``select *``, CTEs, UNION, functions over a column and quoting tricks all see only the
masked, filtered rows: the engine never reads a table the guard did not write out. Parameters are
bound (``:name``), never formatted into the SQL; user attributes and the masking salt travel as
parameters too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from sophia_lib.query.errors import BadQueryError, ForbiddenError
from sophia_lib.query.policy import PolicyScope, TMaskStyle

TDialect = Literal["duckdb", "postgres"]
SALT_PARAM = "sophia_salt"
INTERNAL_PREFIX = "sophia"
USER_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast", "main", "temp", "system",
                            "sophia_meta"})
SERVING_FIX = "query core.* and marts.* tables (sl.tables() lists those your role may read)"

FORBIDDEN_STATEMENTS: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name) for name in (
        "Alter", "Analyze", "Attach", "Cache", "Command", "Comment", "Commit", "Copy", "Create", "Declare",
        "Delete", "Describe", "Detach", "Drop", "Execute", "Export", "Grant", "Insert", "Install", "Into",
        "Kill", "LoadData", "Merge", "Pragma", "Refresh", "Revoke", "Rollback", "Set", "Show", "Summarize",
        "Transaction", "TruncateTable", "Uncache", "Update", "Use",
    ) if hasattr(exp, name)
)
FORBIDDEN_FUNCTIONS = frozenset({
    "getenv", "current_setting", "set_config", "query", "query_table", "glob", "sniff_csv", "load", "install",
    "lo_import", "lo_export", "dblink", "copy_from", "json_execute_serialized_sql", "sleep", "file_search_path",
    "current_schemas", "read_blob", "read_text", "pragma_table_info", "checkpoint", "force_checkpoint",
    "enable_profiling", "which_secret", "iceberg_scan", "delta_scan", "sqlite_scan", "postgres_scan",
    "mysql_scan", "postgres_query", "mysql_query", "parquet_scan",
})
FORBIDDEN_PREFIXES = ("read_", "pg_", "duckdb_", "parquet_", "iceberg_", "delta_", "sqlite_", "postgres_",
                      "mysql_", "dblink", "lo_", "txid_", "icu_", "json_execute",
                      # PostgreSQL runs SQL given as text in these (query_to_xml('select …')):
                      "query_to", "table_to", "schema_to", "database_to", "cursor_to")
ALLOWED_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias", "sample"})

# Masking expressions; {c} is the quoted column, :sophia_salt the bound salt. Both dialects accept
# strpos/left/right/split_part/regexp_replace(…, 'g'); only hashing differs.
TEXT = {"duckdb": "VARCHAR", "postgres": "TEXT"}
HASH = {
    "duckdb": "substr(sha256(:sophia_salt || CAST({c} AS VARCHAR)), 1, 16)",
    "postgres": "substr(encode(sha256(convert_to(:sophia_salt || CAST({c} AS TEXT), 'UTF8')), 'hex'), 1, 16)",
}
PARTIAL = (
    "CASE WHEN {c} IS NULL THEN NULL"
    " WHEN strpos(CAST({c} AS {t}), '@') > 0"
    " THEN left(CAST({c} AS {t}), 1) || '***@' || split_part(CAST({c} AS {t}), '@', 2)"
    " WHEN length(regexp_replace(CAST({c} AS {t}), '[^0-9]', '', 'g')) >= 6"
    " THEN '***' || right(regexp_replace(CAST({c} AS {t}), '[^0-9]', '', 'g'), 4)"
    " ELSE left(CAST({c} AS {t}), 1) || '***' END"
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Catalog:
    """The serving tables of one snapshot: (schema, table) → columns in order."""

    snapshot_id: str
    tables: Mapping[tuple[str, str], tuple[Column, ...]]
    views: dict[tuple[str, ...], tuple[Any, Any]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def names(self) -> list[str]:
        return sorted(f"{s}.{t}" for s, t in self.tables)


@dataclass
class GuardedQuery:
    """What the guard hands to the warehouse: rewritten SQL, every parameter, and what it reads."""

    sql: str
    params: dict[str, Any]
    tables: list[str]
    masked: dict[str, list[str]] = field(default_factory=dict)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def guard(sql: str, params: Mapping[str, Any] | None, scope: PolicyScope, catalog: Catalog,
          dialect: TDialect = "duckdb", *, salt: str = "", max_rows: int | None = None,
          trusted_params: bool = False) -> GuardedQuery:
    """Check ``sql`` against ``scope`` and rewrite it; raises BadQueryError or ForbiddenError.

    ``trusted_params`` lets compiled metric SQL use its own parameter names (still bound, never
    formatted), which the guard would otherwise refuse as reserved.
    """
    user_params = dict(params or {})
    _check_params(user_params, trusted_params)
    root = _parse_one(sql, dialect)
    _check_nodes(root, user_params)
    out_params: dict[str, Any] = {}
    tables: list[str] = []
    masked: dict[str, list[str]] = {}
    for table in list(root.find_all(exp.Table)):
        if _is_cte_reference(table):
            continue
        schema, name = _resolve(table, scope, catalog)
        qualified = f"{schema}.{name}"
        view, view_params, masked_columns = _table_view(scope, catalog, schema, name, dialect)
        view = view.copy()
        if table.args.get("sample") is not None:
            view.args["from_"].this.set("sample", table.args["sample"].copy())
        alias = table.args.get("alias")
        alias = alias.copy() if alias is not None else exp.TableAlias(this=table.this.copy())
        table.replace(exp.Subquery(this=view, alias=alias))
        out_params.update(view_params)
        if qualified not in tables:
            tables.append(qualified)
        if masked_columns:
            masked[qualified] = list(masked_columns)
    for column in root.find_all(exp.Column):  # core.people.email → people.email (the alias the guard kept)
        if column.args.get("db") is not None or column.args.get("catalog") is not None:
            column.set("db", None)
            column.set("catalog", None)
    if max_rows is not None and isinstance(root, exp.Select) and root.args.get("limit") is None:
        root.limit(max_rows + 1, copy=False)
    if any(str(p.this) == SALT_PARAM for p in root.find_all(exp.Placeholder)):
        out_params[SALT_PARAM] = salt
    root = root.transform(_render_placeholder, copy=False)
    return GuardedQuery(root.sql(dialect=dialect), {**user_params, **out_params}, tables, masked)


def _parse_one(sql: str, dialect: TDialect) -> exp.Expression:
    if not isinstance(sql, str) or not sql.strip():
        raise BadQueryError("the query is empty.", fix="pass one SELECT statement")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        detail = str(exc).strip().splitlines()[0]
        raise BadQueryError(f"the SQL could not be parsed: {detail}", fix="correct the SQL syntax") from None
    if len(statements) != 1:
        raise ForbiddenError(f"one statement per query; got {len(statements)}.",
                             fix="send one SELECT (use CTEs or UNION to combine)")
    root = statements[0]
    if not isinstance(root, exp.Select | exp.SetOperation | exp.Subquery):
        kind = root.key.upper() if isinstance(root, exp.Expression) else type(root).__name__
        raise ForbiddenError(f"only SELECT queries are allowed through the query door; got {kind}.",
                             fix="read with SELECT (CTEs, UNION and subqueries are fine)")
    return root


def _check_params(params: Mapping[str, Any], trusted: bool) -> None:
    for name, value in params.items():
        if not isinstance(name, str) or not USER_PARAM.match(name) or (
                name.startswith(INTERNAL_PREFIX) and not trusted):
            raise BadQueryError(f"parameter name {name!r} is not allowed.",
                                fix="use lower-case letters, digits and '_' (not starting with 'sophia')")
        if not _scalar_or_list(value):
            raise BadQueryError(f"parameter {name!r} must be a string, number, boolean, null or a list of them.",
                                fix="pass plain values; they are bound, never formatted into the SQL")


def _scalar_or_list(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(v is None or isinstance(v, str | int | float | bool) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def _check_nodes(root: exp.Expression, params: Mapping[str, Any]) -> None:
    for node in root.walk():
        if isinstance(node, FORBIDDEN_STATEMENTS):
            raise ForbiddenError(f"{node.key.upper()} is not allowed inside a query.",
                                 fix="send one read-only SELECT")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES):
                raise ForbiddenError(f"the function {name}() is not allowed through the query door (it reads "
                                     "files, settings or system catalogs).", fix=SERVING_FIX)
        elif isinstance(node, exp.Placeholder):
            name = str(node.this or "")
            if not name or name.isdigit():
                raise BadQueryError("positional parameters ($1, ?) are not supported.",
                                    fix="name them (:region) and pass params={'region': …}")
            if name not in params:
                raise BadQueryError(f"parameter :{name} has no value.", fix=f"pass params={{'{name}': …}}")
        elif isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                raise ForbiddenError("table functions (read_csv, read_parquet, glob, …) are not allowed through "
                                     "the query door.", fix=SERVING_FIX)
            extra = set(node.args) - ALLOWED_TABLE_ARGS
            extra = {k for k in extra if node.args.get(k)}
            if extra:
                raise ForbiddenError(f"{', '.join(sorted(extra))} on a table ({node.sql()}) is not supported.",
                                     fix="select from the table in a subquery first")


def _is_cte_reference(table: exp.Table) -> bool:
    """True when an unqualified table name is a CTE visible at that point (the SQL scoping rules:
    CTEs of enclosing queries; earlier CTEs of the same WITH; itself when RECURSIVE). When in doubt
    it answers False, and the guard treats the name as a base table (safe: stricter, never looser)."""
    if table.args.get("db") is not None or table.args.get("catalog") is not None:
        return False
    name = table.name.lower()
    ancestors: list[exp.Expression] = []
    node: exp.Expression | None = table
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with") if isinstance(node, exp.Query) else None
        if isinstance(with_, exp.With):
            ctes = list(with_.expressions)
            inside = next((i for i, cte in enumerate(ctes) if any(a is cte for a in ancestors)), None)
            for j, cte in enumerate(ctes):
                if cte.alias_or_name.lower() != name:
                    continue
                if inside is None or j < inside or (j == inside and with_.args.get("recursive")):
                    return True
        ancestors.append(node)
        node = node.parent
    return False


def _resolve(table: exp.Table, scope: PolicyScope, catalog: Catalog) -> tuple[str, str]:
    if table.args.get("catalog") is not None:
        raise ForbiddenError(f"database-qualified names ({table.sql()}) are not allowed.",
                             fix="name tables schema.table, e.g. marts.pipeline")
    name = table.name.lower()
    schema = table.db.lower() if table.args.get("db") is not None else None
    if schema is None:
        readable = sorted(s for (s, t) in catalog.tables if t == name and scope.allows(s, t))
        if len(readable) == 1:
            schema = readable[0]
        elif len(readable) > 1:
            raise BadQueryError(f"table {name!r} is ambiguous: it exists in {', '.join(readable)}.",
                                fix=f"qualify it, e.g. {readable[0]}.{name}")
        elif any(t == name for (_, t) in catalog.tables):
            hidden = sorted(s for (s, t) in catalog.tables if t == name)
            raise ForbiddenError(f"role {scope.role} may not read {hidden[0]}.{name}.",
                                 fix=f"your role reads {', '.join(scope.rules.datasets) or 'nothing'}")
        else:
            raise BadQueryError(f"no table named {name!r}{_suggest(name, catalog, scope)}",
                                fix="qualify tables with their schema (core.accounts, marts.…); sl.tables() lists them")
    if schema in SYSTEM_SCHEMAS or schema.startswith(("pg_", "duckdb_")):
        raise ForbiddenError(f"system catalogs ({schema}.{name}) are not readable through the query door.",
                             fix=SERVING_FIX)
    if not scope.allows(schema, name):
        raise ForbiddenError(f"role {scope.role} may not read {schema}.{name}.",
                             fix=f"your role reads {', '.join(scope.rules.datasets) or 'nothing'}; ask a super "
                             "user if you need more")
    if (schema, name) not in catalog.tables:
        raise BadQueryError(f"no table {schema}.{name} in snapshot {catalog.snapshot_id}"
                            f"{_suggest(f'{schema}.{name}', catalog, scope)}",
                            fix="sl.tables() lists the tables your role may read")
    return schema, name


def _suggest(name: str, catalog: Catalog, scope: PolicyScope) -> str:
    readable = [f"{s}.{t}" for (s, t) in catalog.tables if scope.allows(s, t)]
    pool = readable + [t for (s, t) in catalog.tables if scope.allows(s, t)]
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    return f" — did you mean {close[0]!r}?" if close else "."


def _table_view(scope: PolicyScope, catalog: Catalog, schema: str, table: str,
                dialect: TDialect) -> tuple[exp.Select, dict[str, Any], tuple[str, ...]]:
    """The subquery that stands for ``schema.table`` in this scope (built once per scope and snapshot)."""
    key = (scope.key, schema, table, dialect)
    cached = catalog.views.get(key)
    if cached is not None and cached[0] is scope.rules:  # same policy object (a reload builds new views)
        return cached[1]
    columns = catalog.tables[(schema, table)]
    rules = scope.table_rules(schema, table, [c.name for c in columns], f"{INTERNAL_PREFIX}_{schema}_{table}_")
    projections = []
    for column in columns:
        style = rules.masks.get(column.name.lower())
        if style is None:
            projections.append(exp.column(column.name, quoted=True))
        else:
            projections.append(exp.alias_(_mask(style, column, dialect), column.name, quoted=True))
    view = exp.select(*projections).from_(exp.table_(table, db=schema, quoted=True))
    for predicate in rules.predicates:
        view = view.where(predicate.copy())
    built = (view, dict(rules.params), tuple(rules.masks))
    catalog.views[key] = (scope.rules, built)
    return built


def _mask(style: TMaskStyle, column: Column, dialect: TDialect) -> exp.Expression:
    c = quote_ident(column.name)
    if style == "hash":
        sql = HASH[dialect].format(c=c)
    elif style == "partial":
        sql = PARTIAL.format(c=c, t=TEXT[dialect])
    else:
        try:
            return exp.cast(exp.null(), exp.DataType.build(column.type, dialect=dialect))
        except (sqlglot.errors.SqlglotError, ValueError):
            return exp.null()
    return sqlglot.parse_one(sql, read=dialect)


def _render_placeholder(node: exp.Expression) -> exp.Expression:
    """Placeholders go out as ``:name``, which every warehouse backend binds itself."""
    if isinstance(node, exp.Placeholder):
        return exp.Var(this=f":{node.this}")
    return node
