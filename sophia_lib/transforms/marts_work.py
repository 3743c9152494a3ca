"""Work and knowledge marts: team productivity per week, delivery cycle times, Linear cycle delivery,
project status with a deadline-risk flag, workload per assignee, and knowledge use (Notion + Slack).

Teams: work (tasks, issues) belongs to the team that owns it (the Asana project's team, the Linear
issue's team); chat and pages belong to the team of the employee who wrote them (``core.employees``).
Weeks start on Monday (UTC). No message text reaches a mart, only counts.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.knowledge_marts import build_knowledge_marts
from sophia_lib.transforms.work import OPEN_STATES
from sophia_lib.transforms.work_common import TS, as_date, employee_teams, team_week_grid, week_start

UNASSIGNED = "Unassigned"
THROUGHPUT_WINDOW_DAYS = 28
DAY = pd.Timedelta(days=1)


def _now(as_of: datetime) -> pd.Timestamp:
    return pd.Timestamp(as_of).tz_convert("UTC")


def _weekly(frame: pd.DataFrame, when: str, grid: pd.DataFrame, name: str, value: str | None = None,
            how: str = "size") -> pd.Series:
    """Per (team, week) count (or ``how`` of ``value``) of rows by the week of ``when``, on ``grid``'s rows."""
    rows = frame[frame[when].notna()]
    keys = [rows["team"], week_start(rows[when]).rename("week")]
    grouped = rows.groupby(keys)
    counts = grouped.size() if value is None else grouped[value].agg(how)
    index = pd.MultiIndex.from_frame(grid[["team", "week"]])
    return counts.reindex(index, fill_value=0).rename(name).reset_index(drop=True)


def team_productivity(tasks: pd.DataFrame, messages: pd.DataFrame, employees: pd.DataFrame,
                      as_of: datetime) -> pd.DataFrame:
    """``marts.team_productivity``: one row per team and week, from its first active week to ``as_of``'s."""
    team_of = employee_teams(employees, tasks)
    msgs = messages.loc[~messages["is_bot"].fillna(False).astype(bool),
                        ["sent_at", "employee_key", "is_reply", "is_thread_root"]].copy()
    msgs["team"] = msgs["employee_key"].map(team_of).astype("string").fillna(UNASSIGNED)
    work = tasks[["team", "system", "state", "created_at", "started_at", "completed_at", "canceled_at", "closed_at",
                  "estimate"]].copy()
    work["team"] = work["team"].fillna(UNASSIGNED)
    first = pd.concat([pd.DataFrame({"team": msgs["team"], "week": week_start(msgs["sent_at"])}),
                       pd.DataFrame({"team": work["team"], "week": week_start(work["created_at"])})])
    grid = team_week_grid(first, week_start(pd.Series([_now(as_of)])).iloc[0])
    done = work[work["state"] == "done"]
    started = work[work["started_at"].notna()]
    roots = msgs[msgs["is_thread_root"].fillna(False).astype(bool)]
    replies = msgs[msgs["is_reply"].fillna(False).astype(bool)]
    cols = {
        "messages": _weekly(msgs, "sent_at", grid, "messages"),
        "threads_started": _weekly(roots, "sent_at", grid, "threads_started"),
        "thread_replies": _weekly(replies, "sent_at", grid, "thread_replies"),
        "active_members": _weekly(msgs, "sent_at", grid, "active_members", "employee_key", "nunique"),
        "tasks_created": _weekly(work, "created_at", grid, "tasks_created"),
        "tasks_started": _weekly(started, "started_at", grid, "tasks_started"),
        "tasks_completed": _weekly(done, "completed_at", grid, "tasks_completed"),
        "tasks_canceled": _weekly(work, "canceled_at", grid, "tasks_canceled"),
        "asana_tasks_completed": _weekly(done[done["system"] == "asana"], "completed_at", grid, "asana"),
        "linear_issues_completed": _weekly(done[done["system"] == "linear"], "completed_at", grid, "linear"),
        "points_completed": _weekly(done, "completed_at", grid, "points_completed", "estimate", "sum"),
    }
    out = pd.concat([grid.reset_index(drop=True), pd.DataFrame(cols)], axis=1)
    by_team = out.groupby("team", sort=False)
    closed = _weekly(work, "closed_at", grid, "closed")
    closed_started = _weekly(started, "closed_at", grid, "closed_started")
    out["throughput_4w"] = by_team["tasks_completed"].transform(lambda s: s.rolling(4, min_periods=1).mean())
    out["wip"] = (out["tasks_started"].groupby(out["team"]).cumsum()
                  - closed_started.groupby(out["team"]).cumsum()).clip(lower=0)
    out["open_tasks"] = (out["tasks_created"].groupby(out["team"]).cumsum()
                         - closed.groupby(out["team"]).cumsum()).clip(lower=0)
    out["week"] = as_date(out["week"])
    ints = [c for c in out.columns if c not in ("team", "week", "throughput_4w", "points_completed")]
    return out.astype({c: "int64" for c in ints} | {"points_completed": "float64", "throughput_4w": "float64"})


def delivery_cycle_times(tasks: pd.DataFrame, projects: pd.DataFrame, employees: pd.DataFrame) -> pd.DataFrame:
    """``marts.delivery_cycle_times``: one row per completed (done) task or issue."""
    done = tasks[(tasks["state"] == "done") & tasks["completed_at"].notna()]
    due = pd.to_datetime(done["due_on"], utc=True)
    out = pd.DataFrame({
        "task_key": done["task_key"], "system": done["system"], "system_id": done["system_id"],
        "identifier": done["identifier"], "team": done["team"].fillna(UNASSIGNED), "project_key": done["project_key"],
        "project_name": done["project_key"].map(projects.set_index("project_key")["name"]),
        "cycle_key": done["cycle_key"], "assignee_employee_key": done["assignee_employee_key"],
        "assignee_team": done["assignee_employee_key"].map(employee_teams(employees, tasks)),
        "priority": done["priority"], "estimate": done["estimate"], "created_at": done["created_at"],
        "started_at": done["started_at"], "completed_at": done["completed_at"],
        "completed_on": as_date(done["completed_at"]), "completed_week": as_date(week_start(done["completed_at"])),
        "lead_time_days": (done["completed_at"] - done["created_at"]) / DAY,
        "cycle_time_days": ((done["completed_at"] - done["started_at"]) / DAY).clip(lower=0),
        "is_late": (due.notna() & (done["completed_at"].dt.floor("D") > due)).astype("boolean"),
    })
    return out.reset_index(drop=True).astype({"lead_time_days": "Float64", "cycle_time_days": "Float64"})


def cycle_delivery(tasks: pd.DataFrame, cycles: pd.DataFrame) -> pd.DataFrame:
    """``marts.cycle_delivery``: one row per Linear cycle — issues planned, completed, completed in the cycle."""
    issues = tasks[tasks["cycle_key"].notna()].merge(cycles[["cycle_key", "ends_at"]], on="cycle_key", how="left")
    in_cycle = (issues["state"] == "done") & (issues["completed_at"] < issues["ends_at"])
    points = issues["estimate"].fillna(0)
    per = pd.DataFrame({
        "cycle_key": issues["cycle_key"], "issues": 1, "issues_completed": (issues["state"] == "done").astype(int),
        "issues_completed_in_cycle": in_cycle.astype(int),
        "issues_canceled": (issues["state"] == "canceled").astype(int),
        "issues_open": issues["state"].isin(OPEN_STATES).astype(int), "points": points,
        "points_completed_in_cycle": points.where(in_cycle, 0),
    }).groupby("cycle_key").sum()
    out = cycles[["cycle_key", "system_id", "team", "number", "name", "starts_at", "ends_at", "is_current"]].merge(
        per.reset_index(), on="cycle_key", how="left")
    counts = ["issues", "issues_completed", "issues_completed_in_cycle", "issues_canceled", "issues_open"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out[["points", "points_completed_in_cycle"]] = out[["points", "points_completed_in_cycle"]].fillna(0.0)
    committed = (out["issues"] - out["issues_canceled"]).where(lambda s: s > 0)
    out["completion_rate"] = (out["issues_completed_in_cycle"] / committed).astype("Float64")
    out["start_week"] = as_date(week_start(out["starts_at"]))
    return out.reset_index(drop=True)


def project_status(tasks: pd.DataFrame, projects: pd.DataFrame, employees: pd.DataFrame,
                   as_of: datetime) -> pd.DataFrame:
    """``marts.project_status``: one row per project, with progress and a deadline-risk flag.

    Risk: a live project (not completed, canceled or archived) with open work is at risk when its due
    date has passed (``past_due``), when nothing closed in the last 28 days (``stalled``), or when its
    open tasks at the last 28 days' closing rate run past the due date (``projected_late``).
    """
    now = _now(as_of)
    today = now.normalize()
    recent = tasks["closed_at"] > now - pd.Timedelta(days=THROUGHPUT_WINDOW_DAYS)
    per = pd.DataFrame({
        "project_key": tasks["project_key"], "tasks_total": 1, "tasks_done": (tasks["state"] == "done").astype(int),
        "tasks_canceled": (tasks["state"] == "canceled").astype(int),
        "tasks_open": tasks["state"].isin(OPEN_STATES).astype(int),
        "tasks_in_progress": (tasks["state"] == "in_progress").astype(int),
        "tasks_overdue": tasks["is_overdue"].fillna(False).astype(int), "closed_last_28d": recent.astype(int),
        "points_open": tasks["estimate"].fillna(0).where(tasks["state"].isin(OPEN_STATES), 0),
    }).groupby("project_key").sum()
    out = projects[["project_key", "system", "system_id", "name", "team", "owner_employee_key", "status",
                    "start_on", "due_on"]].merge(per.reset_index(), on="project_key", how="left")
    counts = [c for c in per.columns if c != "points_open"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["points_open"] = out["points_open"].fillna(0.0)
    out["owner_name"] = out["owner_employee_key"].map(employees.set_index("employee_key")["full_name"])
    scope = (out["tasks_total"] - out["tasks_canceled"]).where(lambda s: s > 0)
    out["progress"] = (out["tasks_done"] / scope).astype("Float64")
    due = pd.to_datetime(out["due_on"], utc=True)
    out["days_to_due"] = ((due - today) / DAY).round().astype("Int64")
    rate = out["closed_last_28d"] / THROUGHPUT_WINDOW_DAYS  # tasks a day
    out["throughput_per_week"] = rate * 7
    days_left = out["tasks_open"] / rate.where(rate > 0)  # NaN when stalled
    projected = today + pd.to_timedelta(days_left.round(), unit="D")
    out["projected_completion_on"] = as_date(projected.where(out["tasks_open"] > 0, today))
    live = ~out["status"].isin(["completed", "canceled", "archived"]) & (out["tasks_open"] > 0)
    past_due = live & due.notna() & (due < today)
    stalled = live & ~past_due & (rate == 0)
    late = live & ~past_due & ~stalled & due.notna() & (projected > due)
    reason = pd.Series(pd.NA, index=out.index, dtype="string")
    reason = reason.mask(late, "projected_late").mask(stalled, "stalled").mask(past_due, "past_due")
    out["deadline_risk"] = reason.notna()
    out["risk_reason"] = reason
    out["as_of_date"] = now.date()
    return out.reset_index(drop=True)


def workload(tasks: pd.DataFrame, employees: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """``marts.workload``: open work per assignee, owning team and system (unassigned work has no assignee)."""
    today = _now(as_of).normalize()
    open_ = tasks[tasks["state"].isin(OPEN_STATES)]
    due = pd.to_datetime(open_["due_on"], utc=True)
    per = pd.DataFrame({
        "assignee_employee_key": open_["assignee_employee_key"], "team": open_["team"].fillna(UNASSIGNED),
        "system": open_["system"], "open_tasks": 1, "todo": (open_["state"] == "todo").astype(int),
        "in_progress": (open_["state"] == "in_progress").astype(int),
        "overdue": open_["is_overdue"].fillna(False).astype(int),
        "due_next_7d": (due.notna() & (due >= today) & (due < today + pd.Timedelta(days=7))).astype(int),
        "open_points": open_["estimate"].fillna(0.0), "oldest_open_created_at": open_["created_at"],
    })
    out = per.groupby(["assignee_employee_key", "team", "system"], dropna=False).agg(
        open_tasks=("open_tasks", "sum"), todo=("todo", "sum"), in_progress=("in_progress", "sum"),
        overdue=("overdue", "sum"), due_next_7d=("due_next_7d", "sum"), open_points=("open_points", "sum"),
        oldest_open_created_at=("oldest_open_created_at", "min")).reset_index()
    staff = employees.set_index("employee_key")
    out.insert(1, "assignee_name", out["assignee_employee_key"].map(staff["full_name"]))
    out.insert(2, "assignee_team", out["assignee_employee_key"].map(employee_teams(employees, tasks)))
    out["oldest_open_age_days"] = ((_now(as_of) - out["oldest_open_created_at"]) / DAY).astype("Float64")
    out["as_of_date"] = today.date()
    return out.astype({"oldest_open_created_at": TS})


def work_marts(ctx: TransformContext) -> None:
    """Every work-and-knowledge mart, from the core tables :func:`sophia_lib.transforms.work.core_work` wrote."""
    tasks, projects = ctx.table("core.tasks"), ctx.table("core.projects")
    messages, employees = ctx.table("core.messages"), ctx.table("core.employees")
    ctx.write("marts", "team_productivity", team_productivity(tasks, messages, employees, ctx.as_of))
    ctx.write("marts", "delivery_cycle_times", delivery_cycle_times(tasks, projects, employees))
    ctx.write("marts", "cycle_delivery", cycle_delivery(tasks, ctx.table("core.cycles")))
    ctx.write("marts", "project_status", project_status(tasks, projects, employees, ctx.as_of))
    ctx.write("marts", "workload", workload(tasks, employees, ctx.as_of))
    teams = employee_teams(employees, tasks)
    for name, frame in build_knowledge_marts(ctx.table("core.pages"), messages, ctx.table("core.message_references"),
                                             employees, teams, ctx.as_of).items():
        ctx.write("marts", name, frame)
