"""Linear: issues, cycles, projects, users, teams and workflow states over the GraphQL API.

Wire (VENDOR-APIS.md §8): every stream is one ``POST /graphql`` connection query,
``(first: 250, after: $after, orderBy: updatedAt, includeArchived: true,
filter: {updatedAt: {gt: $since}})``, paged Relay-style with ``pageInfo {hasNextPage endCursor}`` by
:class:`RelayPaginator`. 250 is Linear's maximum page (``options.page_size`` takes less).

* Incremental: ``$since`` is the dlt cursor (max ``updatedAt`` loaded) minus a lag of
  :data:`LAG_S` seconds: Linear's ``updatedAt`` is exact to the millisecond and ``gt`` is exclusive,
  but a write may commit after a later one is already visible; the overlap is re-read and the merge
  on ``id`` removes the repeats.
* Deletes: deleted issues, projects and cycles are *archived* (``archivedAt`` set) and only listed with
  ``includeArchived: true``; those rows are tombstones, so the raw tables hold live records only.
  Deactivated users are still users (issues point at them): they are kept (``includeDisabled: true``)
  with ``active = false``.
* Auth: a personal API key is sent as ``Authorization: <key>`` (no "Bearer"); with
  ``options["auth"] = "oauth"`` the OAuth refresh-token grant at ``/oauth/token`` is used (Linear rotates
  the refresh token: the new one is saved at once).
* Errors: Linear answers errors as GraphQL ``errors`` (HTTP 400 here, sometimes 200 with partial data):
  ``RATELIMITED`` → throttle (``Retry-After``), ``AUTHENTICATION_ERROR`` → refresh once / bad
  credentials, ``internal error``/``lock timeout`` → retry, anything else stops the sync with Linear's
  own message. Partial data is never loaded.
* Schema drift: responses are typed by the GraphQL schema, so a new vendor field never appears unasked
  and a retyped one is a GraphQL error (the sync stops with Linear's message) rather than a bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dlt
import requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import BasePaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth, OAuth2RefreshAuth
from sophia_lib.connectors._http import Auth, Signal, ThrottlePolicy, Verdict, body_json, retry_after_seconds
from sophia_lib.connectors.errors import SourceConfigError
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, incremental

OWN_ERRORS: dict[str, list] = {"response": []}
"""Turns off dlt RESTClient's raise-for-status hook, which would fire before VendorSession classifies the answer."""
PAGE_SIZE = 250  # Linear's maximum page: 0.8k–4.5k complexity points a query, under its 10k cap per query
LAG_S = 60.0
TRANSIENT_TYPES = ("internal error", "lock timeout")


# --- streams ---------------------------------------------------------------------------------------------

def _ts(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, "timestamp")


ISSUES = Stream(
    "issues", ("id",), cursor="updated_at", required=("identifier", "team_id", "state_id"),
    columns={"id": "text", "identifier": "text", "number": "bigint", "title": "text", "priority": "bigint",
             "priority_label": "text", "estimate": "double", "due_date": "date", "state_id": "text",
             "state_name": "text", "state_type": "text", "team_id": "text", "team_key": "text",
             "assignee_id": "text", "project_id": "text", "cycle_id": "text", "url": "text",
             **_ts("created_at", "updated_at", "started_at", "completed_at", "canceled_at")},
    description="Linear issues (archived issues are deleted)")
CYCLES = Stream(
    "cycles", ("id",), cursor="updated_at", required=("team_id",),
    columns={"id": "text", "number": "bigint", "name": "text", "team_id": "text", "progress": "double",
             **_ts("starts_at", "ends_at", "completed_at", "created_at", "updated_at")},
    description="Linear cycles (sprints)")
PROJECTS = Stream(
    "projects", ("id",), cursor="updated_at", required=("name",),
    columns={"id": "text", "name": "text", "state": "text", "status_name": "text", "status_type": "text",
             "progress": "double", "start_date": "date", "target_date": "date", "lead_id": "text",
             "team_ids": "json", "url": "text",
             **_ts("started_at", "completed_at", "canceled_at", "created_at", "updated_at")},
    description="Linear projects")
USERS = Stream(
    "users", ("id",), cursor="updated_at", required=("name",),
    columns={"id": "text", "name": "text", "display_name": "text", "email": "text", "active": "bool",
             "admin": "bool", "guest": "bool", **_ts("created_at", "updated_at")},
    description="Linear users, deactivated ones included (active = false)")
TEAMS = Stream(
    "teams", ("id",), cursor="updated_at", required=("key", "name"),
    columns={"id": "text", "key": "text", "name": "text", "private": "bool", "timezone": "text",
             "cycles_enabled": "bool", **_ts("created_at", "updated_at")},
    description="Linear teams")
WORKFLOW_STATES = Stream(
    "workflow_states", ("id",), cursor="updated_at", required=("name", "type", "team_id"),
    columns={"id": "text", "name": "text", "type": "text", "position": "double", "team_id": "text",
             **_ts("created_at", "updated_at")},
    description="Linear workflow states per team (Backlog … Canceled)")


def _ref(node: dict[str, Any], name: str, field: str = "id") -> Any:
    value = node.get(name)
    return value.get(field) if isinstance(value, dict) else None


def _common(node: dict[str, Any]) -> dict[str, Any]:
    return {"id": node["id"], "created_at": node.get("createdAt"), "updated_at": node.get("updatedAt"),
            "archived_at": node.get("archivedAt")}


@dataclass(frozen=True)
class Query:
    """One stream as a GraphQL connection: root field, selection, extra arguments, flattening."""

    stream: Stream
    root: str
    selection: str
    flatten: Callable[[dict[str, Any]], dict[str, Any]]
    extra_args: str = ""

    def document(self, page_size: int = PAGE_SIZE) -> str:
        return (f"query Sync($after: String, $since: DateTimeOrDuration) {{ {self.root}(first: {page_size}, "
                f"after: $after, orderBy: updatedAt, includeArchived: true{self.extra_args}, "
                f"filter: {{updatedAt: {{gt: $since}}}}) {{ nodes {{ id createdAt updatedAt archivedAt "
                f"{self.selection} }} pageInfo {{ hasNextPage endCursor }} }} }}")


QUERIES = (
    Query(ISSUES, "issues",
          "identifier number title priority priorityLabel estimate startedAt completedAt canceledAt dueDate "
          "trashed url state { id name type } team { id key } assignee { id } project { id } cycle { id }",
          lambda n: {**_common(n), "identifier": n.get("identifier"), "number": n.get("number"),
                     "title": n.get("title"), "priority": n.get("priority"),
                     "priority_label": n.get("priorityLabel"), "estimate": n.get("estimate"),
                     "started_at": n.get("startedAt"), "completed_at": n.get("completedAt"),
                     "canceled_at": n.get("canceledAt"), "due_date": n.get("dueDate"), "url": n.get("url"),
                     "trashed": n.get("trashed"), "state_id": _ref(n, "state"),
                     "state_name": _ref(n, "state", "name"), "state_type": _ref(n, "state", "type"),
                     "team_id": _ref(n, "team"), "team_key": _ref(n, "team", "key"),
                     "assignee_id": _ref(n, "assignee"), "project_id": _ref(n, "project"),
                     "cycle_id": _ref(n, "cycle")}),
    Query(CYCLES, "cycles", "number name startsAt endsAt completedAt progress team { id }",
          lambda n: {**_common(n), "number": n.get("number"), "name": n.get("name"),
                     "starts_at": n.get("startsAt"), "ends_at": n.get("endsAt"),
                     "completed_at": n.get("completedAt"), "progress": n.get("progress"),
                     "team_id": _ref(n, "team")}),
    Query(PROJECTS, "projects",
          "name state progress startDate targetDate startedAt completedAt canceledAt url "
          "status { name type } lead { id } teams(first: 10) { nodes { id } }",
          lambda n: {**_common(n), "name": n.get("name"), "state": n.get("state"),
                     "status_name": _ref(n, "status", "name"), "status_type": _ref(n, "status", "type"),
                     "progress": n.get("progress"), "start_date": n.get("startDate"),
                     "target_date": n.get("targetDate"), "started_at": n.get("startedAt"),
                     "completed_at": n.get("completedAt"), "canceled_at": n.get("canceledAt"),
                     "url": n.get("url"), "lead_id": _ref(n, "lead"),
                     "team_ids": [t["id"] for t in (n.get("teams") or {}).get("nodes") or []]}),
    Query(USERS, "users", "name displayName email active admin guest",
          lambda n: {**_common(n), "name": n.get("name"), "display_name": n.get("displayName"),
                     "email": n.get("email"), "active": n.get("active"), "admin": n.get("admin"),
                     "guest": n.get("guest")},
          extra_args=", includeDisabled: true"),
    Query(TEAMS, "teams", "key name private timezone cyclesEnabled",
          lambda n: {**_common(n), "key": n.get("key"), "name": n.get("name"), "private": n.get("private"),
                     "timezone": n.get("timezone"), "cycles_enabled": n.get("cyclesEnabled")}),
    Query(WORKFLOW_STATES, "workflowStates", "name type position team { id }",
          lambda n: {**_common(n), "name": n.get("name"), "type": n.get("type"), "position": n.get("position"),
                     "team_id": _ref(n, "team")}),
)


# --- wire ------------------------------------------------------------------------------------------------

class RelayPaginator(BasePaginator):
    """Relay ``pageInfo {hasNextPage endCursor}`` → the ``$after`` variable of the next POST."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.cursor: str | None = None

    def update_state(self, response: requests.Response, data: list[Any] | None = None) -> None:
        info = (((response.json() or {}).get("data") or {}).get(self.root) or {}).get("pageInfo") or {}
        self.cursor = info.get("endCursor")
        self._has_next_page = bool(info.get("hasNextPage")) and self.cursor is not None

    def update_request(self, request: Any) -> None:
        body = dict(request.json or {})
        body["variables"] = {**(body.get("variables") or {}), "after": self.cursor}
        request.json = body


class LinearPolicy(ThrottlePolicy):
    """Linear speaks in GraphQL ``errors`` whatever the HTTP status: sort them by ``extensions``."""

    def classify(self, response: requests.Response) -> Verdict:
        error = _first_error(response)
        if error is None:
            return super().classify(response)
        ext = error.get("extensions") or {}
        code, kind = str(ext.get("code") or ""), str(ext.get("type") or "")
        message = self.message(response)
        if code == "RATELIMITED" or kind == "ratelimited":
            return Verdict(Signal.THROTTLE, message, retry_after_seconds(response))
        if code == "AUTHENTICATION_ERROR" or kind == "authentication error":
            return Verdict(Signal.AUTH_EXPIRED, message)
        if kind in TRANSIENT_TYPES or response.status_code >= 500:
            return Verdict(Signal.TRANSIENT, message, retry_after_seconds(response))
        return Verdict(Signal.FATAL, message)

    def message(self, response: requests.Response) -> str:
        error = _first_error(response)
        if error is None:
            return super().message(response)
        code = (error.get("extensions") or {}).get("code")
        return f"{error.get('message') or 'GraphQL error'}" + (f" ({code})" if code else "")


def _first_error(response: requests.Response) -> dict[str, Any] | None:
    data = body_json(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    return errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None


def _auth(ctx: SourceContext) -> Auth:
    mode = ctx.options.get("auth", "api_key")
    if mode == "api_key":
        return HeaderAuth({"Authorization": ctx.secret("api_key")})
    if mode == "oauth":
        return OAuth2RefreshAuth(ctx.name, ctx.url("/oauth/token"), str(ctx.options["client_id"]),
                                 ctx.secret("client_secret"), ctx.secret("refresh_token"),
                                 on_rotate=lambda token: ctx.save_secret("refresh_token", token))
    raise SourceConfigError(ctx.name, f"unknown auth mode {mode!r}; valid: api_key, oauth",
                            fix="set sources.linear.options.auth to api_key or oauth")


def _iso(value: Any) -> str:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def source(ctx: SourceContext) -> Any:
    """The dlt source of every Linear stream (see the module docstring for the wire choices)."""
    client = RESTClient(base_url=ctx.base_url, session=ctx.session(auth=_auth(ctx), policy=LinearPolicy()))
    page_size = min(250, max(1, int(ctx.options.get("page_size") or PAGE_SIZE)))

    def resource(query: Query) -> Any:
        @dlt.resource(**query.stream.hints())
        def rows(cursor: Any = incremental(query.stream, ctx.start_date, lag=LAG_S)) -> Iterator[Any]:
            since = ctx.start_date if ctx.full_refresh or cursor.start_value is None else cursor.start_value
            body = {"query": query.document(page_size), "variables": {"after": None, "since": _iso(since)}}
            for page in client.paginate("/graphql", method="POST", json=body, paginator=RelayPaginator(query.root),
                                        data_selector=f"data.{query.root}.nodes", hooks=OWN_ERRORS):
                yield from ctx.emit(query.stream, [query.flatten(node) for node in page],
                                    deleted=lambda row: row.get("archived_at") is not None)
        return rows

    @dlt.source(name="linear", max_table_nesting=0)
    def linear() -> list[Any]:
        return [resource(query) for query in QUERIES]

    return linear()


register(Connector(
    name="linear", title="Linear", default_base_url="https://api.linear.app", credentials=("api_key",),
    streams=tuple(q.stream for q in QUERIES), source=source,
    options={"auth": "api_key", "page_size": PAGE_SIZE},
    docs="Personal API key (Settings → API), sent without 'Bearer'. For an OAuth app set options.auth=oauth, "
         "options.client_id, and the secrets client_secret and refresh_token (rotated and saved on each refresh). "
         "Archived issues/projects/cycles are removed from the raw tables; deactivated users are kept.",
))
