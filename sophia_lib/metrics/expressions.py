"""SQL fragments, parsed with sqlglot and checked: definitions from metrics.yaml and callers' filters.

Definitions (``expr``, ``filter``) are trusted text written by the metric owners, but every column they
name must be one the model declares. A caller's ``where=`` is untrusted: it is rebuilt node by node from
a small grammar (comparisons, IN, BETWEEN, IS NULL, AND/OR/NOT of declared dimensions against
literals) and every literal becomes a bound parameter, so no text of it ever reaches the SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from sophia_lib.metrics.errors import MetricQueryError

READ_DIALECT = "duckdb"
"""metrics.yaml expressions are written in DuckDB's SQL; sqlglot transpiles them for PostgreSQL."""

DERIVED_FUNCTIONS = (exp.Coalesce, exp.Nullif, exp.Abs, exp.Round, exp.Greatest, exp.Least)
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


class ExpressionError(ValueError):
    """A definition's expression is not acceptable; the catalog adds which metric and key."""


def parse_expression(text: str) -> exp.Expression:
    """One SQL expression (not a statement, not a query)."""
    try:
        statements = sqlglot.parse(text, read=READ_DIALECT)
    except ParseError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.errors[0]['description'] if exc.errors else exc}") \
            from None
    if len(statements) != 1 or statements[0] is None:
        raise ExpressionError(f"{text!r} must be one expression (no ';')")
    tree = statements[0]
    if isinstance(tree, exp.Query | exp.Command | exp.DDL | exp.DML) or tree.find(exp.Query, exp.Subquery):
        raise ExpressionError(f"{text!r} must be an expression over columns, not a query")
    return tree


def columns_of(tree: exp.Expression) -> set[str]:
    """Column names an expression reads; qualified names are refused (one table per model)."""
    names = set()
    for col in tree.find_all(exp.Column):
        if col.table:
            raise ExpressionError(f"write column {col.name!r} without a table qualifier ({col.sql()!r})")
        names.add(col.name)
    return names


def check_definition(text: str, allowed: Iterable[str]) -> exp.Expression:
    """A measure expression or default filter: parses, and names only declared columns."""
    tree = parse_expression(text)
    if tree.find(exp.Star) and not isinstance(tree, exp.Star):
        raise ExpressionError(f"{text!r}: '*' is only allowed alone (count)")
    unknown = sorted(columns_of(tree) - set(allowed))
    if unknown:
        raise ExpressionError(f"unknown column(s) {unknown} in {text!r}; declared: {sorted(allowed)}")
    return tree


def check_derived(text: str, refs: Iterable[str]) -> exp.Expression:
    """A derived metric's expression: arithmetic over its inputs' names, numbers and a few functions."""
    tree = parse_expression(text)
    allowed = (exp.Column, exp.Identifier, exp.Literal, exp.Paren, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg,
               *DERIVED_FUNCTIONS)
    for node in tree.walk():
        if not isinstance(node, allowed):
            raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed in a derived expression; use "
                                  "+ - * /, numbers, coalesce, nullif, abs, round, greatest, least")
    unknown = sorted(columns_of(tree) - set(refs))
    if unknown:
        raise ExpressionError(f"{text!r} names {unknown}, which are not among its metrics {sorted(refs)}")
    return tree


# ---- callers' filters (untrusted) -----------------------------------------------------------------

TBind = Callable[[Any], exp.Expression]
"""Turns a Python value into a bound-parameter node (the compiler numbers the parameters)."""


def _refuse(what: str, dimensions: Iterable[str]) -> MetricQueryError:
    return MetricQueryError(
        f"where: {what}",
        fix="a filter compares a declared dimension with literals: =, <>, <, <=, >, >=, IN (...), BETWEEN, "
            f"IS [NOT] NULL, joined by AND/OR/NOT; dimensions: {', '.join(sorted(dimensions)) or 'none'}")


def _dimension(node: exp.Expression, dimensions: set[str]) -> exp.Column | None:
    if isinstance(node, exp.Paren):
        return _dimension(node.this, dimensions)
    if not isinstance(node, exp.Column):
        return None
    if node.table or not isinstance(node.this, exp.Identifier):
        raise _refuse(f"{node.sql()!r}: write the dimension name alone", dimensions)
    if node.name not in dimensions:
        raise _refuse(f"{node.name!r} is not a dimension of this metric", dimensions)
    return exp.column(node.name)


def _literal(node: exp.Expression, bind: TBind, dimensions: set[str]) -> exp.Expression:
    if isinstance(node, exp.Paren):
        return _literal(node.this, bind, dimensions)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return bind(node.this)
        number = node.this
        return bind(float(number) if any(c in number for c in ".eE") else int(number))
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        number = node.this.this
        return bind(-(float(number) if any(c in number for c in ".eE") else int(number)))
    if isinstance(node, exp.Boolean):
        return bind(node.this)
    raise _refuse(f"{node.sql()!r} is not a literal (only strings, numbers and true/false)", dimensions)


def _rebuild(node: exp.Expression, bind: TBind, dims: set[str]) -> exp.Expression:
    if isinstance(node, exp.Paren):
        return exp.Paren(this=_rebuild(node.this, bind, dims))
    if isinstance(node, exp.And | exp.Or):
        return type(node)(this=_rebuild(node.this, bind, dims), expression=_rebuild(node.expression, bind, dims))
    if isinstance(node, exp.Not):
        return exp.Not(this=_rebuild(node.this, bind, dims))
    if isinstance(node, COMPARISONS):
        left, right = _dimension(node.this, dims), _dimension(node.expression, dims)
        if (left is None) == (right is None):
            raise _refuse(f"{node.sql()!r}: one side must be a dimension and the other a literal", dims)
        if left is not None:
            return type(node)(this=left, expression=_literal(node.expression, bind, dims))
        return type(node)(this=_literal(node.this, bind, dims), expression=right)
    if isinstance(node, exp.In):
        column = _dimension(node.this, dims)
        if column is None or node.args.get("query") or node.args.get("unnest") or node.args.get("field") \
                or not node.expressions:
            raise _refuse(f"{node.sql()!r}: write DIMENSION IN ('a', 'b')", dims)
        return exp.In(this=column, expressions=[_literal(v, bind, dims) for v in node.expressions])
    if isinstance(node, exp.Between):
        column = _dimension(node.this, dims)
        if column is None:
            raise _refuse(f"{node.sql()!r}: write DIMENSION BETWEEN a AND b", dims)
        return exp.Between(this=column, low=_literal(node.args["low"], bind, dims),
                           high=_literal(node.args["high"], bind, dims))
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        column = _dimension(node.this, dims)
        if column is None:
            raise _refuse(f"{node.sql()!r}: write DIMENSION IS NULL", dims)
        return exp.Is(this=column, expression=exp.Null())
    raise _refuse(f"{node.sql()!r} ({type(node).__name__}) is not allowed", dims)


def caller_filter(where: str | Mapping[str, Any] | None, dimensions: Iterable[str],
                  bind: TBind) -> exp.Expression | None:
    """The caller's ``where=`` as a condition whose values are all bound parameters.

    A mapping means ``dim = value`` (a list or tuple: ``dim IN (…)``; None: ``dim IS NULL``), AND-ed.
    A string is parsed and rebuilt from the small grammar above; anything else is refused.
    """
    dims = set(dimensions)
    if where is None or where == {} or where == "":
        return None
    if isinstance(where, Mapping):
        parts: list[exp.Expression] = []
        for key, value in where.items():
            if not isinstance(key, str) or key not in dims:
                raise _refuse(f"{key!r} is not a dimension of this metric", dims)
            column = exp.column(key)
            if value is None:
                parts.append(exp.Is(this=column, expression=exp.Null()))
            elif isinstance(value, list | tuple | set | frozenset):
                if not value:
                    raise _refuse(f"{key!r}: an empty list matches nothing", dims)
                parts.append(exp.In(this=column, expressions=[bind(_plain(v, key, dims)) for v in value]))
            else:
                parts.append(exp.EQ(this=column, expression=bind(_plain(value, key, dims))))
        return exp.and_(*parts) if len(parts) > 1 else parts[0]
    if not isinstance(where, str):
        raise _refuse(f"expected a dict or a string, got {type(where).__name__}", dims)
    try:
        statements = sqlglot.parse(where, read=READ_DIALECT)
    except ParseError:
        raise _refuse(f"cannot parse {where!r}", dims) from None
    if len(statements) != 1 or statements[0] is None:
        raise _refuse(f"{where!r} must be one condition (no ';')", dims)
    return _rebuild(statements[0], bind, dims)


def _plain(value: Any, key: str, dims: set[str]) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalar
        value = value.item()
    if isinstance(value, str | int | float | bool) or hasattr(value, "isoformat"):
        return value
    raise _refuse(f"{key!r}: value {value!r} ({type(value).__name__}) is not a string, number, bool or date", dims)
