"""The shape of metrics.yaml: models (the tables metrics read) and metrics, validated per entry.

A *model* names one warehouse table (``marts.x`` or ``core.x``), its default time column, the
dimensions people may group and filter by, and the other columns metric expressions may use.
A *metric* is one of four types (as in dbt MetricFlow):

- ``simple``: an aggregation of an expression over a model's rows (``agg: sum``, ``expr: amount``);
  ``snapshot: last`` makes it a stock (semi-additive over time): in each period only the rows at the
  period's last time are aggregated, e.g. pipeline value per month is the last weekly snapshot's.
- ``ratio``: ``numerator`` / ``denominator``, two other metrics.
- ``cumulative``: another simple metric re-aggregated over a trailing ``window`` (``4 weeks``), to
  date within a ``grain_to_date`` (``year``), or over all history (a running total).
- ``derived``: an ``expr`` over other metrics, each possibly taken at a period ``offset``
  (``1 week`` for week-over-week).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from sophia_lib.metrics.errors import MetricDefinitionError

TGrain = Literal["day", "week", "month", "quarter", "year"]
GRAINS: tuple[TGrain, ...] = ("day", "week", "month", "quarter", "year")
TAgg = Literal["sum", "count", "count_distinct", "avg", "min", "max", "median"]
TUnit = Literal["currency", "count", "percent", "ratio", "seconds", "minutes", "hours", "days", "score", "number"]
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE = re.compile(r"^(core|marts)\.[a-z_][a-z0-9_]{0,62}$")
PERIOD = re.compile(r"^\s*(\d+)\s+(day|week|month|quarter|year)s?\s*$")


def parse_period(text: str) -> tuple[int, TGrain]:
    """``"4 weeks"`` → ``(4, "week")``."""
    match = PERIOD.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{text!r} is not a period; write e.g. '1 week', '4 weeks', '3 months', '1 year'")
    return int(match.group(1)), match.group(2)  # type: ignore[return-value]


def _name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name; use lower-case letters, digits and '_', starting with a "
                         "letter")
    return value


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Model(Spec):
    """One table metrics read from."""

    name: str = Field(description="Name metrics refer to (model: NAME).")
    table: str = Field(description="The table, schema-qualified: marts.x or core.x.")
    description: str = Field(default="", description="What one row is.")
    time: str = Field(description="Default time column (date or timestamp) of its metrics.")
    dimensions: list[str] = Field(default_factory=list, description="Columns people may group and filter by.")
    columns: list[str] = Field(default_factory=list, description="Other columns metric expressions may use.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _name(value)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not TABLE.match(value):
            raise ValueError(f"{value!r} is not a serving table; write core.NAME or marts.NAME")
        return value

    @field_validator("time", "dimensions", "columns")
    @classmethod
    def _columns(cls, value: str | list[str]) -> str | list[str]:
        for column in [value] if isinstance(value, str) else value:
            if not NAME.match(column):
                raise ValueError(f"{column!r} is not a column name (lower-case letters, digits, '_')")
        return value

    @property
    def all_columns(self) -> set[str]:
        return {self.time, *self.dimensions, *self.columns}


class MetricBase(Spec):
    name: str = Field(description="Unique name, lower_snake_case.")
    description: str = Field(min_length=1, description="What it means, in one or two sentences.")
    owner: str = Field(min_length=1, description="Who answers questions about it (a team or person).")
    unit: TUnit = Field(description="currency, count, percent, ratio, seconds, minutes, hours, days, score, number.")
    label: str | None = Field(default=None, description="Display name; default: from the name.")
    grains: list[TGrain] = Field(default_factory=lambda: list(GRAINS), description="Time grains it may be asked at.")
    default_grain: TGrain = Field(default="month", description="Grain when the caller names none.")
    dimensions: list[str] | None = Field(
        default=None, description="Dimensions it may be grouped by; default: all its inputs share.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _name(value)

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


class SimpleMetric(MetricBase):
    type: Literal["simple"]
    model: str = Field(description="The model (table) it aggregates.")
    agg: TAgg = Field(description="sum, count, count_distinct, avg, min, max or median.")
    expr: str | None = Field(default=None, description="SQL expression over the model's columns; count may omit it.")
    time: str | None = Field(default=None, description="Time column; default: the model's.")
    filter: list[str] = Field(default_factory=list, description="Default filters (SQL conditions, AND-ed).")
    snapshot: Literal["last", "first"] | None = Field(
        default=None, description="A stock: aggregate only the rows at each period's last (first) time.")
    fill_nulls_with: float | None = Field(
        default=None, description="Value where it has no rows but other metrics it is combined with do.")

    @field_validator("filter", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RatioMetric(MetricBase):
    type: Literal["ratio"]
    numerator: str = Field(description="Metric on top.")
    denominator: str = Field(description="Metric below (a zero gives no value, not an error).")


class CumulativeMetric(MetricBase):
    type: Literal["cumulative"]
    metric: str = Field(description="The simple metric re-aggregated.")
    window: str | None = Field(default=None, description="Trailing window, e.g. '4 weeks'; none: all history.")
    grain_to_date: TGrain | None = Field(default=None, description="Restart at each month/quarter/year.")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_period(value)
        return value


class MetricInput(Spec):
    name: str = Field(description="Metric used.")
    offset: str | None = Field(default=None, description="Take its value this long before, e.g. '1 week'.")
    alias: str | None = Field(default=None, description="Name in expr; required when one metric is used twice.")

    @field_validator("offset")
    @classmethod
    def _offset(cls, value: str | None) -> str | None:
        if value is not None:
            parse_period(value)
        return value

    @property
    def ref(self) -> str:
        return self.alias or self.name


class DerivedMetric(MetricBase):
    type: Literal["derived"]
    expr: str = Field(description="SQL arithmetic over the inputs' names (or aliases).")
    metrics: list[MetricInput] = Field(min_length=1, description="Inputs: name, optional offset and alias.")

    @field_validator("metrics", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


Metric = Annotated[SimpleMetric | RatioMetric | CumulativeMetric | DerivedMetric, Field(discriminator="type")]
METRIC_ADAPTER: TypeAdapter[Metric] = TypeAdapter(Metric)
METRIC_TYPES = ("simple", "ratio", "cumulative", "derived")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise MetricDefinitionError(
                    f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}).",
                    fix="remove or rename one of them")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse metrics.yaml into a dict with ``models`` and ``metrics`` lists."""
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError:
        raise MetricDefinitionError(f"metrics file {path} does not exist.",
                                    fix="set metrics.path in sophia.yaml to an existing file, or remove it "
                                        "to use the shipped metrics.yaml") from None
    except yaml.YAMLError as exc:
        raise MetricDefinitionError(f"{path} is not valid YAML: {exc}", fix="fix the YAML syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
        raise MetricDefinitionError(f"{path} must be a mapping with a 'metrics:' list (and a 'models:' list).",
                                    fix="see docs/metrics.md for the format")
    unknown = set(data) - {"version", "models", "metrics"}
    if unknown:
        raise MetricDefinitionError(f"{path}: unknown top-level keys {sorted(unknown)}.",
                                    fix="the top level has only version, models and metrics")
    return data


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in METRIC_TYPES))
        parts.append(f"{loc or 'entry'}: {err['msg']}")
    return "; ".join(parts)


def parse_entries(data: dict[str, Any], path: Path) -> tuple[list[Model], list[Any]]:
    """Validate every model and metric entry, naming the entry and key that is wrong."""
    models: list[Model] = []
    for i, raw in enumerate(data.get("models") or []):
        label = raw.get("name", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        try:
            models.append(Model.model_validate(raw))
        except ValidationError as exc:
            raise MetricDefinitionError(f"{path}: model {label!r}: {_explain(exc)}",
                                        fix="see the model keys in docs/metrics.md") from None
    metrics = []
    for i, raw in enumerate(data["metrics"]):
        label = raw.get("name", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        if isinstance(raw, dict) and raw.get("type") not in METRIC_TYPES:
            raise MetricDefinitionError(
                f"{path}: metric {label!r}: type {raw.get('type')!r} is not a metric type.",
                fix=f"set type to one of {', '.join(METRIC_TYPES)}")
        try:
            metrics.append(METRIC_ADAPTER.validate_python(raw))
        except ValidationError as exc:
            raise MetricDefinitionError(f"{path}: metric {label!r}: {_explain(exc)}",
                                        fix="see the metric keys in docs/metrics.md") from None
    return models, metrics
