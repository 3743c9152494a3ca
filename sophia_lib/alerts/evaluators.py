"""One evaluator per rule kind: what is true *now* → the keys that fire, each with a one-line summary.

Evaluators only look; :mod:`.lifecycle` decides what is new, still firing or resolved. Metric rules read
complete periods only (the last full week when ``as_of`` is a Wednesday), so an alert does not flicker
while the current period fills up. Data rules (sync, freshness, schema, quarantine, jobs) read the app DB.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from sophia_lib.alerts import rules as r
from sophia_lib.alerts.source import MetricSource
from sophia_lib.alerts.stats import robust_z
from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import JobRun, QuarantineSummary, SchemaEvent
from sophia_lib.config import SophiaConfig
from sophia_lib.errors import SophiaError

HEALTH_PRIOR_GAP = timedelta(days=25)  # "30 days ago": the score at least 25 days older (month-end rows)


@dataclass
class Finding:
    """One key of one rule that is firing now."""

    key: str
    summary: str
    value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalContext:
    config: SophiaConfig
    as_of: datetime
    """The data's cutoff: the snapshot's as-of (metric and marts rules read periods complete by then)."""
    now: datetime
    """The clock: data rules (sync, freshness, schema, quarantine, jobs) measure lags and windows from it."""
    source: MetricSource | None
    app_db: AppDb
    units: dict[str, str] = field(default_factory=dict)

    def need_source(self) -> MetricSource:
        if self.source is None:
            raise SophiaError("this rule reads metrics, and no metric source is available.",
                              fix="run it where the query service is reachable (SOPHIA_QUERY_URL, with a hub "
                                  "token in SOPHIA_QUERY_TOKEN)")
        return self.source


def evaluate(rule: r.TRule, ctx: EvalContext) -> list[Finding]:
    return EVALUATORS[rule.kind](rule, ctx)


# ---- metric rules -------------------------------------------------------------------------------------


def _grain(rule: r._MetricRule, ctx: EvalContext) -> str:
    from sophia_lib.metrics import load_catalog

    return rule.grain or load_catalog(ctx.config).get(rule.metric).default_grain


def _periods(as_of: datetime, grain: str, back: int) -> list[date]:
    """The ``back + 1`` last complete periods, oldest first."""
    from sophia_lib.metrics.timegrain import shift, truncate

    last = shift(truncate(as_of.date(), grain), -1, grain)  # type: ignore[arg-type]
    return [shift(last, -i, grain) for i in range(back, -1, -1)]  # type: ignore[arg-type]


def _series(rule: r._MetricRule, ctx: EvalContext, back: int) -> tuple[list[date], dict[str, pd.Series]]:
    """Per ``by`` key, the metric over the last ``back + 1`` complete periods; a period with no row is 0."""
    grain = _grain(rule, ctx)
    periods = _periods(ctx.as_of, grain, back)
    frame = ctx.need_source().metric(rule.metric, by=rule.by, grain=grain, start=periods[0], end=periods[-1],
                                     where=rule.where)
    out: dict[str, pd.Series] = {}
    if frame.empty:
        return periods, {"": pd.Series(0.0, index=periods)} if not rule.by else {}
    frame = frame.copy()
    frame["_period"] = pd.to_datetime(frame[grain]).dt.date
    frame["_key"] = ""
    for dim in rule.by:
        frame["_key"] += ("," if dim != rule.by[0] else "") + dim + "=" + frame[dim].astype(str)
    for key, part in frame.groupby("_key", sort=True):
        values = pd.to_numeric(part.set_index("_period")[rule.metric], errors="coerce").groupby(level=0).sum()
        out[str(key)] = values.reindex(periods).fillna(0.0).astype("float64")
    return periods, out


def _unit(rule: r._MetricRule, ctx: EvalContext) -> str:
    if rule.metric not in ctx.units:
        from sophia_lib.metrics import load_catalog

        ctx.units[rule.metric] = str(getattr(load_catalog(ctx.config).get(rule.metric), "unit", "") or "")
    return ctx.units[rule.metric]


def fmt(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    sign = "-" if value < 0 else ""
    size = abs(value)
    prefix = "$" if unit == "currency" else ""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{sign}{prefix}{size / limit:.1f}{suffix}"
    return f"{sign}{prefix}{size:,.0f}" if size >= 100 or float(size).is_integer() else f"{sign}{prefix}{size:.2f}"


def _label(rule: r._MetricRule, key: str) -> str:
    return rule.metric + (f" [{key}]" if key else "")


def _period_name(grain: str, period: date) -> str:
    return {"day": f"on {period}", "week": f"in the week of {period}", "month": f"in {period:%B %Y}",
            "quarter": f"in the quarter from {period}", "year": f"in {period.year}"}[grain]


def _threshold(rule: r.ThresholdRule, ctx: EvalContext) -> list[Finding]:
    periods, series = _series(rule, ctx, 0)
    grain, unit = _grain(rule, ctx), _unit(rule, ctx)
    compare: dict[str, Callable[[float, float], bool]] = {
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
    out = []
    for key, values in series.items():
        value = float(values.iloc[-1])
        if abs(value) < rule.min_volume and rule.op in (">", ">="):
            continue
        if compare[rule.op](value, rule.value):
            out.append(Finding(key, f"{_label(rule, key)} is {fmt(value, unit)} {_period_name(grain, periods[-1])} "
                                    f"({rule.op} {fmt(rule.value, unit)})", value,
                               {"period": periods[-1].isoformat(), "value": value, "threshold": rule.value}))
    return out


def _change(rule: r.ChangeRule, ctx: EvalContext) -> list[Finding]:
    back = rule.periods if rule.compare == "trailing_mean" else 1
    periods, series = _series(rule, ctx, back)
    grain, unit = _grain(rule, ctx), _unit(rule, ctx)
    out = []
    for key, values in series.items():
        current = float(values.iloc[-1])
        reference = float(values.iloc[:-1].mean()) if rule.compare == "trailing_mean" else float(values.iloc[-2])
        if max(abs(current), abs(reference)) < rule.min_volume or max(abs(current), abs(reference)) == 0:
            continue
        pct = (current - reference) / abs(reference) * 100 if reference else math.inf
        if abs(pct) < rule.threshold_pct or (rule.direction == "up" and pct < 0) or \
                (rule.direction == "down" and pct > 0):
            continue
        versus = (f"the mean of the {rule.periods} {grain}s before ({fmt(reference, unit)})"
                  if rule.compare == "trailing_mean" else f"the {grain} before ({fmt(reference, unit)})")
        moved = "rose" if pct > 0 else "fell"
        shown = "from nothing" if math.isinf(pct) else f"{abs(pct):.1f} %"
        out.append(Finding(key, f"{_label(rule, key)} {moved} {shown} to {fmt(current, unit)} "
                                f"{_period_name(grain, periods[-1])}, against {versus}", current,
                           {"period": periods[-1].isoformat(), "value": current, "reference": reference,
                            "change_pct": None if math.isinf(pct) else round(pct, 2)}))
    return out


def _anomaly(rule: r.AnomalyRule, ctx: EvalContext) -> list[Finding]:
    periods, series = _series(rule, ctx, rule.lookback)
    grain, unit = _grain(rule, ctx), _unit(rule, ctx)
    out = []
    for key, values in series.items():
        current = float(values.iloc[-1])
        history = values.iloc[:-1]
        if rule.seasonality == "weekday":
            weekday = periods[-1].weekday()
            history = history[[p.weekday() == weekday for p in history.index]]
        if len(history) < rule.min_history:
            continue
        z, median, scale = robust_z(current, history.tolist())
        if max(abs(current), abs(median)) < rule.min_volume or abs(z) < rule.z:
            continue
        if (rule.direction == "up" and z < 0) or (rule.direction == "down" and z > 0):
            continue
        season = f" {periods[-1]:%A}s" if rule.seasonality == "weekday" else f" {grain}s"
        shown_z = "∞" if math.isinf(z) else f"{z:+.1f}"
        out.append(Finding(key, f"{_label(rule, key)} is {fmt(current, unit)} {_period_name(grain, periods[-1])}, "
                                f"unusual against the last {len(history)}{season} (median {fmt(median, unit)}, "
                                f"robust z {shown_z})", current,
                           {"period": periods[-1].isoformat(), "value": current, "median": median,
                            "z": None if math.isinf(z) else round(z, 2), "history_points": len(history)}))
    return out


# ---- marts rules --------------------------------------------------------------------------------------


def _health_drop(rule: r.CustomerHealthDropRule, ctx: EvalContext) -> list[Finding]:
    frame = ctx.need_source().table("marts.customer_health_history")
    if frame.empty:
        return []
    frame = frame.copy()
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    frame = frame[frame["scored_at"] <= pd.Timestamp(ctx.as_of)].sort_values(["account_key", "scored_at"])
    latest = frame.groupby("account_key").tail(1).set_index("account_key")
    latest_at = latest["scored_at"].rename("latest_at").reset_index()
    prior_rows = frame.merge(latest_at, on="account_key")
    prior_rows = prior_rows[prior_rows["scored_at"] <= prior_rows["latest_at"] - HEALTH_PRIOR_GAP]
    prior = prior_rows.groupby("account_key").tail(1).set_index("account_key")
    latest["prior"] = prior["health_score"]
    latest["prior_at"] = prior["scored_at"]
    latest["change"] = latest["health_score"] - latest["prior"]
    churned = latest["is_churned"].fillna(False).astype(bool) if "is_churned" in latest else False
    arr = pd.to_numeric(latest.get("arr", 0), errors="coerce").fillna(0)
    hits = latest[(latest["change"] <= -rule.drop) & (latest["health_score"] < rule.below) & ~churned
                  & (arr >= rule.min_arr)]
    out = []
    for account_key, row in hits.iterrows():
        name = row.get("account_name") or account_key
        out.append(Finding(str(account_key), f"{name}: health score fell {abs(row['change']):.0f} points to "
                                             f"{row['health_score']:.0f} ({row.get('band', '')}) since "
                                             f"{row['prior_at']:%Y-%m-%d} ({row['prior']:.0f})",
                           float(row["health_score"]),
                           {"account_key": str(account_key), "account_name": str(name),
                            "health_score": float(row["health_score"]), "prior_score": float(row["prior"]),
                            "scored_at": row["scored_at"].isoformat(), "prior_at": row["prior_at"].isoformat(),
                            "arr": float(arr.get(account_key, 0))}))
    return out


def _project_risk(rule: r.ProjectDeadlineRiskRule, ctx: EvalContext) -> list[Finding]:
    frame = ctx.need_source().table("marts.project_status")
    if frame.empty:
        return []
    if "as_of_date" in frame:
        mart_day = pd.to_datetime(frame["as_of_date"]).max().date()
        if mart_day > ctx.as_of.date():
            raise SophiaError(f"marts.project_status is as of {mart_day}, after this evaluation's as-of "
                              f"{ctx.as_of.date()}: it holds no history, so deadline risk cannot be judged "
                              "in the past.",
                              fix="evaluate project_deadline_risk at the snapshot's as-of")
    hits = frame[frame["deadline_risk"].fillna(False).astype(bool) & frame["risk_reason"].isin(rule.reasons)]
    why = {"past_due": "is past its due date", "stalled": "has closed nothing in 28 days",
           "projected_late": "is projected to finish after its due date"}
    out = []
    for _, row in hits.iterrows():
        due = pd.Timestamp(row["due_on"]).date() if pd.notna(row.get("due_on")) else None
        progress = float(row["progress"]) if pd.notna(row.get("progress")) else math.nan
        out.append(Finding(str(row["project_key"]), f"{row['name']} ({row.get('team') or row['system']}) "
                                                     f"{why[row['risk_reason']]}: due {due}, "
                                                     f"{progress * 100:.0f} % done, {int(row['tasks_open'])} open "
                                                     f"task(s)", progress,
                           {"project_key": str(row["project_key"]), "name": str(row["name"]),
                            "reason": str(row["risk_reason"]), "due_on": str(due),
                            "projected_completion_on": str(row.get("projected_completion_on"))}))
    return out


# ---- data rules (app DB) ------------------------------------------------------------------------------


def _health(ctx: EvalContext) -> list[Any]:
    from sophia_lib.sync import source_health

    return source_health(ctx.config, now=ctx.now, app_db=ctx.app_db)


def _sync_failure(rule: r.SyncFailureRule, ctx: EvalContext) -> list[Finding]:
    out = []
    for h in _health(ctx):
        if h.enabled and h.consecutive_failures >= rule.after_failures and h.state in ("failing", "running"):
            since = f", last success {h.last_success_at:%Y-%m-%d %H:%M} UTC" if h.last_success_at else ""
            out.append(Finding(h.source, f"{h.source}: the last {h.consecutive_failures} sync(s) failed{since}: "
                                         f"{(h.last_error or 'no error recorded').splitlines()[0][:300]}",
                               float(h.consecutive_failures),
                               {"source": h.source, "failures": h.consecutive_failures,
                                "reason": h.last_error_reason}))
    return out


def _freshness(rule: r.FreshnessRule, ctx: EvalContext) -> list[Finding]:
    out = []
    for h in _health(ctx):
        if h.enabled and h.lag is not None and h.lag > rule.sla:
            hours = h.lag.total_seconds() / 3600
            out.append(Finding(h.source, f"{h.source}: data is {hours:.1f} h old (SLA {_human(rule.sla)}); last "
                                         f"successful sync finished {h.last_success_at:%Y-%m-%d %H:%M} UTC",
                               hours, {"source": h.source, "lag_h": round(hours, 2)}))
    return out


def _schema_change(rule: r.SchemaChangeRule, ctx: EvalContext) -> list[Finding]:
    with ctx.app_db.session() as s:
        events = s.scalars(select(SchemaEvent).where(SchemaEvent.at > ctx.now - rule.window,
                                                     SchemaEvent.at <= ctx.now,
                                                     SchemaEvent.change.in_(rule.changes))
                           .order_by(SchemaEvent.id)).all()
    grouped: dict[str, list[SchemaEvent]] = {}
    for event in events:
        grouped.setdefault(f"{event.source}.{event.stream}", []).append(event)
    out = []
    for key, items in grouped.items():
        parts = [f"{e.column_name} {e.change}" + (f" ({e.old_type}→{e.new_type})" if e.change == "retyped" else "")
                 for e in items[:10]]
        more = f" and {len(items) - 10} more" if len(items) > 10 else ""
        out.append(Finding(key, f"{key}: columns changed: {', '.join(parts)}{more}", float(len(items)),
                           {"changes": [{"column": e.column_name, "change": e.change, "old_type": e.old_type,
                                         "new_type": e.new_type, "at": e.at.isoformat()} for e in items[:50]]}))
    return out


def _quarantine(rule: r.QuarantineRule, ctx: EvalContext) -> list[Finding]:
    with ctx.app_db.session() as s:
        rows = s.execute(select(QuarantineSummary.source, QuarantineSummary.stream, QuarantineSummary.reason,
                                func.sum(QuarantineSummary.records))
                         .where(QuarantineSummary.at > ctx.now - rule.window, QuarantineSummary.at <= ctx.now)
                         .group_by(QuarantineSummary.source, QuarantineSummary.stream,
                                   QuarantineSummary.reason)).all()
    totals: dict[str, dict[str, int]] = {}
    for source, stream, reason, records in rows:
        totals.setdefault(f"{source}.{stream}", {})[reason] = int(records or 0)
    out = []
    for key, reasons in totals.items():
        count = sum(reasons.values())
        if count >= rule.min_records:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            out.append(Finding(key, f"{key}: {count} record(s) quarantined in the last {_human(rule.window)} "
                                    f"({why})", float(count), {"records": count, "reasons": reasons}))
    return out


def _job_failure(rule: r.JobFailureRule, ctx: EvalContext) -> list[Finding]:
    with ctx.app_db.session() as s:
        latest_ids = select(func.max(JobRun.id)).where(JobRun.status.in_(
            ("succeeded", "failed", "timed_out")), JobRun.started_at <= ctx.now).group_by(JobRun.job)
        runs = s.scalars(select(JobRun).where(JobRun.id.in_(latest_ids))).all()
    out = []
    for run in runs:
        if run.status in ("failed", "timed_out") and (rule.jobs is None or run.job in rule.jobs):
            error = (run.error or "").strip().splitlines()
            out.append(Finding(run.job, f"job {run.job}: run #{run.id} {run.status.replace('_', ' ')}"
                                        + (f" at cell {run.failed_cell_index}" if run.failed_cell_index is not None
                                           else "") + (f": {error[-1][:300]}" if error else ""),
                               None, {"run_id": run.id, "status": run.status}))
    return out


def _human(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for size, unit in ((604800, "w"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:.0f} s"


EVALUATORS: dict[str, Callable[[Any, EvalContext], list[Finding]]] = {
    "threshold": _threshold, "change": _change, "anomaly": _anomaly, "customer_health_drop": _health_drop,
    "project_deadline_risk": _project_risk, "sync_failure": _sync_failure, "freshness": _freshness,
    "schema_change": _schema_change, "quarantine": _quarantine, "job_failure": _job_failure,
}
