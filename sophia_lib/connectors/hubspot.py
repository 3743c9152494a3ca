"""HubSpot CRM v3: contacts, companies and deals (search), owners and deal pipelines (lists).

Wire format (VENDOR-APIS.md section 2):

* Auth: a private-app token (``private_app_token``, the default: ``auth: private_app``) or OAuth 2.0
  (``auth: oauth``: refresh-token grant at ``/oauth/v1/token``, id and secret in the form; access
  tokens live 30 minutes and are renewed ahead of ``expires_in`` — HubSpot warns that a 401 is not a
  reliable signal — and once on a 401 as a last resort).
* Changes: ``POST /crm/v3/objects/{type}/search`` with a ``GTE`` filter on the last-modified property
  (contacts ``lastmodifieddate``, companies and deals ``hs_lastmodifieddate``, epoch milliseconds),
  sorted ascending, ``limit`` 200, every property the portal defines (from
  ``GET /crm/v3/properties/{type}``). A search stops at 10,000 results (``search_cap``): before the
  next page would pass it, the window moves forward — a new search with ``GTE`` = the last
  modified value seen (the records of that millisecond come again; the merge removes them).
* Deletes: archived records are never in search; ``GET /crm/v3/objects/{type}?archived=true`` lists
  them (``archivedAt``) and those archived since the cursor become tombstones. The list has no time
  filter, so it is read whole each sync (it pages by 100).
* Lag: the search index trails writes by seconds; each run re-reads ``LAG_S`` (5 min) before the
  cursor.
* Owners (``/crm/v3/owners``) and deal pipelines (``/crm/v3/pipelines/deals``, one row per stage)
  are small, complete lists: replaced whole every sync. Archived (deactivated) owners are kept with
  ``archived = true``, because old deals still name them.
* Throttling: **429** with ``policyName``: ``TEN_SECONDLY_ROLLING`` / ``SECONDLY`` are retried with
  backoff; ``DAILY`` means the portal's daily quota is spent (it resets at midnight, account time),
  so the sync stops at once with that message. Search is paced ahead of time (``search_rate_per_s``,
  default 4: HubSpot's search limit is about 4–5 requests a second per portal).

Property values arrive as strings; declared columns (amounts, dates, flags) are typed on the way in.
The cursor column is ``updated_at`` (the record's ``updatedAt``, equal to its last-modified property).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
import pandas as pd
import requests
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth, OAuth2RefreshAuth
from sophia_lib.connectors._http import Auth, Signal, ThrottlePolicy, VendorSession, Verdict, body_json
from sophia_lib.connectors.errors import SourceConfigError, SourceError
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, TColumnType, incremental

NAME = "hubspot"
LAG_S = 300.0
REFERENCE_START = datetime(2000, 1, 1, tzinfo=UTC)
SEARCH_LIMIT = 200
LIST_LIMIT = 100
DAILY_WAIT_S = 3600.0
"""Wait asked for on a DAILY 429: longer than any sync's retry budget, so the sync stops at once."""
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate"}
DEFAULTS: dict[str, Any] = {"auth": "private_app", "client_id": "", "search_cap": 10_000, "search_rate_per_s": 4.0}
"""Options. ``auth``: ``private_app`` (token) or ``oauth`` (client id + secret + refresh token)."""
_naming = NamingConvention()

_COMMON: dict[str, TColumnType] = {"id": "text", "created_at": "timestamp", "updated_at": "timestamp",
                                   "archived": "bool", "archived_at": "timestamp", "createdate": "timestamp",
                                   "hs_object_id": "text", "hubspot_owner_id": "text"}


def _object(name: str, columns: dict[str, TColumnType], description: str) -> Stream:
    return Stream(name=name, primary_key=("id",), cursor="updated_at", required=("id",),
                  columns={**_COMMON, MODIFIED[name]: "timestamp", **columns}, description=description)


STREAMS: tuple[Stream, ...] = (
    _object("contacts", {"email": "text", "firstname": "text", "lastname": "text", "phone": "text",
                         "jobtitle": "text", "associatedcompanyid": "text", "lifecyclestage": "text"},
            "Contacts (people), duplicates as HubSpot keeps them"),
    _object("companies", {"name": "text", "domain": "text", "industry": "text", "numberofemployees": "bigint",
                          "annualrevenue": "double", "country": "text", "lifecyclestage": "text"}, "Companies"),
    _object("deals", {"dealname": "text", "amount": "double", "dealstage": "text", "pipeline": "text",
                      "closedate": "timestamp", "dealtype": "text", "hs_is_closed": "bool", "hs_is_closed_won": "bool",
                      "hs_deal_stage_probability": "double", "hs_salesforceopportunityid": "text"}, "Deals"),
    Stream("owners", ("id",), None, ("id",), {
        "id": "text", "email": "text", "first_name": "text", "last_name": "text", "user_id": "text",
        "archived": "bool", "created_at": "timestamp", "updated_at": "timestamp", "teams": "json"},
        "Owners (users who can own records); archived = deactivated"),
    Stream("pipelines", ("pipeline_id", "stage_id"), None, ("pipeline_id", "stage_id"), {
        "pipeline_id": "text", "pipeline_label": "text", "pipeline_display_order": "bigint", "stage_id": "text",
        "stage_label": "text", "stage_display_order": "bigint", "probability": "double", "is_closed": "bool",
        "archived": "bool", "created_at": "timestamp", "updated_at": "timestamp"},
        "Deal pipelines, one row per stage"),
)


class HubSpotPolicy(ThrottlePolicy):
    """HubSpot's 429 names its policy; a spent DAILY quota is not worth retrying within a sync."""

    def classify(self, response: requests.Response) -> Verdict:
        if response.status_code == 429:
            data = body_json(response)
            policy = str(data.get("policyName", "")).upper() if isinstance(data, dict) else ""
            message = self.message(response)
            if policy == "DAILY" or response.headers.get("X-HubSpot-RateLimit-Daily-Remaining") == "0":
                return Verdict(Signal.THROTTLE, f"{message} (daily API quota spent; it resets at midnight, "
                                                "account time)", DAILY_WAIT_S)
            return Verdict(Signal.THROTTLE, message)
        return super().classify(response)

    def message(self, response: requests.Response) -> str:
        text = super().message(response)
        data = body_json(response)
        if isinstance(data, dict) and data.get("correlationId"):
            text += f" [correlationId {data['correlationId']}]"
        return text


def _auth(ctx: SourceContext, options: dict[str, Any]) -> Auth:
    mode = str(options["auth"])
    if mode == "private_app":
        return HeaderAuth.bearer(ctx.secret("private_app_token"))
    if mode == "oauth":
        client_id = options["client_id"]
        if not client_id:
            raise SourceConfigError(NAME, "auth is oauth but option client_id is not set",
                                    fix="set sources.hubspot.options.client_id (the public app's client id)")
        return OAuth2RefreshAuth(NAME, ctx.url("/oauth/v1/token"), str(client_id), ctx.secret("client_secret"),
                                 ctx.secret("refresh_token"), client_auth="post",
                                 on_rotate=lambda token: ctx.save_secret("refresh_token", token),
                                 default_expires_in=1800.0)
    raise SourceConfigError(NAME, f"option auth is {mode!r}; valid: private_app, oauth",
                            fix="set sources.hubspot.options.auth to private_app (token) or oauth (refresh token)")


def epoch_ms(value: Any) -> str:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return str(int(stamp.timestamp() * 1000))


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """A CRM record → one flat row: its properties plus id, createdAt, updatedAt, archived, archivedAt
    (and any other top-level value HubSpot adds); associations are left to their own streams."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("properties", "associations", "propertiesWithHistory"):
            continue
        row[_naming.normalize_identifier(key)] = value
    for key, value in (record.get("properties") or {}).items():
        name = _naming.normalize_identifier(key)
        if name not in row:
            row[name] = value
    return row


class Portal:
    """One HubSpot portal: property lists, windowed search, paged lists."""

    def __init__(self, base_url: str, search: VendorSession, lists: VendorSession, cap: int) -> None:
        self.search_session = search
        self.client = RESTClient(base_url=base_url, session=lists,
                                 paginator=JSONResponseCursorPaginator(cursor_path="paging.next.after",
                                                                       cursor_param="after"))
        self.base_url = base_url.rstrip("/")
        self.cap = cap

    def properties(self, kind: str) -> list[str]:
        pages = self.client.paginate(f"/crm/v3/properties/{kind}", data_selector="results")
        return sorted({p["name"] for page in pages for p in page if not p.get("archived")})

    def search(self, kind: str, properties: list[str], since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Pages of records modified at or after ``since``, oldest first, in windows under the cap."""
        prop = MODIFIED[kind]
        low = epoch_ms(since) if since is not None else "0"
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": low}]}],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": properties, "limit": SEARCH_LIMIT, "after": "0"}
            while True:
                data = self.search_session.post(f"{self.base_url}/crm/v3/objects/{kind}/search", json=body).json()
                results = data.get("results") or []
                yield results
                after = ((data.get("paging") or {}).get("next") or {}).get("after")
                if not after or not results:
                    return
                if int(after) + SEARCH_LIMIT > self.cap:
                    break
                body["after"] = str(after)
            last = (results[-1].get("properties") or {}).get(prop) or results[-1].get("updatedAt")
            moved = epoch_ms(pd.Timestamp(last) if not str(last).isdigit() else pd.Timestamp(int(last), unit="ms"))
            if moved == low:
                raise SourceError(NAME, f"more than {self.cap} {kind} share the modified time {last}; the search "
                                        "window cannot move past them")
            low = moved

    def archived(self, kind: str) -> Iterator[list[dict[str, Any]]]:
        params = {"archived": "true", "limit": LIST_LIMIT, "properties": MODIFIED[kind]}
        yield from self.client.paginate(f"/crm/v3/objects/{kind}", params=params, data_selector="results")

    def owners(self, archived: bool) -> Iterator[list[dict[str, Any]]]:
        params = {"archived": str(archived).lower(), "limit": LIST_LIMIT}
        yield from self.client.paginate("/crm/v3/owners/", params=params, data_selector="results")

    def pipelines(self, kind: str = "deals") -> list[dict[str, Any]]:
        return self.client.get(f"/crm/v3/pipelines/{kind}").json().get("results") or []


def _owner(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record.get("id"), "email": record.get("email"), "first_name": record.get("firstName"),
            "last_name": record.get("lastName"),
            "user_id": record.get("userIdIncludingInactive") or record.get("userId"),
            "type": record.get("type"), "archived": bool(record.get("archived")),
            "created_at": record.get("createdAt"), "updated_at": record.get("updatedAt"),
            "teams": record.get("teams") or []}


def _stages(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for stage in pipeline.get("stages") or []:
        meta = stage.get("metadata") or {}
        rows.append({"pipeline_id": pipeline.get("id"), "pipeline_label": pipeline.get("label"),
                     "pipeline_display_order": pipeline.get("displayOrder"), "stage_id": stage.get("id"),
                     "stage_label": stage.get("label"), "stage_display_order": stage.get("displayOrder"),
                     "probability": meta.get("probability"), "is_closed": meta.get("isClosed"),
                     "archived": bool(stage.get("archived")), "created_at": stage.get("createdAt"),
                     "updated_at": stage.get("updatedAt")})
    return rows


def source(ctx: SourceContext) -> Any:
    """The dlt source: search-based CRM objects merged on ``id``; owners and pipelines replaced."""
    options = {**DEFAULTS, **ctx.options}
    auth = _auth(ctx, options)
    policy = HubSpotPolicy()
    portal = Portal(ctx.base_url,
                    ctx.session(auth=auth, policy=policy, rate_per_s=float(options["search_rate_per_s"])),
                    ctx.session(auth=auth, policy=policy, rate_per_s=options.get("rate_per_s")),
                    int(options["search_cap"]))

    def crm(stream: Stream) -> Any:
        kind = stream.name

        @dlt.resource(**stream.hints())
        def read(cursor: Any = incremental(stream, REFERENCE_START, lag=LAG_S)) -> Iterator[Any]:
            since = None if ctx.full_refresh else cursor.start_value
            properties = portal.properties(kind)
            for results in portal.search(kind, properties, since):
                yield from ctx.emit(stream, [flatten(r) for r in results])
            floor = pd.Timestamp(since) if since is not None else None
            for results in portal.archived(kind):
                rows = []
                for record in results:
                    row = flatten(record)
                    stamps = [pd.Timestamp(s) for s in (row.get("updated_at"), row.get("archived_at")) if s]
                    if not stamps:
                        continue
                    row["updated_at"] = max(stamps)  # the tombstone's cursor: when it was archived
                    if floor is None or row["updated_at"] >= floor:
                        rows.append(row)
                yield from ctx.emit(stream, rows, deleted=lambda row: True)

        return read

    owners_stream, pipelines_stream = STREAMS[3], STREAMS[4]

    @dlt.resource(**{**owners_stream.hints(), "write_disposition": "replace"})
    def owners() -> Iterator[Any]:
        for archived in (False, True):
            for page in portal.owners(archived):
                yield from ctx.emit(owners_stream, [_owner(r) for r in page])

    @dlt.resource(**{**pipelines_stream.hints(), "write_disposition": "replace"})
    def pipelines() -> Iterator[Any]:
        yield from ctx.emit(pipelines_stream, [row for p in portal.pipelines("deals") for row in _stages(p)])

    @dlt.source(name=NAME)
    def hubspot() -> list[Any]:
        return [crm(stream) for stream in STREAMS[:3]] + [owners, pipelines]

    return hubspot()


register(Connector(
    name=NAME,
    title="HubSpot",
    default_base_url="https://api.hubapi.com",
    credentials=("private_app_token", "client_secret", "refresh_token"),
    options=DEFAULTS,
    streams=STREAMS,
    source=source,
    docs=__doc__ or "",
))
