"""Core work management: Asana and Linear projects, Linear cycles, and Asana tasks with Linear issues
in one ``core.tasks`` table, states and priorities normalised across the two vendors.

The step also builds the collaboration tables (Slack, Notion, Looker; see
:mod:`sophia_lib.transforms.collaboration`), so the whole "work and knowledge" core is one entry in
``STEPS``. People are resolved through ``core.employee_xref`` (written by the entities step); every row
keeps its vendor id (``system`` + ``system_id``).

Vendor differences worth knowing:

* Asana has no "started" or "canceled": a task is in progress when it sits in a section named like
  "In progress"/"Doing", it started on ``start_on`` (a date), and a canceled task is simply completed,
  so it counts as ``done``.
* Linear's workflow state type gives the state (backlog/unstarted/triage → todo, started →
  in_progress, completed → done, canceled → canceled); cancellations keep ``canceled_at``.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sophia_lib.transforms.collaboration import build_collaboration
from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.work_common import (
    TS,
    concat_rows,
    employee_keys,
    first_json_string,
    source_key,
    typed,
    utc_day,
)

STATES = ("todo", "in_progress", "done", "canceled")
OPEN_STATES = ("todo", "in_progress")
PRIORITIES = ("urgent", "high", "medium", "low", "none")
LINEAR_STATE = {"backlog": "todo", "unstarted": "todo", "triage": "todo", "started": "in_progress",
                "completed": "done", "canceled": "canceled"}
LINEAR_PRIORITY = {0: "none", 1: "urgent", 2: "high", 3: "medium", 4: "low"}
PRIORITY_ALIASES = {"urgent": "urgent", "p0": "urgent", "critical": "urgent", "highest": "urgent",
                    "high": "high", "p1": "high", "medium": "medium", "normal": "medium", "p2": "medium",
                    "low": "low", "p3": "low", "lowest": "low", "p4": "low"}
LINEAR_PROJECT_STATUS = {"backlog": "planned", "planned": "planned", "started": "active", "paused": "paused",
                         "completed": "completed", "canceled": "canceled"}
ASANA_IN_PROGRESS = r"(?i)progress|doing|started|review"

TASK_COLUMNS = {
    "task_key": "string", "system": "string", "system_id": "string", "identifier": "string",
    "project_key": "string", "project_id": "string", "cycle_key": "string", "title": "string", "team": "string",
    "assignee_employee_key": "string", "assignee_id": "string", "state": "string", "vendor_state": "string",
    "priority": "string", "estimate": "Float64", "created_at": TS, "started_at": TS, "completed_at": TS,
    "canceled_at": TS, "closed_at": TS, "due_on": "object", "is_overdue": "boolean", "updated_at": TS,
    "url": "string",
}
PROJECT_COLUMNS = {
    "project_key": "string", "system": "string", "system_id": "string", "name": "string", "team": "string",
    "owner_employee_key": "string", "owner_id": "string", "status": "string", "vendor_status": "string",
    "start_on": "object", "due_on": "object", "completed_at": TS, "archived": "boolean",
    "vendor_progress": "Float64", "created_at": TS, "updated_at": TS, "url": "string",
}
CYCLE_COLUMNS = {
    "cycle_key": "string", "system": "string", "system_id": "string", "team": "string", "team_id": "string",
    "number": "Int64", "name": "string", "starts_at": TS, "ends_at": TS, "completed_at": TS,
    "vendor_progress": "Float64", "is_current": "boolean",
}


def _priority(text: pd.Series) -> pd.Series:
    low = text.astype("string").str.strip().str.lower()
    return low.map(PRIORITY_ALIASES).fillna("none").astype("string")


def _overdue(frame: pd.DataFrame, as_of: datetime) -> pd.Series:
    due = pd.to_datetime(frame["due_on"])
    today = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None).normalize()
    return (frame["state"].isin(OPEN_STATES) & due.notna() & (due < today)).astype("boolean")


def linear_team_names(teams: pd.DataFrame) -> pd.Series:
    return teams.drop_duplicates("id").set_index(teams["id"].drop_duplicates().astype("string"))["name"]


def build_projects(asana: pd.DataFrame, linear: pd.DataFrame, linear_teams: pd.DataFrame,
                   xref: pd.DataFrame) -> pd.DataFrame:
    a_status = pd.Series("active", index=asana.index, dtype="string")
    a_status = a_status.mask(asana["completed"].fillna(False).astype(bool), "completed")
    a_status = a_status.mask(asana["archived"].fillna(False).astype(bool), "archived")
    a = pd.DataFrame({
        "system": "asana", "system_id": asana["gid"], "name": asana["name"], "team": asana["team_name"],
        "owner_id": asana["owner_gid"], "owner_employee_key": employee_keys(xref, "asana", asana["owner_gid"]),
        "status": a_status, "vendor_status": a_status, "start_on": asana["start_on"], "due_on": asana["due_on"],
        "completed_at": asana["completed_at"], "archived": asana["archived"], "vendor_progress": pd.NA,
        "created_at": asana["created_at"], "updated_at": asana["modified_at"], "url": asana["permalink_url"],
    })
    vendor = linear["state"].astype("string").str.lower()
    team_id = first_json_string(linear["team_ids"])
    l_ = pd.DataFrame({
        "system": "linear", "system_id": linear["id"], "name": linear["name"],
        "team": team_id.map(linear_team_names(linear_teams)), "owner_id": linear["lead_id"],
        "owner_employee_key": employee_keys(xref, "linear", linear["lead_id"]),
        "status": vendor.map(LINEAR_PROJECT_STATUS).fillna("active"), "vendor_status": linear["status_name"],
        "start_on": linear["start_date"], "due_on": linear["target_date"], "completed_at": linear["completed_at"],
        "archived": linear["archived_at"].notna(), "vendor_progress": linear["progress"],
        "created_at": linear["created_at"], "updated_at": linear["updated_at"], "url": linear["url"],
    })
    both = concat_rows([a, l_])
    both["system_id"] = both["system_id"].astype("string")
    both["project_key"] = both["system"].astype("string") + ":" + both["system_id"]
    return typed(both, PROJECT_COLUMNS)


def build_cycles(cycles: pd.DataFrame, linear_teams: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    now = pd.Timestamp(as_of).tz_convert("UTC")
    starts, ends = pd.to_datetime(cycles["starts_at"], utc=True), pd.to_datetime(cycles["ends_at"], utc=True)
    frame = pd.DataFrame({
        "cycle_key": source_key("linear", cycles["id"]), "system": "linear", "system_id": cycles["id"],
        "team": cycles["team_id"].astype("string").map(linear_team_names(linear_teams)), "team_id": cycles["team_id"],
        "number": cycles["number"], "name": cycles["name"], "starts_at": starts, "ends_at": ends,
        "completed_at": cycles["completed_at"], "vendor_progress": cycles["progress"],
        "is_current": (starts <= now) & (ends > now),
    })
    return typed(frame, CYCLE_COLUMNS)


def asana_tasks(tasks: pd.DataFrame, projects: pd.DataFrame, xref: pd.DataFrame) -> pd.DataFrame:
    completed = tasks["completed"].fillna(False).astype(bool)
    section = tasks["section_name"].astype("string")
    in_progress = section.str.contains(ASANA_IN_PROGRESS, regex=True).fillna(False).astype(bool)
    state = pd.Series("todo", index=tasks.index, dtype="string").mask(in_progress, "in_progress")
    state = state.mask(completed, "done")
    project_key = source_key("asana", tasks["project_gid"])
    team = project_key.map(projects.set_index("project_key")["team"])
    started = utc_day(tasks["start_on"])
    completed_at = pd.to_datetime(tasks["completed_at"], utc=True).where(completed)
    return pd.DataFrame({
        "system": "asana", "system_id": tasks["gid"], "identifier": pd.NA, "project_key": project_key,
        "project_id": tasks["project_gid"], "cycle_key": pd.NA, "title": tasks["name"], "team": team,
        "assignee_id": tasks["assignee_gid"],
        "assignee_employee_key": employee_keys(xref, "asana", tasks["assignee_gid"]), "state": state,
        "vendor_state": section.where(~completed, "Completed"), "priority": _priority(tasks["priority"]),
        "estimate": tasks["estimate"], "created_at": tasks["created_at"],
        "started_at": started.where(state != "todo"), "completed_at": completed_at, "canceled_at": pd.NaT,
        "closed_at": completed_at, "due_on": tasks["due_on"], "updated_at": tasks["modified_at"],
        "url": tasks["permalink_url"],
    })


def linear_issues(issues: pd.DataFrame, linear_teams: pd.DataFrame, xref: pd.DataFrame) -> pd.DataFrame:
    state = issues["state_type"].astype("string").str.lower().map(LINEAR_STATE).fillna("todo").astype("string")
    completed_at = pd.to_datetime(issues["completed_at"], utc=True).where(state == "done")
    canceled_at = pd.to_datetime(issues["canceled_at"], utc=True).where(state == "canceled")
    priority = pd.to_numeric(issues["priority"], errors="coerce").map(LINEAR_PRIORITY)
    return pd.DataFrame({
        "system": "linear", "system_id": issues["id"], "identifier": issues["identifier"],
        "project_key": source_key("linear", issues["project_id"]), "project_id": issues["project_id"],
        "cycle_key": source_key("linear", issues["cycle_id"]), "title": issues["title"],
        "team": issues["team_id"].astype("string").map(linear_team_names(linear_teams)),
        "assignee_id": issues["assignee_id"],
        "assignee_employee_key": employee_keys(xref, "linear", issues["assignee_id"]),
        "state": state, "vendor_state": issues["state_name"], "priority": priority.fillna("none"),
        "estimate": issues["estimate"], "created_at": issues["created_at"], "started_at": issues["started_at"],
        "completed_at": completed_at, "canceled_at": canceled_at, "closed_at": completed_at.fillna(canceled_at),
        "due_on": issues["due_date"], "updated_at": issues["updated_at"], "url": issues["url"],
    })


def build_tasks(asana: pd.DataFrame, linear: pd.DataFrame, projects: pd.DataFrame, linear_teams: pd.DataFrame,
                xref: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    frame = concat_rows([asana_tasks(asana, projects, xref), linear_issues(linear, linear_teams, xref)])
    frame["system_id"] = frame["system_id"].astype("string")
    frame["task_key"] = frame["system"].astype("string") + ":" + frame["system_id"]
    frame["is_overdue"] = _overdue(frame, as_of) if len(frame) else pd.Series(dtype="boolean")
    return typed(frame, TASK_COLUMNS)


def build_work(ctx: TransformContext) -> None:
    """``core.projects``, ``core.cycles``, ``core.tasks`` from Asana and Linear."""
    xref = ctx.table("core.employee_xref")
    teams = ctx.raw("linear", "teams", ["id", "name", "key"])
    projects = build_projects(
        ctx.raw("asana", "projects", ["gid", "name", "team_name", "owner_gid", "archived", "completed",
                                      "completed_at", "created_at", "modified_at", "start_on", "due_on",
                                      "permalink_url"]),
        ctx.raw("linear", "projects", ["id", "name", "state", "status_name", "progress", "start_date",
                                       "target_date", "completed_at", "archived_at", "created_at", "updated_at",
                                       "url", "lead_id", "team_ids"]),
        teams, xref)
    cycles = build_cycles(ctx.raw("linear", "cycles", ["id", "number", "name", "starts_at", "ends_at",
                                                        "completed_at", "progress", "team_id"]), teams, ctx.as_of)
    tasks = build_tasks(
        ctx.raw("asana", "tasks", ["gid", "name", "project_gid", "section_name", "assignee_gid", "completed",
                                   "completed_at", "created_at", "modified_at", "start_on", "due_on", "priority",
                                   "estimate", "permalink_url"]),
        ctx.raw("linear", "issues", ["id", "identifier", "title", "priority", "estimate", "created_at", "updated_at",
                                     "started_at", "completed_at", "canceled_at", "due_date", "url", "state_name",
                                     "state_type", "team_id", "assignee_id", "project_id", "cycle_id"]),
        projects, teams, xref, ctx.as_of)
    ctx.write("core", "projects", projects)
    ctx.write("core", "cycles", cycles)
    ctx.write("core", "tasks", tasks)


def core_work(ctx: TransformContext) -> None:
    """The whole work-and-knowledge core: tasks and projects here, then Slack, Notion and Looker."""
    build_work(ctx)
    build_collaboration(ctx)
