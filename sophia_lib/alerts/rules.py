"""``alerts.yaml``: the alert rules, validated once at load with errors that name the rule and the key.

::

    defaults:                      # merged into every rule (a rule's own value wins)
      notify: [slack:alerts]
      cooldown: 1d
    rules:
      - name: pipeline_wow         # unique; letters, digits, '_'
        kind: change               # threshold | change | anomaly | customer_health_drop |
                                   # project_deadline_risk | sync_failure | freshness | schema_change |
                                   # quarantine | job_failure
        metric: pipeline_value     # checked against the metric catalog (did you mean …?)
        threshold_pct: 10
        min_volume: 100000
        dashboard: sales-pipeline  # the alert links to <dashboards>/sales-pipeline

Durations are ``30m``, ``2h``, ``1d``, ``1w`` (or a number of seconds).
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from sophia_lib.alerts.errors import AlertRuleError
from sophia_lib.config import SophiaConfig, yaml_problem
from sophia_lib.delivery import DeliveryError, parse_target

REPO_RULES = Path(__file__).resolve().parents[2] / "pipelines" / "alerts.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
UNITS = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
TSeverity = Literal["info", "warning", "critical"]
TDirection = Literal["up", "down", "both"]


def parse_duration(value: Any) -> timedelta:
    """``"2h"`` → 2 hours; a timedelta or a number of seconds passes through."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = DURATION.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 2h, 1d or 1w")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique rule name: lowercase letters, digits and '_'.")
    description: str = Field(default="", description="One line shown with the alert.")
    enabled: bool = Field(default=True, description="Evaluate this rule.")
    severity: TSeverity = Field(default="warning", description="info, warning or critical.")
    notify: list[str] = Field(default_factory=list, description="Targets: email:ADDRESS, slack:CHANNEL.")
    cooldown: Duration = Field(default=timedelta(hours=24), description="After it resolves, the same alert stays "
                               "quiet this long before it can fire again.")
    remind_every: Duration | None = Field(default=None, description="Re-send while firing, unacknowledged and "
                                          "not snoozed; unset: never.")
    dashboard: str | None = Field(default=None, description="Slug of the dashboard that explains the alert.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"rule names are lowercase letters, digits and '_' starting with a letter; got {value!r}")
        return value

    @field_validator("dashboard")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG.match(value):
            raise ValueError(f"a dashboard slug is lowercase letters, digits, '-' and '_'; got {value!r}")
        return value

    @field_validator("notify")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for spec in value:
            try:
                parse_target(spec)
            except DeliveryError as exc:
                raise ValueError(exc.message) from None
        return value

    @property
    def uses_metrics(self) -> bool:
        return False


class _MetricRule(_Rule):
    metric: str = Field(description="Metric name from metrics.yaml.")
    by: list[str] = Field(default_factory=list, description="Dimensions: one alert per combination.")
    where: str | dict[str, Any] | None = Field(default=None, description="Dimension filter, as in sl.metric().")
    grain: str | None = Field(default=None, description="Time grain; default: the metric's default grain.")
    min_volume: float = Field(default=0.0, ge=0, description="Stay quiet unless the current or the reference "
                              "value reaches this size (no alarms on tiny numbers).")

    @field_validator("by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def uses_metrics(self) -> bool:
        return True


class ThresholdRule(_MetricRule):
    """Fires while the metric's last complete period is above/below a value."""

    kind: Literal["threshold"]
    op: Literal[">", ">=", "<", "<="] = Field(description="Comparison with value.")
    value: float = Field(description="The threshold.")


class ChangeRule(_MetricRule):
    """Fires when the last complete period moved by ``threshold_pct`` against the period before (``compare:
    previous``) or the mean of the ``periods`` before it (``compare: trailing_mean``)."""

    kind: Literal["change"]
    threshold_pct: float = Field(gt=0, description="Relative change in percent that fires.")
    direction: TDirection = Field(default="both", description="up, down or both.")
    compare: Literal["previous", "trailing_mean"] = Field(default="previous", description="Reference value.")
    periods: int = Field(default=1, ge=1, le=52, description="trailing_mean: periods averaged.")


class AnomalyRule(_MetricRule):
    """Fires when the last complete period is an outlier against its own history: robust z-score
    (median and median absolute deviation); with ``seasonality: weekday`` only the same weekdays count."""

    kind: Literal["anomaly"]
    z: float = Field(default=3.5, gt=0, description="Robust z-score that fires.")
    lookback: int = Field(default=56, ge=5, le=1000, description="Periods of history the baseline uses.")
    seasonality: Literal["none", "weekday"] = Field(default="none", description="weekday: compare Mondays with "
                                                    "Mondays (day grain only).")
    direction: TDirection = Field(default="both", description="up, down or both.")
    min_history: int = Field(default=4, ge=3, description="Fewer past points than this: stay quiet.")


class CustomerHealthDropRule(_Rule):
    """Fires per customer whose health score fell by ``drop`` points within about 30 days and now sits below
    ``below`` (marts.customer_health_history); customers already churned are left out."""

    kind: Literal["customer_health_drop"]
    drop: float = Field(default=20, gt=0, le=100, description="Points lost against ~30 days earlier.")
    below: float = Field(default=60, gt=0, le=100, description="Only when the score is now under this.")
    min_arr: float = Field(default=0, ge=0, description="Only customers with at least this ARR.")


class ProjectDeadlineRiskRule(_Rule):
    """Fires per live project that marts.project_status flags at risk, for the listed reasons."""

    kind: Literal["project_deadline_risk"]
    reasons: list[Literal["past_due", "stalled", "projected_late"]] = Field(
        default_factory=lambda: ["past_due", "stalled", "projected_late"], description="Which risk reasons count.")


class SyncFailureRule(_Rule):
    """Fires per source whose last ``after_failures`` syncs failed; resolves on its next success."""

    kind: Literal["sync_failure"]
    after_failures: int = Field(default=1, ge=1, le=50, description="Consecutive failed syncs that fire.")


class FreshnessRule(_Rule):
    """Fires per enabled source whose last successful sync finished longer than ``sla`` ago."""

    kind: Literal["freshness"]
    sla: Duration = Field(default=timedelta(hours=2), description="Longest acceptable lag.")


class SchemaChangeRule(_Rule):
    """Fires per source stream whose columns changed (schema events) within ``window``."""

    kind: Literal["schema_change"]
    window: Duration = Field(default=timedelta(days=1), description="How long a change keeps the alert firing.")
    changes: list[Literal["added", "removed", "retyped"]] = Field(
        default_factory=lambda: ["added", "removed", "retyped"], description="Which changes count.")


class QuarantineRule(_Rule):
    """Fires per source stream that set aside at least ``min_records`` records within ``window``."""

    kind: Literal["quarantine"]
    window: Duration = Field(default=timedelta(days=1), description="Period counted.")
    min_records: int = Field(default=1, ge=1, description="Quarantined records that fire.")


class JobFailureRule(_Rule):
    """Fires per scheduled job whose last run failed or timed out; resolves when a run succeeds."""

    kind: Literal["job_failure"]
    jobs: list[str] | None = Field(default=None, description="Only these jobs; default: all.")


TRule = Annotated[
    ThresholdRule | ChangeRule | AnomalyRule | CustomerHealthDropRule | ProjectDeadlineRiskRule | SyncFailureRule
    | FreshnessRule | SchemaChangeRule | QuarantineRule | JobFailureRule,
    Field(discriminator="kind"),
]
RULE_ADAPTER: TypeAdapter[TRule] = TypeAdapter(TRule)
KINDS: tuple[str, ...] = ("threshold", "change", "anomaly", "customer_health_drop", "project_deadline_risk",
                          "sync_failure", "freshness", "schema_change", "quarantine", "job_failure")
DEFAULTABLE = ("notify", "cooldown", "remind_every", "severity", "enabled")


def rules_path(config: SophiaConfig | None) -> Path:
    return (config.alerts.rules if config is not None and config.alerts.rules else None) or REPO_RULES


def load_rules(config: SophiaConfig | None = None, path: str | Path | None = None, *,
               check_metrics: bool = True) -> list[TRule]:
    """The rules of ``path`` (default: ``alerts.rules``, else pipelines/alerts.yaml), checked; metric names,
    dimensions and grains are checked against the metric catalog unless ``check_metrics`` is false."""
    file = Path(path) if path is not None else rules_path(config)
    data = _read(file)
    rules = parse_rules(data, str(file))
    if check_metrics:
        check_against_catalog(rules, config, str(file))
    return rules


def _read(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except OSError as exc:
        raise AlertRuleError(f"cannot read the alert rules {file}: {exc.strerror}.",
                             fix="create it (pipelines/alerts.yaml is the example) or set alerts.rules in "
                                 "sophia.yaml") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AlertRuleError(f"{file} is not valid YAML{yaml_problem(exc)}.",
                             fix="fix the YAML syntax there") from None
    if not isinstance(data, dict):
        raise AlertRuleError(f"{file} must be a mapping with 'rules:' (and optional 'defaults:').",
                             fix="start the file with 'rules:'")
    return data


def parse_rules(data: dict[str, Any], where: str = "alerts.yaml") -> list[TRule]:
    unknown = sorted(set(data) - {"version", "defaults", "rules"})
    if unknown:
        raise AlertRuleError(f"{where}: unknown top-level key(s) {', '.join(unknown)}.",
                             fix="the file has 'defaults:' and 'rules:' only")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(DEFAULTABLE):
        bad = sorted(set(defaults) - set(DEFAULTABLE)) if isinstance(defaults, dict) else defaults
        raise AlertRuleError(f"{where}: defaults may set {', '.join(DEFAULTABLE)}; got {bad!r}.",
                             fix="move other keys into the rules themselves")
    raw = data.get("rules")
    if not isinstance(raw, list) or not raw:
        raise AlertRuleError(f"{where}: 'rules' must be a non-empty list of rules.", fix="add at least one rule")
    rules: list[TRule] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        label = f"rule #{index + 1}"
        if not isinstance(entry, dict):
            raise AlertRuleError(f"{where}: {label} must be a mapping (name:, kind:, …).", fix="indent its keys")
        if isinstance(entry.get("name"), str):
            label = f"rule {entry['name']!r}"
        if "kind" not in entry:
            raise AlertRuleError(f"{where}: {label} has no 'kind'.", fix=f"set kind to one of {', '.join(KINDS)}")
        if entry["kind"] not in KINDS:
            guess = difflib.get_close_matches(str(entry["kind"]), KINDS, n=1)
            hint = f" — did you mean {guess[0]!r}?" if guess else ""
            raise AlertRuleError(f"{where}: {label}, key 'kind': unknown kind {entry['kind']!r}{hint}",
                                 fix=f"use one of {', '.join(KINDS)}")
        try:
            rule = RULE_ADAPTER.validate_python({**defaults, **entry})
        except ValidationError as exc:
            raise AlertRuleError(f"{where}: {label} is invalid:\n" + _explain(exc, entry["kind"]),
                                 fix="correct the keys named above (docs/alerts.md lists every key)") from None
        if rule.name in seen:
            raise AlertRuleError(f"{where}: rule {rule.name!r} is defined twice.", fix="rename or remove one of them")
        seen.add(rule.name)
        rules.append(rule)
    return rules


def _explain(exc: ValidationError, kind: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if str(p) != kind]
        key = ".".join(loc) or "(rule)"
        if err["type"] == "extra_forbidden":
            valid = sorted(_fields(kind))
            guess = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f" — did you mean '{guess[0]}'?" if guess else ""
            lines.append(f"- key '{key}': unknown key for kind {kind}{hint} Valid keys: {', '.join(valid)}.")
            continue
        message = err["msg"].removeprefix("Value error, ")
        shown = "(missing)" if err["type"] == "missing" else repr(err.get("input"))
        lines.append(f"- key '{key}' = {shown}: {message}")
    return "\n".join(lines)


def _fields(kind: str) -> list[str]:
    for cls in (ThresholdRule, ChangeRule, AnomalyRule, CustomerHealthDropRule, ProjectDeadlineRiskRule,
                SyncFailureRule, FreshnessRule, SchemaChangeRule, QuarantineRule, JobFailureRule):
        if cls.model_fields["kind"].annotation.__args__[0] == kind:  # type: ignore[union-attr]
            return list(cls.model_fields)
    return []


def check_against_catalog(rules: list[TRule], config: SophiaConfig | None, where: str) -> None:
    """Unknown metric (with did-you-mean), dimension or grain → an error naming rule and key."""
    from sophia_lib.metrics import load_catalog
    from sophia_lib.metrics.catalog import did_you_mean

    catalog = None
    for rule in rules:
        if not isinstance(rule, _MetricRule):
            continue
        catalog = catalog or load_catalog(config)
        if rule.metric not in catalog:
            raise AlertRuleError(f"{where}: rule {rule.name!r}, key 'metric': unknown metric "
                                 f"{rule.metric!r}{did_you_mean(rule.metric, catalog.names) or '.'}",
                                 fix="`sophia metrics list` shows every metric")
        metric = catalog.get(rule.metric)
        grain = rule.grain or metric.default_grain
        if grain not in metric.grains:
            raise AlertRuleError(f"{where}: rule {rule.name!r}, key 'grain': metric {rule.metric!r} has no grain "
                                 f"{grain!r}.", fix=f"use one of {', '.join(metric.grains)}")
        if isinstance(rule, AnomalyRule) and rule.seasonality == "weekday" and grain != "day":
            raise AlertRuleError(f"{where}: rule {rule.name!r}, key 'seasonality': weekday seasonality needs "
                                 f"grain day (got {grain!r}).", fix="set grain: day, or seasonality: none")
        dims = catalog.dimensions(rule.metric)
        for dim in rule.by:
            if dim not in dims:
                raise AlertRuleError(f"{where}: rule {rule.name!r}, key 'by': metric {rule.metric!r} has no "
                                     f"dimension {dim!r}{did_you_mean(dim, dims) or '.'}",
                                     fix=f"its dimensions are: {', '.join(dims) or 'none'}")
