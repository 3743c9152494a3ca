"""Linear, simulated: ``POST /graphql`` validated against Linear's own schema, plus ``POST /oauth/token``.

Rendered from the company: ``tasks``/``projects`` with ``system == "linear"``, ``cycles``, and the
employees that appear in Linear (``presence``). Teams come from the cycles' and projects' teams, each
with Linear's default workflow (Backlog, Todo, In Progress, In Review, Done, Canceled).

Wire choices (see VENDOR-APIS.md §8; *verify* items there):

* Auth: ``Authorization: <personal API key>`` (no scheme) or ``Authorization: Bearer <OAuth token>``.
  A failure answers HTTP 400 with ``AUTHENTICATION_ERROR`` (as reported in linear/linear#471).
* Throttle: HTTP 400 with ``extensions.code: "RATELIMITED"``, ``Retry-After`` and the
  ``X-RateLimit-Requests-*``/``X-RateLimit-Complexity-*`` headers (reset as epoch milliseconds).
  Budgets are reported on every answer but not enforced; throttling comes from injected faults.
* Connections are returned oldest first by ``orderBy`` (default ``createdAt``); cursors are opaque.
* Deleted issues, projects and cycles are *archived*: ``archivedAt`` set, only listed with
  ``includeArchived: true``; deactivated users only with ``includeDisabled: true``.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from graphql import (
    GraphQLError,
    GraphQLNonNull,
    GraphQLResolveInfo,
    GraphQLSyntaxError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore
from sophia_lib.sandbox.simulator.base import Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register
from sophia_lib.sandbox.vendors._linear_graphql import (
    Entities,
    complexity,
    connection,
    default_value,
    linear_error,
    linear_schema,
    ns,
    stable_uuid,
)

ORG_NAME, ORG_URL_KEY = "Halcyon Data", "halcyon"
TEAM_KEYS = {"Platform": "PLAT", "Data": "DATA", "Apps": "APP", "Infra": "INFRA"}
# name, type, color, position — Linear's default workflow for a new team
WORKFLOW = [("Backlog", "backlog", "#bec2c8", 0.0), ("Todo", "unstarted", "#e2e2e2", 1.0),
            ("In Progress", "started", "#f2c94c", 2.0), ("In Review", "started", "#0f783c", 3.0),
            ("Done", "completed", "#5e6ad2", 4.0), ("Canceled", "canceled", "#95a2b3", 5.0)]
STATE_OF = {"todo": "Todo", "in_progress": "In Progress", "done": "Done", "canceled": "Canceled",
            "cancelled": "Canceled", "in_review": "In Review", "backlog": "Backlog"}
PRIORITY_OF = {"none": 0, "no priority": 0, "urgent": 1, "high": 2, "medium": 3, "normal": 3, "low": 4}
PRIORITY_LABEL = {0: "No priority", 1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}
PROJECT_STATUS = {  # canonical status → (Linear status type, status name, legacy `state`)
    "planned": ("planned", "Planned", "planned"), "backlog": ("backlog", "Backlog", "backlog"),
    "in_progress": ("started", "In Progress", "started"), "active": ("started", "In Progress", "started"),
    "on_track": ("started", "In Progress", "started"), "at_risk": ("started", "In Progress", "started"),
    "off_track": ("started", "In Progress", "started"), "started": ("started", "In Progress", "started"),
    "paused": ("paused", "Paused", "paused"), "completed": ("completed", "Completed", "completed"),
    "done": ("completed", "Completed", "completed"), "canceled": ("canceled", "Canceled", "canceled"),
    "cancelled": ("canceled", "Canceled", "canceled"),
}
AUTH_MESSAGE = "Authentication required, not authenticated"


def _iso(values: Any) -> list[str | None]:
    """Timestamps → Linear's ``2024-01-15T10:22:33.456Z`` (None for NaT), vectorised."""
    series = pd.to_datetime(pd.Series(values), utc=True)
    text = series.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.astype(object).where(series.notna(), None).tolist()


def _date(values: Any) -> list[str | None]:
    series = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    return series.dt.strftime("%Y-%m-%d").astype(object).where(series.notna(), None).tolist()


def _clean(values: Any) -> list[Any]:
    """A column as JSON-safe Python values (NaN/NA → None)."""
    series = pd.Series(values)
    return series.astype(object).where(series.notna(), None).tolist()


def _records(columns: dict[str, list[Any]], n: int) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)] if n else []


@dataclass
class LinearData:
    """One rendered snapshot; a request keeps using the snapshot it started with."""

    issues: Entities
    teams: Entities
    users: Entities
    cycles: Entities
    projects: Entities
    states: Entities
    organization: dict[str, Any]
    viewer_id: str | None
    identifiers: dict[str, int]
    now: pd.Timestamp


@dataclass
class Ctx:
    data: LinearData
    request: Request
    vendor: Linear

    def conn(self, ents: Entities, args: dict[str, Any], scope: dict[str, Any] | None = None,
             include_hidden: bool = False) -> dict[str, Any]:
        return connection(ents, args, self.data.now, lambda items, start, size: self.vendor.page(
            self.request, items, start, size), scope, include_hidden)


def _meta(source: Any, key: str) -> Any:
    return source.get("__meta", {}).get(key) if isinstance(source, dict) else None


def _entity(kind: str, ents: Entities, record_id: Any) -> dict[str, Any]:
    record = ents.get(record_id)
    if record is None:
        raise linear_error(f"Entity not found: {kind}", user_message=f"Could not find referenced {kind}.")
    return record


def _links() -> dict[tuple[str, str], Any]:
    """Resolvers of the modelled fields: (parent type, field) → fn(ctx, source, args)."""
    def root_list(attr: str) -> Any:
        return lambda c, s, a: c.conn(getattr(c.data, attr), a, include_hidden=bool(a.get("includeDisabled")))

    def root_one(attr: str, kind: str) -> Any:
        return lambda c, s, a: _entity(kind, getattr(c.data, attr), a.get("id"))

    def one(attr: str, key: str) -> Any:
        return lambda c, s, a: getattr(c.data, attr).get(_meta(s, key))

    def scoped(attr: str, group: str, key: str = "id") -> Any:
        return lambda c, s, a: c.conn(getattr(c.data, attr), a, {group: _meta(s, key) if key != "id" else
                                                                 s.get("id")}, bool(a.get("includeDisabled")))

    def issue(c: Ctx, s: Any, a: dict[str, Any]) -> dict[str, Any]:
        key = a.get("id")
        i = c.data.identifiers.get(key.upper()) if isinstance(key, str) else None
        return c.data.issues.records[i] if i is not None else _entity("Issue", c.data.issues, key)

    return {
        ("Query", "issues"): root_list("issues"), ("Query", "issue"): issue,
        ("Query", "teams"): root_list("teams"), ("Query", "team"): root_one("teams", "Team"),
        ("Query", "users"): root_list("users"), ("Query", "user"): root_one("users", "User"),
        ("Query", "cycles"): root_list("cycles"), ("Query", "cycle"): root_one("cycles", "Cycle"),
        ("Query", "projects"): root_list("projects"), ("Query", "project"): root_one("projects", "Project"),
        ("Query", "workflowStates"): root_list("states"),
        ("Query", "workflowState"): root_one("states", "WorkflowState"),
        ("Query", "viewer"): lambda c, s, a: _entity("User", c.data.users, c.data.viewer_id),
        ("Query", "organization"): lambda c, s, a: c.data.organization,
        ("Issue", "team"): one("teams", "team"), ("Issue", "state"): one("states", "state"),
        ("Issue", "assignee"): one("users", "assignee"), ("Issue", "project"): one("projects", "project"),
        ("Issue", "cycle"): one("cycles", "cycle"),
        ("Team", "issues"): scoped("issues", "team"), ("Team", "cycles"): scoped("cycles", "team"),
        ("Team", "projects"): scoped("projects", "team"), ("Team", "states"): scoped("states", "team"),
        ("Team", "members"): scoped("users", "team"),
        ("Team", "organization"): lambda c, s, a: c.data.organization,
        ("Project", "issues"): scoped("issues", "project"), ("Project", "lead"): one("users", "lead"),
        ("Project", "teams"): lambda c, s, a: c.conn(c.data.teams, a, {"id": _meta(s, "team")}),
        ("Cycle", "issues"): scoped("issues", "cycle"), ("Cycle", "team"): one("teams", "team"),
        ("User", "assignedIssues"): scoped("issues", "assignee"),
        ("User", "teams"): lambda c, s, a: c.conn(c.data.teams, a, {"id": _meta(s, "team")}),
        ("User", "organization"): lambda c, s, a: c.data.organization,
        ("User", "isMe"): lambda c, s, a: s.get("id") == c.data.viewer_id,
        ("WorkflowState", "team"): one("teams", "team"), ("WorkflowState", "issues"): scoped("issues", "state"),
        ("Organization", "teams"): root_list("teams"), ("Organization", "users"): root_list("users"),
    }


LINKS = _links()


def resolve_field(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """The one field resolver: modelled link, else the record's value, else a typed default."""
    ctx: Ctx = info.context
    link = LINKS.get((info.parent_type.name, info.field_name))
    if link is not None:
        value = link(ctx, source, args)
        if value is not None or not isinstance(info.return_type, GraphQLNonNull):
            return value
    elif isinstance(source, dict) and info.field_name in source:
        return source[info.field_name]
    elif info.parent_type.name == "Query" and "id" in info.parent_type.fields[info.field_name].args:
        raise linear_error(f"Entity not found: {info.return_type}",
                           user_message="Could not find referenced entity.")
    return default_value(info.return_type, source, info, ctx.data.organization["createdAt"])


class _Budget:
    """Leaky buckets for the rate-limit headers (requests and complexity per hour), per credential."""

    def __init__(self, requests: int, points: int) -> None:
        self.limits = {"Requests": requests, "Complexity": points}
        self._state: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def spend(self, who: str, points: int) -> dict[str, str]:
        now = time.time()
        with self._lock:
            state = self._state.setdefault(who, {"Requests": self.limits["Requests"],
                                                 "Complexity": self.limits["Complexity"], "at": now})
            headers = {"X-Complexity": str(points)}
            for name, cost in (("Requests", 1), ("Complexity", points)):
                limit = self.limits[name]
                level = min(limit, state[name] + (now - state["at"]) * limit / 3600.0)
                state[name] = max(0.0, level - cost)
                reset_ms = int((now + (limit - state[name]) * 3600.0 / limit) * 1000)
                headers |= {f"X-RateLimit-{name}-Limit": str(limit),
                            f"X-RateLimit-{name}-Remaining": str(int(state[name])),
                            f"X-RateLimit-{name}-Reset": str(reset_ms)}
            state["at"] = now
        return headers


@register
class Linear(SimulatedVendor):
    name = "linear"
    API_KEY = "lin_api_sandboxHalcyon0000000000000000000000000"
    CLIENT_ID = "linear-sandbox-client"
    CLIENT_SECRET = "linear-sandbox-secret"
    REFRESH_TOKEN = "lin_refresh_sandbox_halcyon"
    AUTH_CODE = "linear-sandbox-code"
    AUTH_STATUS = 400       # HTTP status of AUTHENTICATION_ERROR (linear/linear#471)
    RATELIMIT_STATUS = 400  # HTTP status of RATELIMITED (VENDOR-APIS.md: 400 vs 429 to verify)
    data: LinearData

    def setup_credentials(self) -> None:
        self.tokens = TokenStore("lin_oauth", access_ttl_s=86399.0, rotate_refresh=True)
        self.tokens.add_static(self.API_KEY, "personal-api-key")
        self.tokens.add_refresh_token(self.REFRESH_TOKEN, self.CLIENT_ID, ("read",))
        self.budget = _Budget(5000, 250_000)
        linear_schema()

    def credentials(self) -> dict[str, str]:
        return {"api_key": self.API_KEY, "client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET,
                "refresh_token": self.REFRESH_TOKEN}

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [("/graphql", self.graphql, ["POST"]), ("/oauth/token", self.oauth_token, ["POST"])]

    # --- answers in Linear's format --------------------------------------------------------------------
    @staticmethod
    def _errors(message: str, kind: str, code: str, status: int, headers: dict[str, str] | None = None,
                user_message: str | None = None, with_data: bool = True) -> JSONResponse:
        body: dict[str, Any] = {"errors": [{"message": message, "extensions": {
            "type": kind, "code": code, "userError": kind not in ("internal error", "ratelimited"),
            "userPresentableMessage": user_message or message}}]}
        if with_data:
            body["data"] = None
        return JSONResponse(body, status_code=status, headers=headers)

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        retry = int(fault.params.get("retry_after", 60))
        reset = str(int((time.time() + retry) * 1000))
        headers = {"Retry-After": str(retry), "X-RateLimit-Requests-Limit": "5000",
                   "X-RateLimit-Requests-Remaining": "0", "X-RateLimit-Requests-Reset": reset,
                   "X-RateLimit-Complexity-Limit": "250000", "X-RateLimit-Complexity-Remaining": "0",
                   "X-RateLimit-Complexity-Reset": reset}
        return self._errors("Rate limit exceeded", "ratelimited", "RATELIMITED", self.RATELIMIT_STATUS, headers,
                            "You have exceeded the rate limit. Please wait before making more requests.")

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return self._errors(message, "internal error", "INTERNAL_SERVER_ERROR", status,
                            user_message="An unexpected error happened. Please try again later.")

    def expired_token_response(self, request: Request) -> Response:
        return self._errors(AUTH_MESSAGE, "authentication error", "AUTHENTICATION_ERROR", self.AUTH_STATUS,
                            user_message="You need to authenticate to access this operation.")

    def error_response_for_body(self, exc: Exception) -> Response:
        return self._errors(f"Invalid JSON body: {exc}", "invalid input", "BAD_USER_INPUT", 400, with_data=False)

    # --- rendering -------------------------------------------------------------------------------------
    def render(self) -> None:
        self.data = self._render()

    def _render(self) -> LinearData:  # noqa: PLR0915 - one pass over the company, kept together
        c, now = self.company, self.company.now
        employees = c["employees"].set_index("employee_id", drop=False)
        tasks = c["tasks"][c["tasks"]["system"] == "linear"].copy()
        projects = c["projects"][c["projects"]["system"] == "linear"].copy()
        cycles = c["cycles"].copy()

        # users: employees present in Linear (first non-duplicate appearance)
        pres = c.presence_of("employee", "linear").sort_values(["is_duplicate", "system_id"])
        pres = pres.drop_duplicates("entity_id")
        emp = employees.reindex(pres["entity_id"].to_numpy())
        first = emp["first_name"].fillna("").to_numpy()
        full = pd.Series(emp["first_name"].fillna("").to_numpy() + " " + emp["last_name"].fillna("").to_numpy())
        name = pd.Series(pres["name"].to_numpy()).where(pres["name"].notna().to_numpy(), full)
        email = pd.Series(pres["email"].to_numpy()).where(pres["email"].notna().to_numpy(),
                                                          emp["email"].to_numpy())
        user_of = dict(zip(pres["entity_id"], pres["system_id"], strict=True))
        deleted = pd.to_datetime(emp["deleted_at"], utc=True).to_numpy()
        active = emp["is_active"].fillna(False).astype(bool).to_numpy() & pd.isna(deleted)
        u_created = pd.to_datetime(emp["created_at"], utc=True).to_numpy()
        u_updated = np.maximum(pd.to_datetime(emp["updated_at"], utc=True).to_numpy(),
                               pd.to_datetime(pres["updated_at"], utc=True).to_numpy())

        # teams: from cycles and Linear projects (fallback: engineering teams of Linear users)
        team_names = sorted(set(cycles["team"].dropna()) | set(projects["team"].dropna()))
        if not team_names:
            team_names = sorted(set(emp.loc[emp["department"] == "Engineering", "team"].dropna())) or ["Engineering"]
        team_id = {t: stable_uuid(ORG_URL_KEY, "team", t) for t in team_names}
        team_key = {t: TEAM_KEYS.get(t) or "".join(ch for ch in t.upper() if ch.isalnum())[:4] or "TEAM"
                    for t in team_names}

        # issues: team via cycle, else project, else assignee's team, else the first team
        cyc_team = dict(zip(cycles["cycle_id"], cycles["team"], strict=True))
        cyc_sid = dict(zip(cycles["cycle_id"], cycles["system_id"], strict=True))
        proj_team = dict(zip(projects["project_id"], projects["team"], strict=True))
        proj_sid = dict(zip(projects["project_id"], projects["system_id"], strict=True))
        emp_team = employees["team"].to_dict()
        team = tasks["team"].where(tasks["team"].isin(team_names)) if "team" in tasks else \
            pd.Series(np.nan, index=tasks.index, dtype=object)
        team = team.fillna(tasks["cycle_id"].map(cyc_team))
        team = team.fillna(tasks["project_id"].map(proj_team))
        team = team.fillna(tasks["assignee_id"].map(emp_team).where(lambda s: s.isin(team_names)))
        tasks["team"] = team.where(team.isin(team_names), team_names[0])
        tasks = tasks.sort_values(["created_at", "task_id"])
        keys = tasks["team"].map(team_key) + "-" + (tasks.groupby("team").cumcount() + 1).astype(str)
        if "identifier" in tasks:  # the generator's own identifiers win
            keys = tasks["identifier"].astype(object).where(tasks["identifier"].notna(), keys).astype(str)
        tasks["number"] = pd.to_numeric(keys.str.rsplit("-", n=1).str[-1], errors="coerce").fillna(0)
        state = tasks["state"].astype(str).str.lower().map(STATE_OF).fillna("Todo")
        state = state.where(~((state == "Todo") & tasks["cycle_id"].isna()), "Backlog")
        priority = tasks["priority"].map(lambda p: PRIORITY_OF.get(str(p).lower(), p) if isinstance(p, str) else p)
        priority = pd.to_numeric(priority, errors="coerce").fillna(0).clip(0, 4).astype(int)
        canceled = state == "Canceled"
        completed_at = pd.to_datetime(tasks["completed_at"], utc=True)
        canceled_at = completed_at.where(canceled).fillna(pd.to_datetime(tasks["updated_at"], utc=True).where(canceled))
        completed_at = completed_at.where(state == "Done")
        t_ids = tasks["system_id"].astype(str).tolist()
        t_team_ids = tasks["team"].map(team_id).tolist()
        t_state_ids = [stable_uuid(tid, "state", s) for tid, s in zip(t_team_ids, state, strict=True)]
        t_assignee = tasks["assignee_id"].map(user_of).astype(object).where(lambda s: s.notna(), None).tolist()
        t_project = tasks["project_id"].map(proj_sid).astype(object).where(lambda s: s.notna(), None).tolist()
        t_cycle = tasks["cycle_id"].map(cyc_sid).astype(object).where(lambda s: s.notna(), None).tolist()
        titles = tasks["title"].fillna("").astype(str)
        slug = titles.str.lower().str.replace(r"[^a-z0-9]+", "-", regex=True).str.strip("-").str[:40]
        n = len(tasks)
        issue_cols = {
            "id": t_ids, "title": titles.tolist(), "identifier": keys.tolist(),
            "number": tasks["number"].astype(float).tolist(), "description": [None] * n,
            "priority": priority.astype(float).tolist(), "priorityLabel": priority.map(PRIORITY_LABEL).tolist(),
            "estimate": _clean(pd.to_numeric(tasks["estimate"], errors="coerce")),
            "createdAt": _iso(tasks["created_at"]), "updatedAt": _iso(tasks["updated_at"]),
            "startedAt": _iso(tasks["started_at"]), "completedAt": _iso(completed_at),
            "canceledAt": _iso(canceled_at), "archivedAt": _iso(tasks["deleted_at"]),
            "trashed": tasks["deleted_at"].notna().tolist(), "dueDate": _date(tasks["due_on"]),
            "url": (f"https://linear.app/{ORG_URL_KEY}/issue/" + keys.str.cat(slug, sep="/")).tolist(),
            "branchName": (keys.str.lower() + "-" + slug).tolist(),
            "sortOrder": (-tasks["number"].astype(float)).tolist(),
            "boardOrder": [0.0] * n, "prioritySortOrder": priority.astype(float).tolist(),
            "customerTicketCount": [0] * n,
        }
        issue_records = _records(issue_cols, n)
        for rec, tid, sid, aid, pid, cid in zip(issue_records, t_team_ids, t_state_ids, t_assignee, t_project,
                                                t_cycle, strict=True):
            rec["labelIds"], rec["previousIdentifiers"] = [], []
            rec["__meta"] = {"team": tid, "state": sid, "assignee": aid, "project": pid, "cycle": cid}
        issues = Entities("Issue", issue_records, {
            "createdAt": ns(tasks["created_at"]), "updatedAt": ns(tasks["updated_at"]),
            "archivedAt": ns(tasks["deleted_at"]), "startedAt": ns(tasks["started_at"]),
            "completedAt": ns(completed_at), "canceledAt": ns(canceled_at)},
            tasks["deleted_at"].notna().to_numpy(),
            {"team": np.array(t_team_ids, dtype=object), "state": np.array(t_state_ids, dtype=object),
             "assignee": np.array(t_assignee, dtype=object), "project": np.array(t_project, dtype=object),
             "cycle": np.array(t_cycle, dtype=object)})

        # teams and their workflow states
        live_tasks = tasks[tasks["deleted_at"].isna()]
        stamps = pd.concat([cycles[["team", "created_at", "updated_at"]], projects[["team", "created_at",
                            "updated_at"]], tasks[["team", "created_at"]]])
        t_created = pd.to_datetime(stamps.groupby("team")["created_at"].min(), utc=True)
        t_updated = pd.to_datetime(stamps.groupby("team")["updated_at"].max(), utc=True)
        origin = pd.to_datetime(pd.concat([t_created, pd.Series([now])]), utc=True).min()
        t_created = t_created.reindex(team_names).fillna(origin)
        t_updated = t_updated.reindex(team_names).fillna(t_created).combine(t_created, max)
        counts = live_tasks.groupby("team").size().reindex(team_names).fillna(0).astype(int)
        k = len(team_names)
        team_records = _records({
            "id": [team_id[t] for t in team_names], "name": team_names, "key": [team_key[t] for t in team_names],
            "displayName": team_names, "description": [None] * k, "createdAt": _iso(t_created),
            "updatedAt": _iso(t_updated), "archivedAt": [None] * k, "private": [False] * k,
            "timezone": ["America/Los_Angeles"] * k, "cyclesEnabled": [True] * k, "cycleDuration": [2.0] * k,
            "issueCount": counts.tolist(), "color": ["#5e6ad2"] * k, "icon": [None] * k}, k)
        teams = Entities("Team", team_records, {"createdAt": ns(t_created), "updatedAt": ns(t_updated)},
                         np.zeros(k, dtype=bool))
        s_rows = [(t, s) for t in team_names for s in WORKFLOW]
        s_ids = [stable_uuid(team_id[t], "state", s[0]) for t, s in s_rows]
        s_created = pd.Series([t_created[t] for t, _ in s_rows], dtype="datetime64[ns, UTC]")
        state_records = _records({
            "id": s_ids, "name": [s[0] for _, s in s_rows], "type": [s[1] for _, s in s_rows],
            "color": [s[2] for _, s in s_rows], "position": [s[3] for _, s in s_rows],
            "description": [None] * len(s_rows), "createdAt": _iso(s_created), "updatedAt": _iso(s_created),
            "archivedAt": [None] * len(s_rows)}, len(s_rows))
        for rec, (t, _) in zip(state_records, s_rows, strict=True):
            rec["__meta"] = {"team": team_id[t]}
        states = Entities("WorkflowState", state_records, {"createdAt": ns(s_created), "updatedAt": ns(s_created)},
                          np.zeros(len(s_rows), dtype=bool),
                          {"team": np.array([team_id[t] for t, _ in s_rows], dtype=object)})

        # users
        m = len(pres)
        u_team = [team_id.get(t) for t in emp["team"].tolist()]
        user_records = _records({
            "id": pres["system_id"].astype(str).tolist(), "name": name.tolist(),
            "displayName": pd.Series(first).str.lower().tolist(), "email": email.tolist(),
            "active": active.tolist(), "admin": [False] * m, "guest": [False] * m,
            "createdAt": _iso(u_created), "updatedAt": _iso(u_updated), "archivedAt": [None] * m,
            "avatarUrl": [None] * m, "timezone": ["America/Los_Angeles"] * m,
            "initials": (pd.Series(first).str[:1] + emp["last_name"].fillna("").str[:1].to_numpy()).str.upper()
            .tolist(),
            "url": [f"https://linear.app/{ORG_URL_KEY}/profiles/{d}" for d in pd.Series(first).str.lower()]}, m)
        for rec, tid in zip(user_records, u_team, strict=True):
            rec["__meta"] = {"team": tid}
        users = Entities("User", user_records, {"createdAt": ns(u_created), "updatedAt": ns(u_updated)},
                         np.zeros(m, dtype=bool), {"team": np.array(u_team, dtype=object)}, hidden=~active)
        viewer = next((r["id"] for r in user_records if r["active"]), user_records[0]["id"] if m else None)

        # cycles
        done_share = live_tasks.assign(done=live_tasks["state"].astype(str).str.lower() == "done") \
            .groupby("cycle_id")["done"].mean()
        starts = pd.to_datetime(cycles["starts_at"], utc=True)
        ends = pd.to_datetime(cycles["ends_at"], utc=True)
        q = len(cycles)
        c_team_ids = cycles["team"].map(team_id).astype(object).where(lambda s: s.notna(), None).tolist()
        cycle_records = _records({
            "id": cycles["system_id"].astype(str).tolist(), "number": cycles["number"].astype(float).tolist(),
            "name": [None] * q, "description": [None] * q, "startsAt": _iso(starts), "endsAt": _iso(ends),
            "completedAt": _iso(ends.where(ends <= now)), "createdAt": _iso(cycles["created_at"]),
            "updatedAt": _iso(cycles["updated_at"]), "archivedAt": _iso(cycles["deleted_at"]),
            "progress": cycles["cycle_id"].map(done_share).fillna(0.0).astype(float).tolist(),
            "isActive": ((starts <= now) & (ends > now)).tolist(), "isPast": (ends <= now).tolist(),
            "isFuture": (starts > now).tolist()}, q)
        for rec, tid in zip(cycle_records, c_team_ids, strict=True):
            rec["__meta"] = {"team": tid}
        cycles_e = Entities("Cycle", cycle_records, {
            "createdAt": ns(cycles["created_at"]), "updatedAt": ns(cycles["updated_at"]),
            "archivedAt": ns(cycles["deleted_at"]), "startsAt": ns(starts), "endsAt": ns(ends)},
            cycles["deleted_at"].notna().to_numpy(), {"team": np.array(c_team_ids, dtype=object)})

        # projects
        p = len(projects)
        status = projects["status"].astype(str).str.lower().map(PROJECT_STATUS)
        status = status.where(status.notna(), pd.Series([("started", "In Progress", "started")] * p,
                                                        index=projects.index))
        p_updated = pd.to_datetime(projects["updated_at"], utc=True)
        p_team_ids = projects["team"].map(team_id).astype(object).where(lambda s: s.notna(), None).tolist()
        p_lead = projects["owner_id"].map(user_of).astype(object).where(lambda s: s.notna(), None).tolist()
        p_ids = projects["system_id"].astype(str)
        p_slug = p_ids.str.replace("-", "").str[-12:]
        kinds = [s[0] for s in status]
        project_records = _records({
            "id": p_ids.tolist(), "name": projects["name"].astype(str).tolist(), "description": [""] * p,
            "slugId": p_slug.tolist(), "state": [s[2] for s in status],
            "status": [{"id": stable_uuid(ORG_URL_KEY, "project-status", s[0]), "name": s[1], "type": s[0],
                        "color": "#5e6ad2", "position": 0.0, "indefinite": s[0] in ("backlog", "planned"),
                        "createdAt": None} for s in status],
            "progress": pd.to_numeric(projects["progress"], errors="coerce").fillna(0.0).clip(0, 1).tolist(),
            "startDate": _date(projects["start_on"]), "targetDate": _date(projects["due_on"]),
            "createdAt": _iso(projects["created_at"]), "updatedAt": _iso(p_updated),
            "archivedAt": _iso(projects["deleted_at"]),
            "completedAt": _iso(p_updated.where(pd.Series(kinds, index=projects.index) == "completed")),
            "canceledAt": _iso(p_updated.where(pd.Series(kinds, index=projects.index) == "canceled")),
            "url": [f"https://linear.app/{ORG_URL_KEY}/project/{s}" for s in p_slug],
            "priority": [0] * p, "priorityLabel": ["No priority"] * p, "color": ["#5e6ad2"] * p}, p)
        org_created = _iso([origin])[0]
        for rec, tid, lead in zip(project_records, p_team_ids, p_lead, strict=True):
            rec["status"]["createdAt"] = org_created
            rec["__meta"] = {"team": tid, "lead": lead}
        projects_e = Entities("Project", project_records, {
            "createdAt": ns(projects["created_at"]), "updatedAt": ns(p_updated),
            "archivedAt": ns(projects["deleted_at"])}, projects["deleted_at"].notna().to_numpy(),
            {"team": np.array(p_team_ids, dtype=object), "lead": np.array(p_lead, dtype=object)})

        organization = {"id": stable_uuid(ORG_URL_KEY, "organization"), "name": ORG_NAME, "urlKey": ORG_URL_KEY,
                        "createdAt": org_created, "updatedAt": org_created, "userCount": int(active.sum()),
                        "createdIssueCount": n, "logoUrl": None, "allowedAuthServices": ["google"]}
        identifiers = {ident: i for i, ident in enumerate(r["identifier"] for r in issue_records)}
        return LinearData(issues, teams, users, cycles_e, projects_e, states, organization, viewer, identifiers, now)

    # --- endpoints ---------------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> str:
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            token = self.tokens.check(rest.strip())
            if token is not None and token.client_id != "personal-api-key":
                return rest.strip()
        elif header and " " not in header:
            token = self.tokens.check(header)
            if token is not None and token.client_id == "personal-api-key":
                return header
        raise Reply(self.expired_token_response(request))

    async def graphql(self, request: Request) -> Response:
        who = self._authenticate(request)
        body = self.json_body(await request.body())
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            return self._errors("GraphQL operations must contain a non-empty `query`.", "invalid input",
                                "BAD_REQUEST", 400, with_data=False)
        variables = body.get("variables") or {}
        operation_name = body.get("operationName")
        if not isinstance(variables, dict) or not (operation_name is None or isinstance(operation_name, str)):
            return self._errors("`variables` must be an object and `operationName` a string.", "invalid input",
                                "BAD_REQUEST", 400, with_data=False)
        schema = linear_schema()
        try:
            document = parse(body["query"])
        except GraphQLSyntaxError as exc:
            return self._graphql_errors([exc], "GRAPHQL_PARSE_FAILED", 400)
        problems = validate(schema, document)
        if problems:
            return self._graphql_errors(problems, "GRAPHQL_VALIDATION_FAILED", 400)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return self._errors("Unknown or ambiguous operation name.", "invalid input", "BAD_USER_INPUT", 400,
                                with_data=False)
        headers = self.budget.spend(who, complexity(document, variables, operation_name))
        if operation.operation != OperationType.QUERY:
            return self._errors("The sandbox workspace is read-only: only queries are allowed.", "forbidden",
                                "FORBIDDEN", 400, headers)
        result = execute(schema, document, variable_values=variables, operation_name=operation_name,
                         field_resolver=resolve_field, context_value=Ctx(self.data, request, self))
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [self._format(e) for e in result.errors]
        payload["data"] = result.data
        return JSONResponse(payload, status_code=200 if result.data is not None else 400, headers=headers)

    @staticmethod
    def _format(error: GraphQLError, code: str | None = None) -> dict[str, Any]:
        out = error.formatted
        ext = dict(error.extensions or {})
        if "code" not in ext:
            internal = error.original_error is not None and not isinstance(error.original_error, GraphQLError)
            ext = {"type": "internal error" if internal else "graphql error",
                   "code": code or ("INTERNAL_SERVER_ERROR" if internal else "BAD_USER_INPUT"),
                   "userError": not internal, "userPresentableMessage": error.message}
        out["extensions"] = ext
        return out

    def _graphql_errors(self, errors: list[GraphQLError], code: str, status: int) -> JSONResponse:
        return JSONResponse({"errors": [self._format(e, code) for e in errors]}, status_code=status)

    async def oauth_token(self, request: Request) -> Response:
        """``POST /oauth/token`` (form): authorization_code, refresh_token or client_credentials."""
        form = await request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                client_id = None
        if client_id != self.CLIENT_ID or client_secret != self.CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_description": "Client authentication failed"},
                                status_code=401)
        grant = form.get("grant_type")
        scopes = tuple(str(form.get("scope") or "read").replace(",", " ").split())
        try:
            if grant == "refresh_token":
                access, refresh = self.tokens.refresh(str(form.get("refresh_token") or ""), self.CLIENT_ID)
            elif grant == "authorization_code" and form.get("code") == self.AUTH_CODE:
                access, refresh = self.tokens.issue(self.CLIENT_ID, scopes)
            elif grant == "client_credentials":
                access, refresh = self.tokens.issue(self.CLIENT_ID, scopes, with_refresh=False)
            elif grant == "authorization_code":
                raise InvalidGrant("invalid code")
            else:
                return JSONResponse({"error": "unsupported_grant_type",
                                     "error_description": f"Unsupported grant type: {grant}"}, status_code=400)
        except InvalidGrant as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        body: dict[str, Any] = {"access_token": access.value, "token_type": "Bearer",
                                "expires_in": int(self.tokens.access_ttl_s or 0),
                                "scope": " ".join(access.scopes or ("read",))}
        if refresh is not None:
            body["refresh_token"] = refresh.value
        return JSONResponse(body)
