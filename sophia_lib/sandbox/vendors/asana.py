"""Asana REST 1.0 simulator: ``/api/1.0/…`` wrapped in ``{"data": …}``, plus the OAuth token endpoint.

Served (BI reads): ``GET /workspaces``, ``/users?workspace=``, ``/projects?workspace=``
(``archived``), ``/projects/{gid}/sections``, ``/tasks?project=|section=|assignee=&workspace=``
(``modified_since``, ``completed_since``), ``/projects/{gid}/tasks``, ``/tasks/{gid}``, ``/users/me``
and ``/events?resource=&sync=``; ``POST /-/oauth_token`` (``authorization_code`` and
``refresh_token`` grants, 1-hour access tokens).

Wire behaviour reproduced:

* Records are *compact* (``gid``, ``resource_type``, ``name`` …) unless ``opt_fields`` names fields;
  dotted paths (``assignee.name``) expand nested objects. An unknown field is a 400.
* Paging: ``limit`` (1..100) and an opaque ``offset`` token bound to the query; ``next_page`` is
  ``{offset, path, uri}`` or ``null`` on the last page, and absent when no ``limit`` was sent.
* Incremental: ``modified_since`` on ``/tasks`` (``modified_at >= since``). Deleted tasks vanish from
  lists; they are seen through the Events API: the first call (no ``sync``) answers **412** with a
  fresh ``sync`` token, later calls return the events since the token (``added``/``changed``/
  ``deleted``, one per resource at its latest state), at most 100 at a time with ``has_more``.
  Tokens older than a day (in company time) or for another resource are 412 again.
* Errors: ``{"errors":[{"message", "help"}]}``; 500s add a ``phrase``; 401 is "Not Authorized";
  throttling is 429 with ``Retry-After`` and the same envelope.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore
from sophia_lib.sandbox.simulator.base import NativeTable, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.simulator.formats import decode_cursor, encode_cursor, parse_any
from sophia_lib.sandbox.vendors import register

PAT = "2/1199000000000001/1199000000000099:sandboxdemo"  # noqa: S105 - demo credential of the simulator
CLIENT_ID = "1199000000000050"
CLIENT_SECRET = "sandbox-asana-secret"  # noqa: S105
REFRESH_TOKEN = "2/1199000000000001/sandbox-demo-refresh"  # noqa: S105
AUTH_CODE = "sandbox-asana-code"
WORKSPACE_GID = "1199000000000001"
HELP = ("For more information on API status codes and how to handle them, read the docs on errors: "
        "https://developers.asana.com/docs/errors")
SYNC_TTL = timedelta(hours=24)
EVENTS_PAGE = 100
SECTIONS = ("To do", "In progress", "Done")
SECTION_OF_STATE = {"todo": 0, "in_progress": 1, "done": 2, "canceled": 2}
COLORS = ("dark-pink", "dark-green", "dark-blue", "dark-red", "dark-teal", "dark-brown", "dark-orange",
          "dark-purple", "light-pink", "light-green", "light-blue", "light-red", "light-teal")
COMPACT = {
    "task": ("gid", "name", "resource_type", "resource_subtype"),
    "project": ("gid", "name", "resource_type"),
    "user": ("gid", "name", "resource_type"),
    "workspace": ("gid", "name", "resource_type"),
    "section": ("gid", "name", "resource_type"),
}


def _iso_ms(series: pd.Series) -> np.ndarray:
    """Aware timestamps → Asana's "2024-01-15T10:22:33.456Z" strings (None for NaT), vectorised."""
    stamps = pd.to_datetime(series, utc=True)
    text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.astype(object).where(stamps.notna(), None).to_numpy()


def _date(series: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(series)
    return stamps.dt.strftime("%Y-%m-%d").astype(object).where(stamps.notna(), None).to_numpy()


def _no_nan(record: dict[str, Any]) -> dict[str, Any]:
    """NA cells (NaN under pandas' string dtype) → JSON null."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in record.items()}


def _ref(gid: str, kind: str, name: str) -> dict[str, str]:
    return {"gid": gid, "resource_type": kind, "name": name}


def _gid(base: int, key: str) -> str:
    """A stable numeric gid for objects the company contract has no id for (teams, sections)."""
    return str(base + zlib.crc32(key.encode()) % 10**9)


def _opt_tree(opt_fields: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in opt_fields.split(","):
        node = tree
        for part in [p for p in path.strip().split(".") if p]:
            node = node.setdefault(part, {})
    return tree


def _project_fields(value: Any, tree: dict[str, Any]) -> Any:
    """Shape ``value`` (a full record, list or scalar) by an opt_fields tree, as Asana does."""
    if isinstance(value, list):
        return [_project_fields(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {"gid": value["gid"]} if "gid" in value else {}
    if not tree:  # a named object without sub-fields comes back as {gid, resource_type}
        if "resource_type" in value:
            out["resource_type"] = value["resource_type"]
        return out
    for key, sub in tree.items():
        if key in value:
            out[key] = _project_fields(value[key], sub)
    return out


@dataclass
class Change:
    """One resource's latest change, as the Events API reports it."""

    at: datetime
    gid: str
    kind: str
    record: dict[str, Any]
    created: datetime
    deleted: datetime | None
    parent: dict[str, Any] | None


@register
class Asana(SimulatedVendor):
    """Asana (``https://app.asana.com``): one workspace with the company's Asana projects and tasks."""

    name = "asana"

    # --- credentials -------------------------------------------------------------------
    def setup_credentials(self) -> None:
        self.tokens = TokenStore("2/1199000000000001", access_ttl_s=3600.0)
        self.tokens.add_static(PAT, "pat")
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID)

    def credentials(self) -> dict[str, str]:
        return {"personal_access_token": PAT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN}

    # --- rendering ---------------------------------------------------------------------
    def render(self) -> None:
        company = self.company
        employees = company["employees"]
        domain = str(employees["email"].dropna().iloc[0]).split("@")[-1] if len(employees) else "example.com"
        self.workspace = {"gid": WORKSPACE_GID, "resource_type": "workspace", "name": domain.split(".")[0].capitalize(),
                          "email_domains": [domain], "is_organization": True}
        ws_ref = _ref(WORKSPACE_GID, "workspace", self.workspace["name"])

        people = company.presence_of("employee", "asana").join(
            employees.set_index("employee_id")[["first_name", "last_name", "email", "is_active", "deleted_at"]],
            on="entity_id", suffixes=("", "_emp"))
        people = people[people["deleted_at"].isna() & people["deleted_at_emp"].isna()]
        primary = people[~people["is_duplicate"].fillna(False).astype(bool)].drop_duplicates("entity_id")
        full = (people["first_name"].fillna("") + " " + people["last_name"].fillna("")).str.strip()
        people = people.assign(display=people["name"].where(people["name"].notna() & (people["name"] != ""), full),
                               mail=people["email"].fillna(people["email_emp"]))
        self.user_ref: dict[str, dict[str, str]] = {
            row["entity_id"]: _ref(row["system_id"], "user", row["display"])
            for row in people.loc[primary.index, ["entity_id", "system_id", "display"]].to_dict("records")
        }
        users = []
        for row in people[people["is_active"].fillna(True).astype(bool)][["system_id", "display", "mail"]].to_dict(
                "records"):
            users.append({"gid": row["system_id"], "resource_type": "user", "name": row["display"],
                          "email": None if pd.isna(row["mail"]) else str(row["mail"]).strip(), "photo": None,
                          "workspaces": [ws_ref]})
        users.sort(key=lambda u: int(u["gid"]))
        self.users = users

        projects = company["projects"]
        projects = projects[projects["system"] == "asana"]
        tasks = company["tasks"]
        tasks = tasks[tasks["system"] == "asana"]
        self.project_of_canon = projects.set_index("project_id")["system_id"].to_dict()
        self._render_projects(projects, ws_ref)
        self._render_tasks(tasks, ws_ref)

    def _render_projects(self, projects: pd.DataFrame, ws_ref: dict[str, str]) -> None:
        f = projects
        status = f["status"].fillna("").astype(str).str.lower()
        archived = status.isin(["archived", "canceled", "cancelled"]).to_numpy()
        completed = status.isin(["completed", "done", "complete"]).to_numpy()
        frame = pd.DataFrame({
            "gid": f["system_id"].astype(str), "name": f["name"].astype(str), "team": f["team"].fillna("General"),
            "owner_id": f["owner_id"], "created_at": _iso_ms(f["created_at"]), "modified_at": _iso_ms(f["updated_at"]),
            "start_on": _date(f["start_on"]), "due_on": _date(f["due_on"]), "status": status,
            "completed_at": np.where(completed, _iso_ms(f["updated_at"]), None),
        }, index=f.index)
        rows = []
        self.projects_by_gid: dict[str, dict[str, Any]] = {}
        for rec, archived_i, completed_i, mod, deleted in zip(
                map(_no_nan, frame.to_dict("records")), archived, completed, f["updated_at"], f["deleted_at"],
                strict=True):
            gid = rec["gid"]
            team = str(rec["team"])
            record = {
                "gid": gid, "resource_type": "project", "name": rec["name"], "archived": bool(archived_i),
                "color": COLORS[zlib.crc32(gid.encode()) % len(COLORS)], "created_at": rec["created_at"],
                "modified_at": rec["modified_at"], "current_status": None, "current_status_update": None,
                "default_view": "list", "due_on": rec["due_on"], "due_date": rec["due_on"], "start_on": rec["start_on"],
                "notes": "", "public": True, "completed": bool(completed_i), "completed_at": rec["completed_at"],
                "owner": self.user_ref.get(rec["owner_id"]) if isinstance(rec["owner_id"], str) else None,
                "team": _ref(_gid(1_198_000_000_000_000, team), "team", team), "workspace": ws_ref,
                "permalink_url": f"https://app.asana.com/1/{WORKSPACE_GID}/project/{gid}",
            }
            rows.append((mod.to_pydatetime(), record, pd.notna(deleted)))
            self.projects_by_gid[gid] = record
        self.tables["projects"] = NativeTable.build(rows, key="gid")
        self.project_deleted = {r[1]["gid"]: r[2] for r in rows}
        self.sections: dict[str, list[dict[str, Any]]] = {
            gid: [{"gid": _gid(1_197_000_000_000_000, f"{gid}/{i}"), "resource_type": "section", "name": name,
                   "project": _ref(gid, "project", rec["name"]), "created_at": rec["created_at"]}
                  for i, name in enumerate(SECTIONS)]
            for gid, rec in self.projects_by_gid.items()
        }

    def _render_tasks(self, tasks: pd.DataFrame, ws_ref: dict[str, str]) -> None:
        f = tasks
        state = f["state"].fillna("todo").astype(str)
        done = state.isin(["done", "canceled"]).to_numpy()
        completed_at = _iso_ms(f["completed_at"])
        completed_at = np.where(done, np.where(pd.isna(completed_at), _iso_ms(f["updated_at"]), completed_at), None)
        proj_gid = f["project_id"].map(self.project_of_canon)
        frame = pd.DataFrame({
            "gid": f["system_id"].astype(str), "name": f["title"].fillna("").astype(str), "project": proj_gid,
            "assignee_id": f["assignee_id"], "created_at": _iso_ms(f["created_at"]),
            "modified_at": _iso_ms(f["updated_at"]), "due_on": _date(f["due_on"]),
            "start_on": _date(f["started_at"]), "section": state.map(SECTION_OF_STATE).fillna(0).astype(int),
            "priority": f["priority"], "estimate": f["estimate"],
        }, index=f.index)
        rows = []
        self.task_project: dict[str, str | None] = {}
        self.task_assignee: dict[str, str | None] = {}
        for rec, is_done, done_at, mod, deleted in zip(map(_no_nan, frame.to_dict("records")), done, completed_at,
                                                       f["updated_at"], f["deleted_at"], strict=True):
            gid = rec["gid"]
            project = self.projects_by_gid.get(rec["project"]) if isinstance(rec["project"], str) else None
            assignee = self.user_ref.get(rec["assignee_id"]) if isinstance(rec["assignee_id"], str) else None
            projects, memberships = [], []
            if project is not None:
                pref = _ref(project["gid"], "project", project["name"])
                section = self.sections[project["gid"]][rec["section"]]
                projects = [pref]
                memberships = [{"project": pref, "section": _ref(section["gid"], "section", section["name"])}]
            record = {
                "gid": gid, "resource_type": "task", "name": rec["name"], "resource_subtype": "default_task",
                "approval_status": None, "assignee": assignee, "assignee_status": "inbox" if assignee else None,
                "completed": bool(is_done), "completed_at": done_at if isinstance(done_at, str) else None,
                "created_at": rec["created_at"],
                "modified_at": rec["modified_at"], "due_on": rec["due_on"], "due_at": None, "start_on": rec["start_on"],
                "start_at": None, "notes": "", "html_notes": "<body></body>", "liked": False, "num_likes": 0,
                "num_subtasks": 0, "likes": [], "is_rendered_as_separator": False,
                "actual_time_minutes": None, "projects": projects, "memberships": memberships, "parent": None,
                "tags": [], "followers": [assignee] if assignee else [], "workspace": ws_ref,
                "custom_fields": self._custom_fields(rec["priority"], rec["estimate"]),
                "permalink_url": f"https://app.asana.com/1/{WORKSPACE_GID}/task/{gid}",
            }
            if record["approval_status"] is None:
                del record["approval_status"]
            if record["assignee_status"] is None:
                del record["assignee_status"]
            rows.append((mod.to_pydatetime(), record, pd.notna(deleted)))
            self.task_project[gid] = project["gid"] if project is not None else None
            self.task_assignee[gid] = assignee["gid"] if assignee else None
        table = NativeTable.build(rows, key="gid")
        self.tables["tasks"] = table
        # per-project views of the same (modification-sorted) table, for project/section listings
        by_project: dict[str, list[int]] = {}
        for i, rec in enumerate(table.records):
            p = self.task_project.get(rec["gid"])
            if p is not None:
                by_project.setdefault(p, []).append(i)
        self.project_tasks = by_project
        self.task_created = dict(zip(frame["gid"], pd.to_datetime(f["created_at"], utc=True), strict=True))
        self.task_deleted_at = dict(zip(frame["gid"], pd.to_datetime(f["deleted_at"], utc=True), strict=True))

    @staticmethod
    def _custom_fields(priority: Any, estimate: Any) -> list[dict[str, Any]]:
        fields: list[dict[str, Any]] = []
        if isinstance(priority, str) and priority.lower() not in ("", "none", "no priority"):
            name = priority.capitalize()
            option = {"gid": _gid(1_196_000_000_000_000, f"priority/{name}"), "resource_type": "enum_option",
                      "name": name, "enabled": True, "color": "red" if name in ("Urgent", "High") else "blue"}
        else:
            option = None
        fields.append({"gid": "1196000000000001", "resource_type": "custom_field", "name": "Priority", "type": "enum",
                       "resource_subtype": "enum", "enabled": True, "enum_value": option,
                       "display_value": option["name"] if option else None})
        number = None if estimate is None or pd.isna(estimate) else float(estimate)
        fields.append({"gid": "1196000000000002", "resource_type": "custom_field", "name": "Estimate",
                       "type": "number", "resource_subtype": "number", "enabled": True, "precision": 0,
                       "number_value": number, "display_value": None if number is None else f"{number:g}"})
        return fields

    # --- vendor answers ----------------------------------------------------------------
    def routes(self) -> list[tuple[str, Any, list[str]]]:
        api = "/api/1.0"
        return [
            ("/-/oauth_token", self.oauth_token, ["POST"]),
            (f"{api}/workspaces", self.list_workspaces, ["GET"]),
            (f"{api}/workspaces/{{gid}}", self.get_workspace, ["GET"]),
            (f"{api}/users", self.list_users, ["GET"]),
            (f"{api}/users/{{gid}}", self.get_user, ["GET"]),
            (f"{api}/projects", self.list_projects, ["GET"]),
            (f"{api}/projects/{{gid}}", self.get_project, ["GET"]),
            (f"{api}/projects/{{gid}}/sections", self.list_sections, ["GET"]),
            (f"{api}/projects/{{gid}}/tasks", self.project_tasks_route, ["GET"]),
            (f"{api}/tasks", self.list_tasks, ["GET"]),
            (f"{api}/tasks/{{gid}}", self.get_task, ["GET"]),
            (f"{api}/events", self.events, ["GET"]),
            (f"{api}/{{rest:path}}", self.no_route, ["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]

    @staticmethod
    def _errors(status: int, message: str, **extra: Any) -> JSONResponse:
        error = {"message": message, "help": HELP}
        if status >= 500:
            error["phrase"] = "6 sad squid snuggle softly"
        return JSONResponse({"errors": [error], **extra}, status_code=status)

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        retry = str(fault.params.get("retry_after", 1))
        response = self._errors(429, "You've made too many requests and hit a rate limit. "
                                     "Please retry after the given amount of time.")
        response.headers["Retry-After"] = retry
        return response

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return self._errors(status, "Server Error" if status >= 500 else message)

    def expired_token_response(self, request: Request) -> Response:
        return JSONResponse({"errors": [{"message": "Not Authorized", "help": HELP}]}, status_code=401)

    def error_response_for_body(self, exc: Exception) -> Response:
        return self._errors(400, "Could not parse request data, invalid JSON")

    async def no_route(self, request: Request) -> Response:
        self.require_bearer(request)
        return self._errors(404, "No matching route for request")

    # OAuth ------------------------------------------------------------------------------
    async def oauth_token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = None
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_description": "The client is not authorized."},
                                status_code=401)
        grant = form.get("grant_type")
        me = self.users[0] if self.users else {"gid": "1199000000000099", "name": "Sandbox", "email": None}
        data = {"id": int(me["gid"]), "gid": me["gid"], "name": me["name"], "email": me.get("email")}
        if grant == "refresh_token":
            try:
                access, _ = self.tokens.refresh(form.get("refresh_token", ""), CLIENT_ID)
            except InvalidGrant:
                return JSONResponse({"error": "invalid_grant", "error_description": "The refresh token is invalid "
                                     "or has been revoked."}, status_code=400)
            return JSONResponse({"access_token": access.value, "token_type": "bearer", "expires_in": 3600,
                                 "data": data})
        if grant == "authorization_code":
            if form.get("code") != AUTH_CODE:
                return JSONResponse({"error": "invalid_grant", "error_description": "The code is invalid."},
                                    status_code=400)
            access, refresh = self.tokens.issue(CLIENT_ID)
            assert refresh is not None
            return JSONResponse({"access_token": access.value, "token_type": "bearer", "expires_in": 3600,
                                 "data": data, "refresh_token": refresh.value})
        return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant_type must be "
                             "authorization_code or refresh_token."}, status_code=400)

    # helpers ----------------------------------------------------------------------------
    def _shape(self, request: Request, records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        opt = request.query_params.get("opt_fields")
        if not opt:
            keys = COMPACT[kind]
            return [{k: r[k] for k in keys if k in r} for r in records]
        tree = _opt_tree(opt)
        known: set[str] = set().union(*(r.keys() for r in records)) if records else set()
        known |= self._known_fields(kind)
        unknown = sorted(k for k in tree if k not in known)
        if unknown:
            raise Reply(self._errors(400, f"opt_fields: Unknown field: {unknown[0]}"))
        return [_project_fields(r, tree) for r in records]

    def _known_fields(self, kind: str) -> set[str]:
        sample = {"task": self.tables["tasks"].records[:1], "project": self.tables["projects"].records[:1],
                  "user": self.users[:1], "workspace": [self.workspace],
                  "section": next(iter(self.sections.values()), [])[:1]}[kind]
        return set(sample[0]) if sample else set(COMPACT[kind])

    def _limit(self, request: Request) -> int | None:
        raw = request.query_params.get("limit")
        if raw is None:
            return None
        try:
            limit = int(raw)
        except ValueError:
            raise Reply(self._errors(400, f"limit: Not a valid integer: {raw}")) from None
        if not 1 <= limit <= 100:
            raise Reply(self._errors(400, "limit: Must be between 1 and 100"))
        return limit

    def _query_key(self, request: Request) -> str:
        params = sorted((k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit"))
        return f"{request.url.path}?{urlencode(params)}"

    def _listing(self, request: Request, items: list[dict[str, Any]], kind: str) -> Response:
        """The list envelope with offset paging (or everything when no ``limit`` was sent)."""
        limit = self._limit(request)
        key = zlib.crc32(self._query_key(request).encode())
        start = 0
        offset = request.query_params.get("offset")
        if offset:
            try:
                state = decode_cursor(offset)
                start = int(state["i"])
                if state.get("q") != key or start < 0:
                    raise ValueError(offset)
            except (ValueError, KeyError, TypeError):
                return self._errors(400, "offset: Your pagination token is invalid or has expired.")
        if limit is None:
            if len(items) > 1000:
                return self._errors(400, "The result is too large. You should use pagination (may require "
                                         "specifying a limit).")
            return JSONResponse({"data": self.page(request, self._shape(request, items, kind), 0, len(items))})
        # shape only the served window (plus the record before it, for the duplicate-record fault)
        lo = max(0, start - 1)
        window = self._shape(request, items[lo:start + limit], kind)
        page = self.page(request, window, start - lo, limit)
        nxt = start + limit
        next_page = None
        if nxt < len(items):
            token = encode_cursor({"q": key, "i": nxt})
            uri = str(request.url.include_query_params(offset=token))
            next_page = {"offset": token, "path": uri.split("/api/1.0", 1)[1], "uri": uri}
        return JSONResponse({"data": page, "next_page": next_page})

    def _one(self, request: Request, record: dict[str, Any] | None, kind: str, gid: str) -> Response:
        if record is None:
            return self._errors(404, f"{kind}: Unknown object: {gid}")
        opt = request.query_params.get("opt_fields")
        return JSONResponse({"data": self._shape(request, [record], kind)[0] if opt else record})

    def _workspace_param(self, request: Request, required: bool) -> None:
        ws = request.query_params.get("workspace")
        if ws is None and required:
            raise Reply(self._errors(400, "workspace: Missing input"))
        if ws is not None and ws != WORKSPACE_GID:
            raise Reply(self._errors(404, f"workspace: Unknown object: {ws}"))

    # endpoints --------------------------------------------------------------------------
    async def list_workspaces(self, request: Request) -> Response:
        self.require_bearer(request)
        return self._listing(request, [self.workspace], "workspace")

    async def get_workspace(self, request: Request) -> Response:
        self.require_bearer(request)
        gid = request.path_params["gid"]
        return self._one(request, self.workspace if gid == WORKSPACE_GID else None, "workspace", gid)

    async def list_users(self, request: Request) -> Response:
        self.require_bearer(request)
        self._workspace_param(request, required=False)
        return self._listing(request, self.users, "user")

    async def get_user(self, request: Request) -> Response:
        self.require_bearer(request)
        gid = request.path_params["gid"]
        if gid == "me":
            return self._one(request, self.users[0] if self.users else None, "user", gid)
        return self._one(request, next((u for u in self.users if u["gid"] == gid), None), "user", gid)

    async def list_projects(self, request: Request) -> Response:
        self.require_bearer(request)
        self._workspace_param(request, required=False)
        archived = request.query_params.get("archived")
        if archived is not None and archived not in ("true", "false"):
            return self._errors(400, f"archived: Not a boolean: {archived}")
        items = sorted(self.tables["projects"].select(), key=lambda r: int(r["gid"]))
        if archived is not None:
            items = [p for p in items if p["archived"] == (archived == "true")]
        team = request.query_params.get("team")
        if team is not None:
            items = [p for p in items if p["team"]["gid"] == team]
        return self._listing(request, items, "project")

    def _live_project(self, gid: str) -> dict[str, Any]:
        record = self.projects_by_gid.get(gid)
        if record is None or self.project_deleted.get(gid):
            raise Reply(self._errors(404, f"project: Unknown object: {gid}"))
        return record

    async def get_project(self, request: Request) -> Response:
        self.require_bearer(request)
        gid = request.path_params["gid"]
        return self._one(request, self._live_project(gid), "project", gid)

    async def list_sections(self, request: Request) -> Response:
        self.require_bearer(request)
        gid = request.path_params["gid"]
        self._live_project(gid)
        return self._listing(request, self.sections[gid], "section")

    def _since(self, request: Request, name: str) -> datetime | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if name == "completed_since" and raw == "now":
            return self.company.now.to_pydatetime()
        try:
            return parse_any(raw)
        except (ValueError, TypeError, OverflowError):
            raise Reply(self._errors(400, f"{name}: Invalid date value: {raw}")) from None

    def _tasks(self, request: Request, project: str | None) -> Response:
        q = request.query_params
        section = q.get("section")
        assignee = q.get("assignee")
        table = self.tables["tasks"]
        if project is None and section is not None:
            project = next((p for p, secs in self.sections.items() if any(s["gid"] == section for s in secs)), None)
            if project is None:
                return self._errors(404, f"section: Unknown object: {section}")
        if project is None and assignee is None:
            return self._errors(400, "Must specify exactly one of project, tag, section, user task list, or "
                                     "assignee + workspace")
        if project is None:
            self._workspace_param(request, required=True)
            me = self.users[0]["gid"] if assignee == "me" and self.users else assignee
            indexes = [i for i, r in enumerate(table.records) if self.task_assignee.get(r["gid"]) == me]
        else:
            self._live_project(project)
            indexes = self.project_tasks.get(project, [])
        since = self._since(request, "modified_since")
        if since is not None:  # the per-project index list is in modification order: bisect it
            indexes = indexes[bisect_left([table.modified[i] for i in indexes], since):]
        items = [table.records[i] for i in indexes if not table.deleted[i]]
        if section is not None:
            items = [r for r in items if r["memberships"] and r["memberships"][0]["section"]["gid"] == section]
        completed_since = self._since(request, "completed_since")
        if completed_since is not None:
            items = [r for r in items if not r["completed"] or parse_any(r["completed_at"]) >= completed_since]
        return self._listing(request, items, "task")

    async def list_tasks(self, request: Request) -> Response:
        self.require_bearer(request)
        return self._tasks(request, request.query_params.get("project"))

    async def project_tasks_route(self, request: Request) -> Response:
        self.require_bearer(request)
        return self._tasks(request, request.path_params["gid"])

    async def get_task(self, request: Request) -> Response:
        self.require_bearer(request)
        gid = request.path_params["gid"]
        table = self.tables["tasks"]
        i = table._index.get(gid)
        record = None if i is None or table.deleted[i] else table.records[i]
        return self._one(request, record, "task", gid)

    # Events -----------------------------------------------------------------------------
    def _changes(self, resource: str) -> list[Change] | None:
        """Every change visible from ``resource`` (a project or a task), in (time, gid) order."""
        tasks = self.tables["tasks"]
        projects = self.tables["projects"]
        changes: list[Change] = []
        if resource in self.projects_by_gid:
            project = self.projects_by_gid[resource]
            pref = _ref(resource, "project", project["name"])
            pi = projects._index[resource]
            p_created = parse_any(project["created_at"])
            changes.append(Change(projects.modified[pi], resource, "project", project, p_created,
                                  projects.modified[pi] if projects.deleted[pi] else None, None))
            indexes = self.project_tasks.get(resource, [])
        elif resource in tasks._index:
            pref = None
            indexes = [tasks._index[resource]]
        else:
            return None
        for i in indexes:
            rec = tasks.records[i]
            deleted_at = self.task_deleted_at.get(rec["gid"])
            changes.append(Change(tasks.modified[i], rec["gid"], "task", rec, self.task_created[rec["gid"]],
                                  None if pd.isna(deleted_at) else deleted_at.to_pydatetime(), pref))
        changes.sort(key=lambda c: (c.at, c.gid))
        return changes

    def _sync_token(self, resource: str, at: datetime, gid: str) -> str:
        return encode_cursor({"r": resource, "t": at.isoformat(), "g": gid,
                              "i": self.company.now.isoformat()})

    async def events(self, request: Request) -> Response:
        self.require_bearer(request)
        resource = request.query_params.get("resource")
        if not resource:
            return self._errors(400, "resource: Missing input")
        changes = self._changes(resource)
        if changes is None:
            return self._errors(404, f"resource: Unknown object: {resource}")
        now = self.company.now.to_pydatetime()
        fresh = self._sync_token(resource, now, "")
        sync = request.query_params.get("sync")
        too_old = ("Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch "
                   "the full dataset for this query now and use the new sync token for the next sync.")
        if not sync:
            return JSONResponse({"errors": [{"message": too_old}], "sync": fresh}, status_code=412)
        try:
            state = decode_cursor(sync)
            since, after_gid = parse_any(state["t"]), str(state["g"])
            issued = parse_any(state["i"])
            if state["r"] != resource or now - issued > SYNC_TTL:
                raise ValueError(sync)
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"message": too_old}], "sync": fresh}, status_code=412)
        pending = [c for c in changes if (c.at, c.gid) > (since, after_gid)]
        served = pending[:EVENTS_PAGE]
        more = len(pending) > EVENTS_PAGE
        events = [self._event(c, since) for c in served]
        last = served[-1] if more else None
        token = self._sync_token(resource, last.at, last.gid) if last else fresh
        return JSONResponse({"data": events, "sync": token, "has_more": more})

    def _event(self, change: Change, since: datetime) -> dict[str, Any]:
        rec = change.record
        if change.deleted is not None and change.deleted > since:
            action, parent = "deleted", None
        elif change.created > since:
            action, parent = "added", change.parent
        else:
            action, parent = "changed", None
        resource = {"gid": change.gid, "resource_type": change.kind, "name": rec["name"]}
        if change.kind == "task":
            resource["resource_subtype"] = rec["resource_subtype"]
        user = rec.get("assignee") if change.kind == "task" else rec.get("owner")
        event: dict[str, Any] = {
            "user": user, "created_at": change.at.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{change.at.microsecond // 1000:03d}Z",
            "type": change.kind, "action": action, "resource": resource, "parent": parent,
        }
        # no ``change`` object: the company records that a task changed, not which field did; a connector
        # re-reads the resource either way
        return event
