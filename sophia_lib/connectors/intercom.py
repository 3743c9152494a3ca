"""Intercom (REST API 2.x): contacts, conversations, companies and admins.

Wire (VENDOR-APIS.md §5): ``https://api.intercom.io`` (EU/AU hosts via ``base_url``), a static
``Authorization: Bearer <access token>`` (Intercom tokens never expire and have no refresh token) and a
pinned ``Intercom-Version`` header (option ``intercom_version``, default 2.11), ``Accept: application/json``.

* contacts, conversations: ``POST /contacts/search`` and ``POST /conversations/search`` with
  ``updated_at > cursor − lag`` (Unix seconds), sorted by ``updated_at`` ascending, 150 a page, following
  ``pages.next.starting_after`` into ``pagination.starting_after``. :data:`LAG_S` re-reads a few minutes
  because the search index trails writes; the merge on ``id`` removes the overlap.
* companies (``GET /companies/scroll``, until a page comes back empty) and admins (``GET /admins``) are read
  in full each sync and **replaced**: deleted ones simply disappear.
* Deletes: Intercom has no delete feed (a deleted contact vanishes from lists and search; a GET answers 404).
  Reconciliation choice: every ``reconcile_every_hours`` (default 24, wall clock, kept in the resource's
  dlt state) one sync re-reads contacts and conversations in full and **replaces** those tables; between
  reconciliations a record deleted at Intercom can remain in the raw table.
* Throttling: 429 with ``X-RateLimit-Reset`` (a Unix time; the limit is spread over 10-second windows): the
  session waits until the reset (at most ``max_throttle_wait_s``). Errors are ``{"type": "error.list",
  "errors": [{"code", "message"}]}``; 401 ``unauthorized`` means a wrong or revoked token.
"""

from __future__ import annotations

import time
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
from sophia_lib.connectors._streams import Reconciliation, new_fields, snapshot_hints, unique
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, incremental

VERSION = "2.11"
PAGE_SIZE = 150
LAG_S = 300.0
RECONCILE_EVERY_HOURS = 24.0
MAX_THROTTLE_WAIT_S = 10.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ADMINS = Stream(
    "admins", ("id",), required=("name",),
    columns={"id": "text", "name": "text", "email": "text", "job_title": "text", "away_mode_enabled": "bool",
             "has_inbox_seat": "bool", "team_ids": "json"},
    description="Teammates (admins) of the workspace")
COMPANIES = Stream(
    "companies", ("id",), required=("name",),
    columns={"id": "text", "company_id": "text", "name": "text", "website": "text", "industry": "text",
             "size": "bigint", "user_count": "bigint", "session_count": "bigint", "monthly_spend": "double",
             "created_at": "timestamp", "updated_at": "timestamp", "remote_created_at": "timestamp",
             "last_request_at": "timestamp", "custom_attributes": "json", "tags": "json", "segments": "json"},
    description="Companies (Intercom's accounts)")
CONTACTS = Stream(
    "contacts", ("id",), cursor="updated_at", required=("role", "created_at"),
    columns={"id": "text", "role": "text", "external_id": "text", "email": "text", "email_domain": "text",
             "name": "text", "phone": "text", "owner_id": "text", "company_ids": "json", "created_at": "timestamp",
             "updated_at": "timestamp", "signed_up_at": "timestamp", "last_seen_at": "timestamp",
             "last_replied_at": "timestamp", "last_contacted_at": "timestamp", "country": "text", "city": "text",
             "unsubscribed_from_emails": "bool", "has_hard_bounced": "bool", "custom_attributes": "json",
             "tag_names": "json"},
    description="Users and leads")
CONVERSATIONS = Stream(
    "conversations", ("id",), cursor="updated_at", required=("created_at",),
    columns={"id": "text", "title": "text", "state": "text", "open": "bool", "read": "bool", "priority": "text",
             "created_at": "timestamp", "updated_at": "timestamp", "waiting_since": "timestamp",
             "snoozed_until": "timestamp", "admin_assignee_id": "text", "team_assignee_id": "text",
             "company_id": "text", "contact_ids": "json", "source_type": "text", "source_delivered_as": "text",
             "source_author_type": "text", "source_author_id": "text", "tag_names": "json", "rating": "bigint",
             "rating_remark": "text", "time_to_assignment": "bigint", "time_to_admin_reply": "bigint",
             "time_to_first_close": "bigint", "median_time_to_reply": "bigint",
             "first_admin_reply_at": "timestamp", "last_close_at": "timestamp", "count_reopens": "bigint",
             "count_conversation_parts": "bigint"},
    description="Support conversations with their SLA statistics (parts are not read: one GET each)")

_READ = {
    "admins": frozenset({"type", "id", "name", "email", "job_title", "away_mode_enabled", "away_mode_reassign",
                         "has_inbox_seat", "team_ids", "avatar", "team_priority_level"}),
    "companies": frozenset({"type", "id", "company_id", "name", "website", "industry", "size", "user_count",
                            "session_count", "monthly_spend", "created_at", "updated_at", "remote_created_at",
                            "last_request_at", "custom_attributes", "tags", "segments", "app_id", "plan"}),
    "contacts": frozenset({"type", "id", "workspace_id", "role", "external_id", "email", "email_domain", "name",
                           "phone", "owner_id", "companies", "created_at", "updated_at", "signed_up_at",
                           "last_seen_at", "last_replied_at", "last_contacted_at", "last_email_opened_at",
                           "last_email_clicked_at", "location", "unsubscribed_from_emails", "has_hard_bounced",
                           "marked_email_as_spam", "custom_attributes", "tags", "notes", "language_override",
                           "browser", "browser_version", "browser_language", "os", "avatar", "social_profiles",
                           "android_app_name", "ios_app_name", "formatted_phone", "opted_out_subscription_types",
                           "opted_in_subscription_types", "utm_campaign", "referrer", "sms_consent"}),
    "conversations": frozenset({"type", "id", "title", "state", "open", "read", "priority", "created_at",
                                "updated_at", "waiting_since", "snoozed_until", "admin_assignee_id",
                                "team_assignee_id", "company", "contacts", "source", "tags", "conversation_rating",
                                "statistics", "teammates", "custom_attributes", "first_contact_reply", "sla_applied",
                                "linked_objects", "ai_agent_participated", "ai_agent", "topics",
                                "conversation_parts"}),
}


class IntercomPolicy(ThrottlePolicy):
    """Intercom's 429 names the end of its 10-second window in ``X-RateLimit-Reset`` (no Retry-After)."""

    def __init__(self, max_wait_s: float = MAX_THROTTLE_WAIT_S) -> None:
        self.max_wait_s = max_wait_s

    def classify(self, response: requests.Response) -> Verdict:
        verdict = super().classify(response)
        if verdict.signal is Signal.THROTTLE and verdict.retry_after is None:
            reset = response.headers.get("X-RateLimit-Reset")
            if reset and reset.isdigit():
                wait = min(max(int(reset) - time.time(), 0.0), self.max_wait_s)
                return Verdict(Signal.THROTTLE, verdict.message, wait)
        return verdict


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _names(items: Any) -> list[str]:
    return [t.get("name") for t in items or [] if isinstance(t, dict)]


def flatten_admin(a: dict[str, Any]) -> dict[str, Any]:
    return {"id": _id(a.get("id")), "name": a.get("name"), "email": a.get("email"), "job_title": a.get("job_title"),
            "away_mode_enabled": a.get("away_mode_enabled"), "has_inbox_seat": a.get("has_inbox_seat"),
            "team_ids": a.get("team_ids"), **new_fields(a, _READ["admins"])}


def flatten_company(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": _id(c.get("id")), "company_id": c.get("company_id"), "name": c.get("name"),
            "website": c.get("website"), "industry": c.get("industry"), "size": c.get("size"),
            "user_count": c.get("user_count"), "session_count": c.get("session_count"),
            "monthly_spend": c.get("monthly_spend"), "created_at": c.get("created_at"),
            "updated_at": c.get("updated_at"), "remote_created_at": c.get("remote_created_at"),
            "last_request_at": c.get("last_request_at"), "custom_attributes": c.get("custom_attributes"),
            "tags": _names((c.get("tags") or {}).get("tags")),
            "segments": _names((c.get("segments") or {}).get("segments")), **new_fields(c, _READ["companies"])}


def flatten_contact(c: dict[str, Any]) -> dict[str, Any]:
    location = c.get("location") or {}
    return {"id": _id(c.get("id")), "role": c.get("role"), "external_id": c.get("external_id"),
            "email": c.get("email") or None, "email_domain": c.get("email_domain") or None, "name": c.get("name"),
            "phone": c.get("phone"), "owner_id": _id(c.get("owner_id")),
            "company_ids": [x.get("id") for x in (c.get("companies") or {}).get("data") or []],
            "created_at": c.get("created_at"), "updated_at": c.get("updated_at"),
            "signed_up_at": c.get("signed_up_at"), "last_seen_at": c.get("last_seen_at"),
            "last_replied_at": c.get("last_replied_at"), "last_contacted_at": c.get("last_contacted_at"),
            "country": location.get("country"), "city": location.get("city"),
            "unsubscribed_from_emails": c.get("unsubscribed_from_emails"),
            "has_hard_bounced": c.get("has_hard_bounced"), "custom_attributes": c.get("custom_attributes"),
            "tag_names": _names((c.get("tags") or {}).get("data")), **new_fields(c, _READ["contacts"])}


def flatten_conversation(c: dict[str, Any]) -> dict[str, Any]:
    source = c.get("source") or {}
    author = source.get("author") or {}
    rating = c.get("conversation_rating") or {}
    stats = c.get("statistics") or {}
    return {"id": _id(c.get("id")), "title": c.get("title"), "state": c.get("state"), "open": c.get("open"),
            "read": c.get("read"), "priority": c.get("priority"), "created_at": c.get("created_at"),
            "updated_at": c.get("updated_at"), "waiting_since": c.get("waiting_since"),
            "snoozed_until": c.get("snoozed_until"), "admin_assignee_id": _id(c.get("admin_assignee_id")),
            "team_assignee_id": _id(c.get("team_assignee_id")), "company_id": _id((c.get("company") or {}).get("id")),
            "contact_ids": [x.get("id") for x in (c.get("contacts") or {}).get("contacts") or []],
            "source_type": source.get("type"), "source_delivered_as": source.get("delivered_as"),
            "source_author_type": author.get("type"), "source_author_id": _id(author.get("id")),
            "tag_names": _names((c.get("tags") or {}).get("tags")), "rating": rating.get("rating"),
            "rating_remark": rating.get("remark"), "time_to_assignment": stats.get("time_to_assignment"),
            "time_to_admin_reply": stats.get("time_to_admin_reply"),
            "time_to_first_close": stats.get("time_to_first_close"),
            "median_time_to_reply": stats.get("median_time_to_reply"),
            "first_admin_reply_at": stats.get("first_admin_reply_at"), "last_close_at": stats.get("last_close_at"),
            "count_reopens": stats.get("count_reopens"),
            "count_conversation_parts": stats.get("count_conversation_parts"),
            **new_fields(c, _READ["conversations"])}


def source(ctx: SourceContext) -> Any:
    """The dlt source of Intercom contacts, conversations, companies and admins (see the module docstring)."""
    policy = IntercomPolicy(float(ctx.options.get("max_throttle_wait_s") or MAX_THROTTLE_WAIT_S))
    session = ctx.session(auth=HeaderAuth.bearer(ctx.secret("access_token")), policy=policy,
                          rate_per_s=ctx.options.get("rate_per_s"))
    session.headers.update({"Intercom-Version": str(ctx.options.get("intercom_version") or VERSION),
                            "Accept": "application/json"})
    client = RESTClient(base_url=ctx.base_url, session=session)
    per_page = int(ctx.options.get("page_size") or PAGE_SIZE)
    reconcile_s = float(ctx.options.get("reconcile_every_hours", RECONCILE_EVERY_HOURS)) * 3600

    def search(kind: str, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """``POST /<kind>/search`` for records updated after ``since`` (everything when None), oldest first."""
        after = int(since.timestamp()) if since is not None else 0
        body = {"query": {"field": "updated_at", "operator": ">", "value": after},
                "sort": {"field": "updated_at", "order": "ascending"}, "pagination": {"per_page": per_page}}
        paginator = JSONResponseCursorPaginator(cursor_path="pages.next.starting_after",
                                                cursor_body_path="pagination.starting_after")
        for page in client.paginate(f"/{kind}/search", method="POST", json=body, paginator=paginator,
                                    data_selector="data" if kind == "contacts" else kind, hooks={"response": []}):
            yield list(page)

    def searched(stream: Stream, flatten: Any, cursor: Any) -> Iterator[Any]:
        rec = Reconciliation(cursor, stream, reconcile_s, ctx.full_refresh)
        since = None if rec.due or cursor.start_value in (None, EPOCH) else cursor.start_value
        for page in search(stream.name, since):
            yield from rec.tables(ctx.emit(stream, rec.rows([flatten(r) for r in page])))
        rec.done()

    @dlt.resource(**snapshot_hints(ADMINS))
    def admins() -> Iterator[Any]:
        answer = client.get("/admins").json()
        yield from ctx.emit(ADMINS, unique([flatten_admin(a) for a in answer.get("admins") or []],
                                           ADMINS.primary_key, set()))

    @dlt.resource(**snapshot_hints(COMPANIES))
    def companies() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        paginator = JSONResponseCursorPaginator(cursor_path="scroll_param", cursor_param="scroll_param",
                                                stop_after_empty_page=True)
        for page in client.paginate("/companies/scroll", paginator=paginator, data_selector="data",
                                    hooks={"response": []}):
            yield from ctx.emit(COMPANIES, unique([flatten_company(c) for c in page], COMPANIES.primary_key, seen))

    @dlt.resource(**CONTACTS.hints())
    def contacts(cursor: Any = incremental(CONTACTS, EPOCH, lag=LAG_S)) -> Iterator[Any]:
        yield from searched(CONTACTS, flatten_contact, cursor)

    @dlt.resource(**CONVERSATIONS.hints())
    def conversations(cursor: Any = incremental(CONVERSATIONS, EPOCH, lag=LAG_S)) -> Iterator[Any]:
        yield from searched(CONVERSATIONS, flatten_conversation, cursor)

    @dlt.source(name="intercom", max_table_nesting=0)
    def intercom() -> list[Any]:
        return [admins, companies, contacts, conversations]

    return intercom()


register(Connector(
    name="intercom", title="Intercom", default_base_url="https://api.intercom.io", credentials=("access_token",),
    streams=(ADMINS, COMPANIES, CONTACTS, CONVERSATIONS), source=source,
    options={"intercom_version": VERSION, "page_size": PAGE_SIZE, "reconcile_every_hours": RECONCILE_EVERY_HOURS,
             "max_throttle_wait_s": MAX_THROTTLE_WAIT_S, "rate_per_s": None},
    docs="The access token of a private Intercom app (Developer Hub → your app → Authentication) with read "
         "scopes for users/companies/conversations/admins; EU and AU workspaces set base_url to "
         "https://api.eu.intercom.io or https://api.au.intercom.io. Contacts and conversations are searched by "
         "updated_at; every reconcile_every_hours one sync re-reads them in full to drop deleted records.",
))
