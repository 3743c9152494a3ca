"""Gong (API v2): calls, calls with their analysis ("extensive"), and users.

Wire (VENDOR-APIS.md §4): ``https://api.gong.io`` (or the customer host), ``Authorization: Basic
base64(access_key:access_key_secret)``. Lists answer ``{"requestId", "records": {"cursor"…}, …}``; the
``records.cursor`` is present only while more pages remain and goes back as the ``cursor`` query
parameter on GET and as the ``cursor`` **body** field on POST (in the query string of a POST it is
ignored and page 1 comes back forever). An empty result is **404** "No calls found corresponding to
the provided filters", which is an empty page, not an error.

* calls: ``GET /v2/calls?fromDateTime=…&toDateTime=…``; calls have no modification time, the filter is on
  the start time, so the cursor is ``started``. ``toDateTime`` (required) is now + 1 day.
* calls_extensive: ``POST /v2/calls/extensive`` with the same window and a ``contentSelector`` asking for
  parties, CRM context, content (topics, trackers, brief, key points, outcome) and interaction stats. Gong
  computes the analysis **late** (usually 1–3 h after the call ends; in the sandbox's history the 90th
  percentile is two days and the 99th four), so a call first loads without it. Each sync therefore
  re-reads a trailing window: ``fromDateTime`` = cursor (newest call start) − ``analysis_lag_hours``
  (default 72; Airbyte uses 24); the merge on ``id`` replaces the call once its analysis is there
  (``analysis_ready`` says whether it was). Analysis arriving later than the lag is picked up by a full
  refresh or a run with a longer lag. The same lag applies to ``calls`` (a call can be uploaded late).
* users: ``GET /v2/users`` (cursor), read in full each sync and **replaced**.
* Deletes: Gong exposes none (a deleted call simply vanishes); deleted calls stay in the raw table until
  a full refresh.
* Rate limit: 3 requests/s and 10,000/day per company. Requests are paced ahead of time (``rate_per_s``,
  default 3); a 429 carries ``Retry-After``. Errors are ``{"requestId", "errors": ["…"]}``; 401/403 are
  credential errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth
from sophia_lib.connectors._http import Signal, ThrottlePolicy, Verdict
from sophia_lib.connectors._streams import new_fields, snapshot_hints, unique
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, incremental

RATE_PER_S = 3.0
ANALYSIS_LAG_HOURS = 72.0
NO_RESULTS = "No calls found"
CONTENT_SELECTOR = {
    "context": "Extended",
    "exposedFields": {
        "parties": True,
        "content": {"brief": True, "topics": True, "trackers": True, "keyPoints": True, "callOutcome": True},
        "interaction": {"speakers": True, "questions": True, "personInteractionStats": True},
    },
}

_CALL_COLUMNS: dict[str, Any] = {
    "id": "text", "url": "text", "title": "text", "scheduled": "timestamp", "started": "timestamp",
    "duration": "bigint", "primary_user_id": "text", "direction": "text", "system": "text", "scope": "text",
    "media": "text", "language": "text", "workspace_id": "text", "purpose": "text", "meeting_url": "text",
    "is_private": "bool", "calendar_event_id": "text", "sdr_disposition": "text", "client_unique_id": "text",
    "custom_data": "text"}
USERS = Stream(
    "users", ("id",), required=("email_address",),
    columns={"id": "text", "email_address": "text", "first_name": "text", "last_name": "text", "title": "text",
             "active": "bool", "created": "timestamp", "manager_id": "text", "phone_number": "text",
             "email_aliases": "json", "spoken_languages": "json", "settings": "json"},
    description="Gong users (the people whose calls are recorded)")
CALLS = Stream(
    "calls", ("id",), cursor="started", required=("primary_user_id",), columns=_CALL_COLUMNS,
    description="Recorded calls (metadata); cursor = start time")
CALLS_EXTENSIVE = Stream(
    "calls_extensive", ("id",), cursor="started",
    columns={"id": "text", "started": "timestamp", "title": "text", "primary_user_id": "text",
             "analysis_ready": "bool", "crm_account_id": "text", "crm_opportunity_id": "text", "crm_context": "json",
             "parties": "json", "party_count": "bigint", "external_party_count": "bigint", "topics": "json",
             "trackers": "json", "brief": "text", "key_points": "json", "call_outcome": "text", "speakers": "json",
             "talk_ratio": "double", "longest_monologue_s": "double", "interactivity": "double", "patience": "double",
             "question_rate": "double", "questions_company": "bigint", "questions_non_company": "bigint"},
    description="Calls with parties, CRM context and Gong's analysis (topics, trackers, interaction stats)")

_READ_USER = frozenset({"id", "emailAddress", "firstName", "lastName", "title", "active", "created", "managerId",
                        "phoneNumber", "emailAliases", "spokenLanguages", "settings", "extension",
                        "trustedEmailAddress", "personalMeetingUrls", "meetingConsentPageUrl"})
_READ_CALL = frozenset({"id", "url", "title", "scheduled", "started", "duration", "primaryUserId", "direction",
                        "system", "scope", "media", "language", "workspaceId", "purpose", "meetingUrl", "isPrivate",
                        "calendarEventId", "sdrDisposition", "clientUniqueId", "customData"})
_READ_EXTENSIVE = frozenset({"metaData", "context", "parties", "content", "interaction", "collaboration", "media"})
_STATS = {"Talk Ratio": "talk_ratio", "Longest Monologue": "longest_monologue_s", "Interactivity": "interactivity",
          "Patience": "patience", "Question Rate": "question_rate"}


class GongPolicy(ThrottlePolicy):
    """Gong's 404 "No calls found corresponding to the provided filters" is an empty page."""

    def classify(self, response: requests.Response) -> Verdict:
        if response.status_code == 404 and NO_RESULTS in self.message(response):
            return Verdict(Signal.OK)
        return super().classify(response)


def flatten_user(u: dict[str, Any]) -> dict[str, Any]:
    return {"id": u.get("id"), "email_address": u.get("emailAddress"), "first_name": u.get("firstName"),
            "last_name": u.get("lastName"), "title": u.get("title"), "active": u.get("active"),
            "created": u.get("created"), "manager_id": u.get("managerId"), "phone_number": u.get("phoneNumber"),
            "email_aliases": u.get("emailAliases"), "spoken_languages": u.get("spokenLanguages"),
            "settings": u.get("settings"), **new_fields(u, _READ_USER)}


def flatten_call(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": c.get("id"), "url": c.get("url"), "title": c.get("title"), "scheduled": c.get("scheduled"),
            "started": c.get("started"), "duration": c.get("duration"), "primary_user_id": c.get("primaryUserId"),
            "direction": c.get("direction"), "system": c.get("system"), "scope": c.get("scope"),
            "media": c.get("media"), "language": c.get("language"), "workspace_id": c.get("workspaceId"),
            "purpose": c.get("purpose"), "meeting_url": c.get("meetingUrl"), "is_private": c.get("isPrivate"),
            "calendar_event_id": c.get("calendarEventId"), "sdr_disposition": c.get("sdrDisposition"),
            "client_unique_id": c.get("clientUniqueId"), "custom_data": c.get("customData"),
            **new_fields(c, _READ_CALL)}


def _crm(context: list[dict[str, Any]], kind: str) -> str | None:
    for system in context or []:
        for obj in system.get("objects") or []:
            if obj.get("objectType") == kind:
                return obj.get("objectId")
    return None


def flatten_extensive(c: dict[str, Any]) -> dict[str, Any]:
    meta = c.get("metaData") or {}
    content = c.get("content")
    interaction = c.get("interaction") or {}
    parties = c.get("parties") or []
    stats = {_STATS[s["name"]]: s.get("value") for s in interaction.get("interactionStats") or []
             if s.get("name") in _STATS}
    questions = interaction.get("questions") or {}
    outcome = (content or {}).get("callOutcome") or {}
    return {"id": meta.get("id"), "started": meta.get("started"), "title": meta.get("title"),
            "primary_user_id": meta.get("primaryUserId"), "analysis_ready": content is not None,
            "crm_account_id": _crm(c.get("context"), "Account"),
            "crm_opportunity_id": _crm(c.get("context"), "Opportunity"), "crm_context": c.get("context"),
            "parties": parties, "party_count": len(parties),
            "external_party_count": sum(1 for p in parties if p.get("affiliation") == "External"),
            "topics": [t.get("name") for t in (content or {}).get("topics") or []] if content is not None else None,
            "trackers": (content or {}).get("trackers"), "brief": (content or {}).get("brief"),
            "key_points": [k.get("text") for k in (content or {}).get("keyPoints") or []] if content else None,
            "call_outcome": outcome.get("name"), "speakers": interaction.get("speakers"),
            "questions_company": questions.get("companyCount"),
            "questions_non_company": questions.get("nonCompanyCount"), **stats,
            **new_fields(c, _READ_EXTENSIVE)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source(ctx: SourceContext) -> Any:
    """The dlt source of Gong calls, calls_extensive and users (see the module docstring)."""
    auth = HeaderAuth.basic(ctx.secret("access_key"), ctx.secret("access_key_secret"))
    session = ctx.session(auth=auth, policy=GongPolicy(),
                          rate_per_s=float(ctx.options.get("rate_per_s") or RATE_PER_S))
    client = RESTClient(base_url=ctx.url("v2"), session=session)
    lag_s = float(ctx.options.get("analysis_lag_hours", ANALYSIS_LAG_HOURS)) * 3600

    def window(cursor: Any) -> dict[str, str]:
        since = ctx.start_date if ctx.full_refresh or cursor.start_value is None else cursor.start_value
        return {"fromDateTime": _iso(since), "toDateTime": _iso(datetime.now(UTC) + timedelta(days=1))}

    def pages(path: str, key: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page: the cursor goes back as a query parameter on GET, in the body on POST."""
        paginator = (JSONResponseCursorPaginator(cursor_path="records.cursor", cursor_body_path="cursor") if body
                     else JSONResponseCursorPaginator(cursor_path="records.cursor", cursor_param="cursor"))
        for page in client.paginate(path, method="POST" if body else "GET", params=params, json=body,
                                    paginator=paginator, data_selector=key, hooks={"response": []}):
            yield list(page)

    @dlt.resource(**snapshot_hints(USERS))
    def users() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for page in pages("/users", "users"):
            yield from ctx.emit(USERS, unique([flatten_user(u) for u in page], USERS.primary_key, seen))

    @dlt.resource(**CALLS.hints())
    def calls(cursor: Any = incremental(CALLS, ctx.start_date, lag=lag_s)) -> Iterator[Any]:
        for page in pages("/calls", "calls", params=window(cursor)):
            yield from ctx.emit(CALLS, [flatten_call(c) for c in page])

    @dlt.resource(**CALLS_EXTENSIVE.hints())
    def calls_extensive(cursor: Any = incremental(CALLS_EXTENSIVE, ctx.start_date, lag=lag_s)) -> Iterator[Any]:
        body = {"filter": window(cursor), "contentSelector": CONTENT_SELECTOR}
        for page in pages("/calls/extensive", "calls", body=body):
            yield from ctx.emit(CALLS_EXTENSIVE, [flatten_extensive(c) for c in page])

    @dlt.source(name="gong", max_table_nesting=0)
    def gong() -> list[Any]:
        return [users, calls, calls_extensive]

    return gong()


register(Connector(
    name="gong", title="Gong", default_base_url="https://api.gong.io", credentials=("access_key", "access_key_secret"),
    streams=(USERS, CALLS, CALLS_EXTENSIVE), source=source,
    options={"rate_per_s": RATE_PER_S, "analysis_lag_hours": ANALYSIS_LAG_HOURS},
    docs="An API access key and secret (Company settings → Ecosystem → API; a technical administrator creates "
         "them), with the calls (basic and extensive) and users scopes. Requests are paced under Gong's 3/s; "
         "each sync re-reads analysis_lag_hours of calls so Gong's late analysis lands.",
))
