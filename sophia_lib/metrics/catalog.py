"""The metric catalog: metrics.yaml loaded, validated as a whole, and compiled on request.

``python -m sophia_lib.metrics.catalog > docs/metrics.md`` regenerates the reference from the shipped
metrics.yaml (tests/metrics/test_docs.py fails when it is stale).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from sophia_lib.metrics import timegrain
from sophia_lib.metrics.compiler import DIALECTS, Compilation, CompiledQuery, TDialect
from sophia_lib.metrics.errors import MetricDefinitionError, MetricNotFoundError, MetricQueryError
from sophia_lib.metrics.expressions import ExpressionError, check_definition, check_derived
from sophia_lib.metrics.spec import (
    GRAINS,
    CumulativeMetric,
    DerivedMetric,
    Metric,
    Model,
    RatioMetric,
    SimpleMetric,
    parse_entries,
    parse_period,
    read_yaml,
)

if TYPE_CHECKING:
    from sophia_lib.config import SophiaConfig
    from sophia_lib.warehouse.base import Reader

DEFAULT_PATH = Path(__file__).with_name("metrics.yaml")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if not close:
        return ""
    return " — did you mean " + " or ".join(repr(c) for c in close) + "?"


class MetricCatalog:
    """Every metric and model of one metrics.yaml, checked for unknown names, columns and cycles."""

    def __init__(self, models: list[Model], metrics: list[Metric], path: Path) -> None:
        self.path = path
        self._models: dict[str, Model] = {}
        self._metrics: dict[str, Metric] = {}
        for model in models:
            if model.name in self._models:
                self._fail("model", model.name, "name", "is defined twice", "rename or remove one of them")
            self._models[model.name] = model
        for metric in metrics:
            if metric.name in self._metrics:
                self._fail("metric", metric.name, "name", "is defined twice", "rename or remove one of them")
            self._metrics[metric.name] = metric
        self._measures: dict[str, exp.Expression | None] = {}
        self._filters: dict[str, list[exp.Expression]] = {}
        self._derived: dict[str, exp.Expression] = {}
        self._dimensions: dict[str, list[str]] = {}
        for model in models:
            self._check_model(model)
        for metric in metrics:
            self._check_metric(metric)
        self._check_cycles()
        for metric in metrics:
            self.dimensions(metric.name)

    # ---- lookup ------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics.values())

    def __len__(self) -> int:
        return len(self._metrics)

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    @property
    def names(self) -> list[str]:
        return list(self._metrics)

    @property
    def models(self) -> list[Model]:
        return list(self._models.values())

    def get(self, name: str) -> Metric:
        """The metric called ``name``; an unknown name suggests the closest ones."""
        try:
            return self._metrics[name]
        except (KeyError, TypeError):
            raise MetricNotFoundError(
                f"metric {name!r} not found{did_you_mean(str(name), self.names)}",
                fix="`sophia metrics list` shows every metric") from None

    def model(self, name: str) -> Model:
        return self._models[name]

    def inputs(self, metric: Metric) -> list[str]:
        """Names of the metrics a metric is computed from (none for a simple metric)."""
        if isinstance(metric, RatioMetric):
            return [metric.numerator, metric.denominator]
        if isinstance(metric, CumulativeMetric):
            return [metric.metric]
        if isinstance(metric, DerivedMetric):
            return [m.name for m in metric.metrics]
        return []

    def source_models(self, name: str) -> list[Model]:
        """Models a metric reads, through its inputs."""
        metric = self.get(name)
        if isinstance(metric, SimpleMetric):
            return [self._models[metric.model]]
        seen: dict[str, Model] = {}
        for child in self.inputs(metric):
            for model in self.source_models(child):
                seen.setdefault(model.name, model)
        return list(seen.values())

    def dimensions(self, name: str) -> list[str]:
        """Dimensions a metric may be grouped and filtered by."""
        if name in self._dimensions:
            return self._dimensions[name]
        metric = self.get(name)
        if isinstance(metric, SimpleMetric):
            available = self._models[metric.model].dimensions
        else:
            lists = [self.dimensions(child) for child in self.inputs(metric)]
            available = [d for d in lists[0] if all(d in other for other in lists[1:])]
        if metric.dimensions is None:
            dims = list(available)
        else:
            unknown = [d for d in metric.dimensions if d not in available]
            if unknown:
                self._fail("metric", name, "dimensions", f"{unknown} are not dimensions of its inputs",
                           f"choose among {available} (or declare them on the model)")
            dims = list(metric.dimensions)
        self._dimensions[name] = dims
        return dims

    def measure_expression(self, metric: SimpleMetric) -> exp.Expression | None:
        return self._measures[metric.name]

    def filter_expressions(self, metric: SimpleMetric) -> list[exp.Expression]:
        return self._filters[metric.name]

    def derived_expression(self, metric: DerivedMetric) -> exp.Expression:
        return self._derived[metric.name]

    # ---- compile -----------------------------------------------------------------------------------

    def compile(self, name: str, by: list[str] | tuple[str, ...] | str | None = None, grain: str | None = None,
                start: Any = None, end: Any = None, where: str | Mapping[str, Any] | None = None,
                dialect: TDialect = "duckdb") -> CompiledQuery:
        """One SQL statement for ``name`` at ``grain`` by the dimensions ``by``.

        ``start``/``end`` are dates; the periods containing them are included whole. ``where`` filters
        dimensions: ``{"stage": ["won", "lost"]}`` or ``"region = 'EMEA' and segment <> 'SMB'"``; its
        values are bound parameters.
        """
        metric = self.get(name)
        if dialect not in DIALECTS:
            raise MetricQueryError(f"dialect {dialect!r} is not supported.", fix=f"use one of {', '.join(DIALECTS)}")
        grain = grain or metric.default_grain
        if grain not in metric.grains:
            raise MetricQueryError(f"metric {name!r} is not available by {grain!r}.",
                                   fix=f"use one of its grains: {', '.join(metric.grains)}")
        dims = self.dimensions(name)
        by_list = [by] if isinstance(by, str) else list(by or [])
        for item in by_list:
            if not isinstance(item, str) or item not in dims:
                raise MetricQueryError(
                    f"metric {name!r} cannot be grouped by {item!r}{did_you_mean(str(item), dims)}",
                    fix=f"its dimensions are: {', '.join(dims) or 'none'}")
        if len(set(by_list)) != len(by_list):
            raise MetricQueryError(f"by={by_list} names a dimension twice.", fix="name each dimension once")
        lo = timegrain.truncate(timegrain.as_date(start, "start"), grain) if start is not None else None
        hi = (timegrain.shift(timegrain.truncate(timegrain.as_date(end, "end"), grain), 1, grain)
              if end is not None else None)
        if lo is not None and hi is not None and lo >= hi:
            raise MetricQueryError(f"start {start} is after end {end}.", fix="swap them")
        comp = Compilation(self, grain, tuple(by_list), where, dims)  # type: ignore[arg-type]
        top = comp.metric(name, lo, hi)
        sql, outputs = comp.finish(top, name, dialect)
        return CompiledQuery(metric=name, sql=sql, params=dict(comp.params), dialect=dialect,
                             grain=grain, by=tuple(by_list), output_columns=outputs,  # type: ignore[arg-type]
                             tables=frozenset(comp.tables), columns=frozenset(comp.columns), start=lo, end=hi)

    # ---- validation --------------------------------------------------------------------------------

    def _fail(self, kind: str, name: str, key: str, problem: str, fix: str) -> None:
        raise MetricDefinitionError(f"{self.path}: {kind} {name!r}, key '{key}': {problem}", fix=fix)

    def _check_model(self, model: Model) -> None:
        clash = [d for d in model.dimensions if d in GRAINS]
        if clash:
            self._fail("model", model.name, "dimensions", f"{clash} collide with the time grain columns",
                       "rename the column in the mart (e.g. close_week) or leave it out")

    def _ref(self, metric: Metric, key: str, name: str) -> None:
        if name not in self._metrics:
            self._fail("metric", metric.name, key, f"metric {name!r} is not defined{did_you_mean(name, self.names)}",
                       "define it in metrics.yaml or fix the name")

    def _check_metric(self, metric: Metric) -> None:
        if metric.default_grain not in metric.grains:
            self._fail("metric", metric.name, "default_grain", f"{metric.default_grain!r} is not in its grains "
                       f"{metric.grains}", "add it to grains or pick one of them")
        if metric.name in GRAINS:
            self._fail("metric", metric.name, "name", "collides with a time grain column", "rename the metric")
        if isinstance(metric, SimpleMetric):
            self._check_simple(metric)
        elif isinstance(metric, RatioMetric):
            self._ref(metric, "numerator", metric.numerator)
            self._ref(metric, "denominator", metric.denominator)
        elif isinstance(metric, CumulativeMetric):
            self._ref(metric, "metric", metric.metric)
            base = self._metrics[metric.metric]
            if not isinstance(base, SimpleMetric) or base.snapshot:
                self._fail("metric", metric.name, "metric", f"{metric.metric!r} is not a simple, additive metric",
                           "a cumulative metric re-aggregates the rows of a simple metric without snapshot")
            if metric.window and metric.grain_to_date:
                self._fail("metric", metric.name, "window", "window and grain_to_date exclude each other",
                           "keep one of them")
            if metric.grain_to_date:
                finer = [g for g in metric.grains if timegrain.rank(g) > timegrain.rank(metric.grain_to_date)]
                if finer:
                    self._fail("metric", metric.name, "grains", f"{finer} are coarser than grain_to_date "
                               f"{metric.grain_to_date!r}", "remove them from grains")
        else:
            self._check_derived(metric)

    def _check_simple(self, metric: SimpleMetric) -> None:
        if metric.model not in self._models:
            self._fail("metric", metric.name, "model", f"model {metric.model!r} is not defined"
                       f"{did_you_mean(metric.model, list(self._models))}", "define it under models: or fix the name")
        model = self._models[metric.model]
        columns = model.all_columns
        if metric.time and metric.time not in columns:
            self._fail("metric", metric.name, "time", f"column {metric.time!r} is not declared on model "
                       f"{model.name!r}{did_you_mean(metric.time, sorted(columns))}",
                       "add it to the model's columns or fix the name")
        if metric.expr is None and metric.agg != "count":
            self._fail("metric", metric.name, "expr", f"agg {metric.agg!r} needs an expression",
                       "set expr to a column or SQL expression over the model's columns")
        try:
            self._measures[metric.name] = (check_definition(metric.expr, columns)
                                           if metric.expr is not None else None)
        except ExpressionError as exc:
            self._fail("metric", metric.name, "expr", str(exc), "use the model's declared columns")
        filters = []
        for text in metric.filter:
            try:
                filters.append(check_definition(text, columns))
            except ExpressionError as exc:
                self._fail("metric", metric.name, "filter", str(exc), "use the model's declared columns")
        self._filters[metric.name] = filters

    def _check_derived(self, metric: DerivedMetric) -> None:
        refs: list[str] = []
        for item in metric.metrics:
            self._ref(metric, "metrics", item.name)
            if item.ref in refs:
                self._fail("metric", metric.name, "metrics", f"{item.ref!r} is used twice",
                           "give each use of the same metric its own alias")
            refs.append(item.ref)
            if item.offset:
                _, unit = parse_period(item.offset)
                finer = [g for g in metric.grains if timegrain.rank(g) > timegrain.rank(unit)]
                if finer:
                    self._fail("metric", metric.name, "grains", f"offset {item.offset!r} is finer than grains "
                               f"{finer}", "remove those grains or use an offset in whole periods of them")
        if all(item.offset for item in metric.metrics):
            self._fail("metric", metric.name, "metrics", "every input has an offset",
                       "take at least one input at the period itself (no offset)")
        try:
            self._derived[metric.name] = check_derived(metric.expr, refs)
        except ExpressionError as exc:
            self._fail("metric", metric.name, "expr", str(exc), "refer to inputs by name (or alias)")

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name):] + [name]
                self._fail("metric", name, "metrics", f"cycle: {' → '.join(cycle)}",
                           "a metric cannot depend on itself; break the cycle")
            state[name] = 1
            for child in self.inputs(self._metrics[name]):
                visit(child, path + [name])
            state[name] = 2

        for name in self._metrics:
            visit(name, [])

    def check_warehouse(self, reader: Reader) -> None:
        """Every model's table and declared column exists in the reader's snapshot (one error lists all)."""
        table = reader.query("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema IN ('core', 'marts')").to_pylist()
        actual: dict[str, set[str]] = {}
        for row in table:
            actual.setdefault(f"{row['table_schema']}.{row['table_name']}", set()).add(row["column_name"])
        problems = []
        for model in self._models.values():
            if model.table not in actual:
                problems.append(f"model {model.name!r}: table {model.table} does not exist"
                                f"{did_you_mean(model.table, sorted(actual))}")
                continue
            for column in sorted(model.all_columns - actual[model.table]):
                problems.append(f"model {model.name!r}: column {model.table}.{column} does not exist"
                                f"{did_you_mean(column, sorted(actual[model.table]))}")
        if problems:
            raise MetricDefinitionError(f"{self.path} does not match the warehouse (snapshot {reader.snapshot.id}):\n  "
                                        + "\n  ".join(problems),
                                        fix="fix the names in metrics.yaml, or publish the marts they need")


@functools.lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> MetricCatalog:
    file = Path(path)
    models, metrics = parse_entries(read_yaml(file), file)
    return MetricCatalog(models, metrics, file)


def load_catalog(config: SophiaConfig | None = None, *, reader: Reader | None = None,
                 path: Path | str | None = None) -> MetricCatalog:
    """The metrics of ``path``, else ``config.metrics.path``, else the shipped metrics.yaml.

    With a ``reader``, the models are also checked against that snapshot's tables and columns.
    Loading is cached until the file changes.
    """
    file = Path(path) if path else (config.metrics.path if config and config.metrics.path else DEFAULT_PATH)
    try:
        stat = file.stat()
    except FileNotFoundError:
        read_yaml(file)  # raises the explained error
        raise
    catalog = _load(str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    if reader is not None:
        catalog.check_warehouse(reader)
    return catalog


def describe(catalog: MetricCatalog, metric: Metric) -> list[tuple[str, str]]:
    """(field, value) pairs that define a metric, for docs and ``sophia metrics show``."""
    rows = [("type", metric.type), ("unit", metric.unit), ("owner", metric.owner)]
    if isinstance(metric, SimpleMetric):
        model = catalog.model(metric.model)
        measure = f"{metric.agg}({metric.expr})" if metric.expr else f"{metric.agg}(*)"
        rows += [("measure", measure), ("table", model.table), ("time", metric.time or model.time)]
        if metric.filter:
            rows.append(("filter", " and ".join(metric.filter)))
        if metric.snapshot:
            rows.append(("snapshot", f"{metric.snapshot} (a stock: only the rows at each period's {metric.snapshot} "
                                     "time count)"))
        if metric.fill_nulls_with is not None:
            rows.append(("fill_nulls_with", f"{metric.fill_nulls_with:g}"))
    elif isinstance(metric, RatioMetric):
        rows.append(("definition", f"{metric.numerator} / {metric.denominator}"))
    elif isinstance(metric, CumulativeMetric):
        span = (f"trailing {metric.window}" if metric.window else
                f"{metric.grain_to_date} to date" if metric.grain_to_date else "running total since the start")
        rows.append(("definition", f"{metric.metric}, {span}"))
    else:
        inputs = ", ".join(f"{m.ref} = {m.name}" + (f" {m.offset} earlier" if m.offset else "")
                           for m in metric.metrics)
        rows.append(("definition", f"{metric.expr} (where {inputs})"))
    rows += [("grains", ", ".join(metric.grains) + f" (default {metric.default_grain})"),
             ("dimensions", ", ".join(catalog.dimensions(metric.name)) or "none")]
    return rows


def render_markdown(catalog: MetricCatalog | None = None) -> str:
    """docs/metrics.md: how to use metrics, the format of metrics.yaml, and every shipped metric."""
    catalog = catalog or load_catalog(path=DEFAULT_PATH)
    head = Path(__file__).with_name("metrics_doc_intro.md").read_text()
    out = [head.rstrip(), "", "## Metrics", "", "| metric | unit | description |", "| --- | --- | --- |"]
    out += [f"| [`{m.name}`](#{m.name}) | {m.unit} | {m.description} |" for m in catalog]
    for metric in catalog:
        out += ["", f"### {metric.name}", "", metric.description, "", "| | |", "| --- | --- |"]
        out += [f"| {key} | `{value}` |" if key in ("measure", "filter", "definition", "table", "time")
                else f"| {key} | {value} |" for key, value in describe(catalog, metric)]
    out += ["", "## Models", "", "| model | table | time | dimensions | description |",
            "| --- | --- | --- | --- | --- |"]
    out += [f"| {m.name} | `{m.table}` | `{m.time}` | {', '.join(m.dimensions) or '—'} | {m.description} |"
            for m in catalog.models]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
