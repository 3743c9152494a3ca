"""Metric → one SQL statement with bound parameters, built as a sqlglot tree (never by pasting text).

Every metric compiles to a CTE with the columns ``_period``, the requested dimensions and ``_value``;
ratio and derived metrics join their inputs' CTEs on period and dimensions (NULL-safe), an input
taken at an ``offset`` joins on the period that far back. The final SELECT renames ``_period`` to the
grain (``week``) and ``_value`` to the metric's name. Parameters are written ``:name`` (the warehouse's
convention, :data:`sophia_lib.warehouse.base.BIND_PARAM`); callers' values only ever travel as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel

from sophia_lib.metrics import timegrain
from sophia_lib.metrics.errors import MetricQueryError
from sophia_lib.metrics.expressions import caller_filter
from sophia_lib.metrics.spec import (
    CumulativeMetric,
    DerivedMetric,
    RatioMetric,
    SimpleMetric,
    TGrain,
    parse_period,
)

if TYPE_CHECKING:
    from sophia_lib.metrics.catalog import MetricCatalog

TDialect = Literal["duckdb", "postgres"]
DIALECTS: tuple[TDialect, ...] = ("duckdb", "postgres")
PERIOD, VALUE, TIME, X = "_period", "_value", "_time", "_x"
DOUBLE = exp.DataType.build("DOUBLE")


@dataclass(frozen=True)
class CompiledQuery:
    """One metric request, ready for the query door to run under the caller's policy.

    ``tables`` and ``columns`` (``schema.table.column``) are every table and column the SQL reads, for
    policy checks and audit; ``output_columns`` is the result's columns in order: the period (named
    by the grain), the ``by`` dimensions, the metric (named as the metric).
    """

    metric: str
    sql: str
    params: dict[str, Any]
    dialect: TDialect
    grain: TGrain
    by: tuple[str, ...]
    output_columns: tuple[str, ...]
    tables: frozenset[str]
    columns: frozenset[str]
    start: date | None = None
    end: date | None = field(default=None, metadata={"doc": "exclusive end (the day after the last period)"})


def _generator(dialect: TDialect) -> Any:
    base = Dialect.get_or_raise(dialect)

    class ColonPlaceholders(base.generator_class):  # type: ignore[name-defined,misc]
        def placeholder_sql(self, expression: exp.Placeholder) -> str:
            return f":{expression.name}"

    return ColonPlaceholders(dialect=base, identify=True, pretty=True, comments=False,
                             unsupported_level=ErrorLevel.RAISE)


def interval(n: int, unit: TGrain) -> exp.Interval:
    if unit == "quarter":  # PostgreSQL has no QUARTER interval unit
        n, unit = n * 3, "month"
    return exp.Interval(this=exp.Literal.string(str(n)), unit=exp.var(unit.upper()))


def _truncate(value: exp.Expression, grain: TGrain) -> exp.Expression:
    return exp.Cast(this=exp.DateTrunc(this=value, unit=exp.var(grain.upper())), to=exp.DataType.build("DATE"))


def _agg(agg: str, x: exp.Expression | None) -> exp.Expression:
    if agg == "count":
        return exp.Count(this=x if x is not None else exp.Star())
    if agg == "count_distinct":
        return exp.Count(this=exp.Distinct(expressions=[x]))
    if agg in ("min", "max"):
        return (exp.Min if agg == "min" else exp.Max)(this=x)
    inner = {"sum": exp.Sum, "avg": exp.Avg}.get(agg)
    node = inner(this=x) if inner else exp.Median(this=x)
    return exp.Cast(this=node, to=DOUBLE)


def _and(conditions: list[exp.Expression]) -> exp.Expression | None:
    return exp.and_(*conditions) if conditions else None


def _safe_division(tree: exp.Expression) -> exp.Expression:
    """``a / b`` → ``CAST(a AS DOUBLE) / NULLIF(b, 0)``: float division in both engines, none by zero."""
    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Div):
            return exp.Div(this=exp.Cast(this=node.this, to=DOUBLE),
                           expression=exp.Nullif(this=node.expression, expression=exp.Literal.number(0)))
        return node
    return tree.transform(fix)


class Compilation:
    """One compile call: collects CTEs, bound parameters, and the tables and columns read."""

    def __init__(self, catalog: MetricCatalog, grain: TGrain, by: tuple[str, ...],
                 where: Any, dimensions: list[str]) -> None:
        self.catalog = catalog
        self.grain = grain
        self.by = by
        self.ctes: list[tuple[str, exp.Query]] = []
        self.params: dict[str, Any] = {}
        self.tables: set[str] = set()
        self.columns: set[str] = set()
        self.where = caller_filter(where, dimensions, self.bind)
        self.where_columns = {c.name for c in self.where.find_all(exp.Column)} if self.where else set()

    def bind(self, value: Any, prefix: str = "p") -> exp.Placeholder:
        for name, existing in self.params.items():
            if name.startswith(prefix) and existing == value and type(existing) is type(value):
                return exp.Placeholder(this=name)
        n = sum(1 for name in self.params if name.rstrip("0123456789") == prefix)
        name = f"{prefix}{n}" if prefix == "p" or n else prefix
        self.params[name] = value
        return exp.Placeholder(this=name)

    def add(self, hint: str, query: exp.Query) -> str:
        taken = {name for name, _ in self.ctes}
        name, n = hint, 1
        while name in taken:
            n += 1
            name = f"{hint}_{n}"
        self.ctes.append((name, query))
        return name

    # ---- one CTE per metric: (_period, *by, _value) ------------------------------------------------

    def metric(self, name: str, lo: date | None, hi: date | None) -> str:
        metric = self.catalog.get(name)
        if isinstance(metric, SimpleMetric):
            return self.simple(metric, lo, hi)
        if isinstance(metric, CumulativeMetric):
            return self.cumulative(metric, lo, hi)
        if isinstance(metric, RatioMetric):
            num, den = self.metric(metric.numerator, lo, hi), self.metric(metric.denominator, lo, hi)
            value = exp.Div(this=exp.Cast(this=self._input_value("i0", metric.numerator), to=DOUBLE),
                            expression=exp.Nullif(this=self._input_value("i1", metric.denominator),
                                                  expression=exp.Literal.number(0)))
            return self.combine(metric.name, [(num, None), (den, None)], value)
        assert isinstance(metric, DerivedMetric)
        inputs, refs = [], {}
        for i, item in enumerate(metric.metrics):
            if item.offset:
                n, unit = parse_period(item.offset)
                in_lo = timegrain.truncate(timegrain.shift(lo, -n, unit), self.grain) if lo else None
                in_hi = timegrain.ceil(timegrain.shift(hi, -n, unit), self.grain) if hi else None
                inputs.append((self.metric(item.name, in_lo, in_hi), (n, unit)))
            else:
                inputs.append((self.metric(item.name, lo, hi), None))
            refs[item.ref] = self._input_value(f"i{i}", item.name)
        tree = self.catalog.derived_expression(metric).copy()
        tree = tree.transform(lambda node: refs[node.name].copy() if isinstance(node, exp.Column) else node)
        return self.combine(metric.name, inputs, _safe_division(tree))

    def _input_value(self, alias: str, name: str) -> exp.Expression:
        value: exp.Expression = exp.column(VALUE, table=alias)
        fill = self.catalog.get(name).fill_nulls_with if isinstance(self.catalog.get(name), SimpleMetric) else None
        if fill is not None:
            value = exp.Coalesce(this=value, expressions=[exp.Literal.number(fill)])
        return value

    def _source(self, metric: SimpleMetric) -> tuple[exp.Table, exp.Column, exp.Expression | None, list]:
        model = self.catalog.model(metric.model)
        schema, table = model.table.split(".")
        self.tables.add(model.table)
        time_name = metric.time or model.time
        x = self.catalog.measure_expression(metric)
        filters = [f.copy() for f in self.catalog.filter_expressions(metric)]
        used = {time_name, *self.by, *self.where_columns}
        for tree in [*filters, *([x] if x is not None else [])]:
            used |= {c.name for c in tree.find_all(exp.Column)}
        self.columns |= {f"{model.table}.{c}" for c in used}
        if self.where is not None:
            filters.append(self.where.copy())
        return exp.table_(table, db=schema), exp.column(time_name), (x.copy() if x is not None else None), filters

    def _range(self, time: exp.Expression, lo: date | None, hi: date | None) -> list[exp.Expression]:
        out = []
        if lo is not None:
            out.append(exp.GTE(this=time.copy(), expression=self.bind(lo, "start")))
        if hi is not None:
            out.append(exp.LT(this=time.copy(), expression=self.bind(hi, "end")))
        return out

    def simple(self, metric: SimpleMetric, lo: date | None, hi: date | None) -> str:
        table, time, x, filters = self._source(metric)
        where = _and(self._range(time, lo, hi) + filters)
        period = _truncate(time, self.grain)
        dims = [exp.column(d) for d in self.by]
        if metric.snapshot is None:
            query = exp.select(period.as_(PERIOD), *dims, _agg(metric.agg, x).as_(VALUE)).from_(table)
            query = query.where(where) if where is not None else query
            return self.add(metric.name, query.group_by(period.copy(), *(d.copy() for d in dims)))
        rows = exp.select(period.as_(PERIOD), time.as_(TIME), *dims,
                          (x if x is not None else exp.Literal.number(1)).as_(X)).from_(table)
        rows_name = self.add(f"{metric.name}_rows", rows.where(where) if where is not None else rows)
        pick_fn = exp.Max if metric.snapshot == "last" else exp.Min
        pick = exp.select(exp.column(PERIOD), pick_fn(this=exp.column(TIME)).as_(TIME)).from_(rows_name)
        pick_name = self.add(f"{metric.name}_at", pick.group_by(exp.column(PERIOD)))
        on = exp.and_(exp.column(PERIOD, table="r").eq(exp.column(PERIOD, table="a")),
                      exp.column(TIME, table="r").eq(exp.column(TIME, table="a")))
        query = (exp.select(exp.column(PERIOD, table="r").as_(PERIOD), *(exp.column(d, table="r") for d in self.by),
                            _agg(metric.agg, exp.column(X, table="r")).as_(VALUE))
                 .from_(exp.to_table(rows_name).as_("r"))
                 .join(exp.to_table(pick_name).as_("a"), on=on)
                 .group_by(exp.column(PERIOD, table="r"), *(exp.column(d, table="r") for d in self.by)))
        return self.add(metric.name, query)

    def cumulative(self, metric: CumulativeMetric, lo: date | None, hi: date | None) -> str:
        base = self.catalog.get(metric.metric)
        assert isinstance(base, SimpleMetric)
        table, time, x, filters = self._source(base)
        rows_lo = lo
        if lo is not None and metric.window:
            n, unit = parse_period(metric.window)
            rows_lo = timegrain.shift(lo, -n, unit)
        elif lo is not None and metric.grain_to_date:
            rows_lo = timegrain.truncate(lo, metric.grain_to_date)
        elif lo is not None:
            rows_lo = None
        rows = exp.select(time.as_(TIME), *(exp.column(d) for d in self.by),
                          (x if x is not None else exp.Literal.number(1)).as_(X)).from_(table)
        where = _and(self._range(time, rows_lo, hi) + filters)
        rows_name = self.add(f"{metric.name}_rows", rows.where(where) if where is not None else rows)

        def bound(value: date | None, fn: type[exp.Func]) -> exp.Expression:
            if value is not None:
                return exp.Cast(this=self.bind(value, "start" if fn is exp.Min else "spine_end"),
                                to=exp.DataType.build("TIMESTAMP"))
            sub = exp.select(exp.Cast(this=exp.DateTrunc(this=fn(this=exp.column(TIME)),
                                                         unit=exp.var(self.grain.upper())),
                                      to=exp.DataType.build("TIMESTAMP"))).from_(rows_name)
            return exp.Subquery(this=sub)

        last = timegrain.shift(hi, -1, self.grain) if hi is not None else None
        series = exp.ExplodingGenerateSeries(start=bound(lo, exp.Min), end=bound(last, exp.Max),
                                             step=interval(1, self.grain))
        spine_name = self.add(f"{metric.name}_spine",
                              exp.select(exp.Cast(this=series, to=exp.DataType.build("DATE")).as_(PERIOD)))
        s_period = exp.column(PERIOD, table="s")
        conditions = [exp.LT(this=exp.column(TIME, table="r"),
                             expression=exp.Add(this=s_period.copy(), expression=interval(1, self.grain)))]
        if metric.window:
            n, unit = parse_period(metric.window)
            start = exp.Sub(this=exp.Add(this=s_period.copy(), expression=interval(1, self.grain)),
                            expression=interval(n, unit))
            conditions.append(exp.GTE(this=exp.column(TIME, table="r"), expression=start))
        elif metric.grain_to_date:
            conditions.append(exp.GTE(this=exp.column(TIME, table="r"),
                                      expression=exp.DateTrunc(this=s_period.copy(),
                                                               unit=exp.var(metric.grain_to_date.upper()))))
        dims = [exp.column(d, table="r") for d in self.by]
        query = (exp.select(s_period.as_(PERIOD), *dims, _agg(base.agg, exp.column(X, table="r")).as_(VALUE))
                 .from_(exp.to_table(spine_name).as_("s"))
                 .join(exp.to_table(rows_name).as_("r"), on=exp.and_(*conditions))
                 .group_by(s_period.copy(), *(d.copy() for d in dims)))
        return self.add(metric.name, query)

    def combine(self, name: str, inputs: list[tuple[str, tuple[int, TGrain] | None]], value: exp.Expression) -> str:
        """Join input CTEs (aliased i0, i1, …) on the keys of the inputs taken without an offset."""
        key_cols = [PERIOD, *self.by]
        sources = [cte for cte, offset in inputs if offset is None]
        union: exp.Query = exp.select(*key_cols).from_(sources[0])
        for cte in sources[1:]:
            union = exp.union(union, exp.select(*key_cols).from_(cte), distinct=True)
        keys = self.add(f"{name}_keys", union)
        query = exp.select(exp.column(PERIOD, table="k").as_(PERIOD), *(exp.column(d, table="k") for d in self.by),
                           value.as_(VALUE)).from_(exp.to_table(keys).as_("k"))
        for i, (cte, offset) in enumerate(inputs):
            alias = f"i{i}"
            period: exp.Expression = exp.column(PERIOD, table="k")
            if offset is not None:
                period = _truncate(exp.Sub(this=period, expression=interval(*offset)), self.grain)
            on = [exp.NullSafeEQ(this=exp.column(PERIOD, table=alias), expression=period)]
            on += [exp.NullSafeEQ(this=exp.column(d, table=alias), expression=exp.column(d, table="k"))
                   for d in self.by]
            query = query.join(exp.to_table(cte).as_(alias), on=exp.and_(*on), join_type="left")
        return self.add(name, query)

    def finish(self, top: str, metric_name: str, dialect: TDialect) -> tuple[str, tuple[str, ...]]:
        outputs = (self.grain, *self.by, metric_name)
        if len(set(outputs)) != len(outputs):
            raise MetricQueryError(f"output columns {list(outputs)} are not unique.",
                                   fix="a dimension cannot share its name with the grain or the metric")
        query = exp.select(exp.column(PERIOD).as_(self.grain), *(exp.column(d) for d in self.by),
                           exp.column(VALUE).as_(metric_name)).from_(top)
        query = query.order_by(*(exp.column(c) for c in outputs[:-1]))
        for name, cte in self.ctes:
            query = query.with_(name, as_=cte)
        return _generator(dialect).generate(query), outputs
