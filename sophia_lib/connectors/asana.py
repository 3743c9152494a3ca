"""Asana (REST 1.0): workspaces, users, projects and tasks; deletes through the Events API.

Wire (VENDOR-APIS.md §7): ``https://app.asana.com/api/1.0``, ``Authorization: Bearer <personal access
token>``, every answer wrapped in ``{"data": …}``. Lists page with ``limit`` (≤ 100, always sent: older
endpoints return everything without it) and the opaque ``next_page.offset`` (``null`` on the last page).
Records are *compact* unless ``opt_fields`` names the fields, so every list names them.

* workspaces, users, projects: small lists, read in full each sync and **replaced** (a deleted project
  or user simply disappears from the list, so the raw table equals the live list). ``/projects`` without
  ``archived`` returns archived projects too (kept, with ``archived`` true).
* tasks: ``GET /tasks?project=<gid>&modified_since=<cursor - lag>`` per project (``/tasks`` needs a
  project), merged on ``gid``. The cursor is ``modified_at`` (a task changes when its fields or
  associations change, not when only a subtask does). :data:`LAG_S` re-reads a small overlap because
  Asana's list index trails its writes; the merge removes the duplicates.
* Deletes: list calls never show deleted tasks, so each project is followed on the Events API
  (``GET /events?resource=<project>&sync=<token>``): ``deleted`` task events become tombstones. The sync
  tokens live in the resource's dlt state (one per project, stored with the data). The first call for a
  project (no token) answers **412** with a fresh token; so does a token Asana considers too old
  (about a day): the project's tasks are then re-read in full, as Asana advises. Tasks deleted inside
  such a gap (no sync for a day) are only removed by a full refresh: the list cannot show them. With a
  valid token, a project whose events show no task change is not listed at all (one request, not two).
* Tasks outside any project (private "My tasks") are not read: ``/tasks`` requires a project here.
* Throttling: 429 with ``Retry-After`` (150/min on free domains, 1,500 on paid), handled by the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
import requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth
from sophia_lib.connectors._http import Signal, ThrottlePolicy, Verdict
from sophia_lib.connectors._streams import new_fields, snapshot_hints, unique
from sophia_lib.connectors.spec import DELETED_COLUMN, Connector, SourceContext, Stream, incremental

API = "api/1.0"
PAGE_SIZE = 100
LAG_S = 300.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

WORKSPACES = Stream(
    "workspaces", ("gid",), required=("name",),
    columns={"gid": "text", "name": "text", "is_organization": "bool", "email_domains": "json"},
    description="Asana workspaces and organizations the token can see")
USERS = Stream(
    "users", ("gid",), required=("name",),
    columns={"gid": "text", "name": "text", "email": "text", "workspace_gids": "json"},
    description="Active users of each workspace")
PROJECTS = Stream(
    "projects", ("gid",), required=("name",),
    columns={"gid": "text", "name": "text", "workspace_gid": "text", "team_gid": "text", "team_name": "text",
             "owner_gid": "text", "owner_name": "text", "archived": "bool", "completed": "bool",
             "completed_at": "timestamp", "created_at": "timestamp", "modified_at": "timestamp",
             "start_on": "date", "due_on": "date", "color": "text", "public": "bool", "permalink_url": "text"},
    description="Projects, archived ones included (archived = true)")
TASKS = Stream(
    "tasks", ("gid",), cursor="modified_at", required=("created_at",),
    columns={"gid": "text", "name": "text", "resource_subtype": "text", "workspace_gid": "text",
             "project_gid": "text", "project_name": "text", "project_gids": "json", "section_gid": "text",
             "section_name": "text", "assignee_gid": "text", "assignee_name": "text", "parent_gid": "text",
             "completed": "bool", "completed_at": "timestamp", "created_at": "timestamp",
             "modified_at": "timestamp", "start_on": "date", "due_on": "date", "num_subtasks": "bigint",
             "priority": "text", "estimate": "double", "custom_fields": "json", "permalink_url": "text"},
    description="Tasks of every project (the first project is project_gid; all are in project_gids)")

OPT_FIELDS = {
    "workspaces": "name,is_organization,email_domains",
    "users": "name,email,workspaces",
    "projects": "name,workspace,team.name,owner.name,archived,completed,completed_at,created_at,modified_at,"
                "start_on,due_on,color,public,permalink_url",
    "tasks": "name,resource_subtype,workspace,projects.name,memberships.project,memberships.section.name,"
             "assignee.name,parent,completed,completed_at,created_at,modified_at,start_on,due_on,num_subtasks,"
             "custom_fields.name,custom_fields.display_value,custom_fields.number_value,permalink_url",
}
# Vendor fields the flattening reads; any other top-level field Asana adds later is kept as a new column.
_READ = {name: frozenset({"gid", "resource_type", *(f.split(".")[0] for f in fields.split(","))})
         for name, fields in OPT_FIELDS.items()}


class AsanaPolicy(ThrottlePolicy):
    """Asana's signals: 429 + Retry-After (base class); 412 on ``/events`` is an answer, not an error."""

    def classify(self, response: requests.Response) -> Verdict:
        if response.status_code == 412 and "/events" in (response.url or ""):
            return Verdict(Signal.OK)
        return super().classify(response)


def _gid(ref: Any) -> str | None:
    return ref.get("gid") if isinstance(ref, dict) else None


def _name(ref: Any) -> str | None:
    return ref.get("name") if isinstance(ref, dict) else None


def flatten_workspace(r: dict[str, Any]) -> dict[str, Any]:
    return {"gid": r.get("gid"), "name": r.get("name"), "is_organization": r.get("is_organization"),
            "email_domains": r.get("email_domains"), **new_fields(r, _READ["workspaces"])}


def flatten_user(r: dict[str, Any]) -> dict[str, Any]:
    return {"gid": r.get("gid"), "name": r.get("name"), "email": r.get("email"),
            "workspace_gids": [_gid(w) for w in r.get("workspaces") or []], **new_fields(r, _READ["users"])}


def flatten_project(r: dict[str, Any]) -> dict[str, Any]:
    return {"gid": r.get("gid"), "name": r.get("name"), "workspace_gid": _gid(r.get("workspace")),
            "team_gid": _gid(r.get("team")), "team_name": _name(r.get("team")), "owner_gid": _gid(r.get("owner")),
            "owner_name": _name(r.get("owner")), "archived": r.get("archived"), "completed": r.get("completed"),
            "completed_at": r.get("completed_at"), "created_at": r.get("created_at"),
            "modified_at": r.get("modified_at"), "start_on": r.get("start_on"), "due_on": r.get("due_on"),
            "color": r.get("color"), "public": r.get("public"), "permalink_url": r.get("permalink_url"),
            **new_fields(r, _READ["projects"])}


def flatten_task(r: dict[str, Any]) -> dict[str, Any]:
    projects = r.get("projects") or []
    membership = (r.get("memberships") or [{}])[0] or {}
    fields = {f.get("name"): f for f in r.get("custom_fields") or [] if isinstance(f, dict)}
    return {"gid": r.get("gid"), "name": r.get("name"), "resource_subtype": r.get("resource_subtype"),
            "workspace_gid": _gid(r.get("workspace")), "project_gid": _gid(projects[0]) if projects else None,
            "project_name": _name(projects[0]) if projects else None, "project_gids": [_gid(p) for p in projects],
            "section_gid": _gid(membership.get("section")), "section_name": _name(membership.get("section")),
            "assignee_gid": _gid(r.get("assignee")), "assignee_name": _name(r.get("assignee")),
            "parent_gid": _gid(r.get("parent")), "completed": r.get("completed"),
            "completed_at": r.get("completed_at"), "created_at": r.get("created_at"),
            "modified_at": r.get("modified_at"), "start_on": r.get("start_on"), "due_on": r.get("due_on"),
            "num_subtasks": r.get("num_subtasks"), "priority": (fields.get("Priority") or {}).get("display_value"),
            "estimate": (fields.get("Estimate") or {}).get("number_value"), "custom_fields": r.get("custom_fields"),
            "permalink_url": r.get("permalink_url"), **new_fields(r, _READ["tasks"])}


def _tombstone(event: dict[str, Any]) -> dict[str, Any]:
    """A ``deleted`` task event → a row the merge removes (the event time stands in for modified_at)."""
    return {"gid": _gid(event.get("resource")), "modified_at": event.get("created_at"),
            "created_at": event.get("created_at"), DELETED_COLUMN: True}


def _is_tombstone(row: dict[str, Any]) -> bool:
    return bool(row.get(DELETED_COLUMN))


def source(ctx: SourceContext) -> Any:
    """The dlt source of Asana workspaces, users, projects and tasks (see the module docstring)."""
    session = ctx.session(auth=HeaderAuth.bearer(ctx.secret("personal_access_token")), policy=AsanaPolicy(),
                          rate_per_s=ctx.options.get("rate_per_s"))
    client = RESTClient(base_url=ctx.url(API), session=session)
    limit = int(ctx.options.get("page_size") or PAGE_SIZE)

    def pages(path: str, kind: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list (``limit`` always sent; ``next_page.offset`` followed)."""
        query = {**params, "limit": limit, "opt_fields": OPT_FIELDS[kind]}
        paginator = JSONResponseCursorPaginator(cursor_path="next_page.offset", cursor_param="offset")
        for page in client.paginate(path, params=query, paginator=paginator, data_selector="data",
                                    hooks={"response": []}):
            yield list(page)

    def workspace_gids() -> list[str]:
        return [w["gid"] for page in pages("/workspaces", "workspaces") for w in page]

    def snapshot(stream: Stream, batches: Iterator[list[dict[str, Any]]], flatten: Any) -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for batch in batches:
            yield from ctx.emit(stream, unique([flatten(r) for r in batch], stream.primary_key, seen))

    @dlt.resource(**snapshot_hints(WORKSPACES))
    def workspaces() -> Iterator[Any]:
        yield from snapshot(WORKSPACES, pages("/workspaces", "workspaces"), flatten_workspace)

    @dlt.resource(**snapshot_hints(USERS))
    def users() -> Iterator[Any]:
        for ws in workspace_gids():
            yield from snapshot(USERS, pages("/users", "users", workspace=ws), flatten_user)

    @dlt.resource(**snapshot_hints(PROJECTS))
    def projects() -> Iterator[Any]:
        for ws in workspace_gids():
            yield from snapshot(PROJECTS, pages("/projects", "projects", workspace=ws), flatten_project)

    def events(project: str, token: str | None) -> tuple[list[dict[str, Any]], str, bool]:
        """(events since ``token``, the next token, whether the token was still valid)."""
        collected: list[dict[str, Any]] = []
        while True:
            response = client.get("/events", params={"resource": project, **({"sync": token} if token else {})})
            body = response.json()
            if response.status_code == 412:  # no token yet, or too old: a fresh one, no events
                return collected, body["sync"], False
            collected.extend(body.get("data") or [])
            token = body["sync"]
            if not body.get("has_more"):
                return collected, token, True

    @dlt.resource(**TASKS.hints())
    def tasks(cursor: Any = incremental(TASKS, EPOCH, lag=LAG_S)) -> Iterator[Any]:
        since = None if ctx.full_refresh or cursor.start_value in (None, EPOCH) else cursor.start_value
        state = dlt.current.resource_state()
        tokens: dict[str, str] = dict(state.get("sync_tokens") or {})
        live: dict[str, str] = {}
        for ws in workspace_gids():
            for page in pages("/projects", "projects", workspace=ws):
                live.update((p["gid"], ws) for p in page)
        for project in live:
            # the token is taken before the list is read, so a change during the read is seen next time
            changes, token, valid = events(project, tokens.get(project) if since is not None else None)
            gone = [_tombstone(e) for e in changes if e.get("action") == "deleted"
                    and (e.get("resource") or {}).get("resource_type") == "task"]
            params = {"project": project}
            if valid and since is not None:
                params["modified_since"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            # with a valid token, a project whose events show no task change is not listed at all
            quiet = valid and since is not None and not any(
                e.get("action") != "deleted" and (e.get("resource") or {}).get("resource_type") == "task"
                for e in changes)
            for page in () if quiet else pages("/tasks", "tasks", **params):
                yield from ctx.emit(TASKS, [flatten_task(r) for r in page])
            if gone:
                yield from ctx.emit(TASKS, gone, deleted=_is_tombstone)
            tokens[project] = token
        state["sync_tokens"] = {gid: token for gid, token in tokens.items() if gid in live}

    @dlt.source(name="asana", max_table_nesting=0)
    def asana() -> list[Any]:
        return [workspaces, users, projects, tasks]

    return asana()


register(Connector(
    name="asana", title="Asana", default_base_url="https://app.asana.com", credentials=("personal_access_token",),
    streams=(WORKSPACES, USERS, PROJECTS, TASKS), source=source,
    options={"page_size": PAGE_SIZE, "rate_per_s": None},
    docs="A personal access token (My settings → Apps → Developer apps) of a user who can see the projects to "
         "sync. Tasks are read per project with modified_since; deletes come from the Events API (sync tokens "
         "kept in the pipeline state).",
))
