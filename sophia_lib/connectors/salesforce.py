"""Salesforce: accounts, contacts, opportunities (+ stage history), users, tasks and events over SOQL.

Wire format (VENDOR-APIS.md section 1):

* Auth: OAuth2 refresh-token grant at ``{base_url}/services/oauth2/token`` (client id and secret in
  the form). The token answer has **no** ``expires_in`` (the session lasts the org's timeout, often
  2 h): the token is renewed after ``session_s`` (option, default 3600) and once on a 401
  ``INVALID_SESSION_ID``. Data calls go to the ``instance_url`` of the token answer, not to the
  login host. A rotated refresh token is saved back at once.
* Each object: ``describe`` gives the fields this user may read (custom fields included), which
  become the ``SELECT`` list; one ``queryAll`` per object then returns the live rows **and** the
  deleted ones (``IsDeleted = true``, kept about 15 days in the recycle bin), so deletes arrive in
  the same ordered read as the changes — no second query, and no race between two snapshots.
  ``User`` has no ``IsDeleted`` (users are deactivated, never deleted; ``is_active`` says so) and
  is read with ``query``.
* Incremental: ``WHERE SystemModstamp >= <cursor − lag> ORDER BY SystemModstamp, Id``, datetime
  literal unquoted and in UTC. ``SystemModstamp`` is indexed and also moves on system-driven
  changes (unlike ``LastModifiedDate``). The lag (``LAG_S``, 5 min) re-reads changes committed by
  long transactions with an earlier stamp; the merge on ``id`` removes the repeats.
* Paging: ``done`` / ``nextRecordsUrl`` (relative to the instance), page size asked with
  ``Sforce-Query-Options: batchSize=N``. A query locator that expired (``INVALID_QUERY_LOCATOR``)
  restarts the read from the last ``SystemModstamp`` seen, so a long sync never starts over.
* Throttling: **403** ``REQUEST_LIMIT_EXCEEDED`` (no ``Retry-After``) is a throttle, backed off and
  retried; the error envelope is a JSON array ``[{message, errorCode}]``.

Columns are the API names in snake_case (``SystemModstamp`` → ``system_modstamp``, custom
``Segment__c`` → ``segment_c``, as dlt would name them). ``Task``, ``Event`` and
``OpportunityHistory`` start at the sync's ``start_date``; the other objects are reference data and
are read whole on the first sync (an account untouched since 2019 still owns this year's deals).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
import pandas as pd
import requests
from dlt.common.normalizers.naming.snake_case import NamingConvention

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import OAuth2RefreshAuth
from sophia_lib.connectors._http import Signal, ThrottlePolicy, VendorSession, Verdict, body_json
from sophia_lib.connectors.errors import SourceConfigError, SourceRequestError
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, TColumnType, incremental

NAME = "salesforce"
LAG_S = 300.0
REFERENCE_START = datetime(2000, 1, 1, tzinfo=UTC)
"""Where reference objects (accounts, users …) start on a first sync: everything."""
SKIPPED_TYPES = {"address", "location", "base64"}
"""Compound and binary fields: their parts are selected on their own (BillingCity …), blobs never."""
_naming = NamingConvention()

_STAMPS: dict[str, TColumnType] = {"created_date": "timestamp", "last_modified_date": "timestamp",
                                   "system_modstamp": "timestamp", "is_deleted": "bool"}


def _stream(name: str, sobject: str, columns: dict[str, TColumnType], required: tuple[str, ...] = (),
            description: str = "") -> Stream:
    return Stream(name=name, primary_key=("id",), cursor="system_modstamp", required=("id", *required),
                  columns={"id": "text", **columns, **_STAMPS}, description=description or f"Salesforce {sobject}")


STREAMS: tuple[Stream, ...] = (
    _stream("account", "Account", {
        "name": "text", "type": "text", "industry": "text", "website": "text", "billing_country": "text",
        "number_of_employees": "bigint", "annual_revenue": "double", "owner_id": "text"}, ("name",)),
    _stream("contact", "Contact", {
        "account_id": "text", "first_name": "text", "last_name": "text", "name": "text", "email": "text",
        "phone": "text", "title": "text", "owner_id": "text"}),
    _stream("opportunity", "Opportunity", {
        "account_id": "text", "name": "text", "type": "text", "amount": "double", "stage_name": "text",
        "probability": "double", "expected_revenue": "double", "close_date": "date", "is_closed": "bool",
        "is_won": "bool", "forecast_category": "text", "owner_id": "text"}, ("stage_name",)),
    _stream("opportunity_history", "OpportunityHistory", {
        "opportunity_id": "text", "stage_name": "text", "amount": "double", "expected_revenue": "double",
        "close_date": "date", "probability": "double", "created_by_id": "text"}, ("opportunity_id",),
        "Every stage, amount and close-date change of an opportunity"),
    _stream("user", "User", {
        "username": "text", "email": "text", "name": "text", "title": "text", "department": "text",
        "is_active": "bool", "manager_id": "text"}),
    _stream("task", "Task", {
        "subject": "text", "status": "text", "activity_date": "date", "who_id": "text", "what_id": "text",
        "account_id": "text", "owner_id": "text", "is_closed": "bool", "completed_date_time": "timestamp"}),
    _stream("event", "Event", {
        "subject": "text", "start_date_time": "timestamp", "end_date_time": "timestamp", "activity_date": "date",
        "duration_in_minutes": "bigint", "who_id": "text", "what_id": "text", "account_id": "text",
        "owner_id": "text"}),
)
SOBJECTS = {"account": "Account", "contact": "Contact", "opportunity": "Opportunity",
            "opportunity_history": "OpportunityHistory", "user": "User", "task": "Task", "event": "Event"}
HISTORY = {"opportunity_history", "task", "event"}
"""Streams that start at the sync's ``start_date``; the rest are read whole on the first sync."""
DEFAULTS: dict[str, Any] = {"client_id": "", "api_version": "62.0", "batch_size": 2000, "session_s": 3600}
"""Options. ``batch_size``: records per page asked for (200–2000; Salesforce may send fewer)."""


class SalesforcePolicy(ThrottlePolicy):
    """Salesforce says "slow down" with a 403 ``REQUEST_LIMIT_EXCEEDED`` and no ``Retry-After``."""

    def classify(self, response: requests.Response) -> Verdict:
        if response.status_code == 403 and _error_code(response) == "REQUEST_LIMIT_EXCEEDED":
            return Verdict(Signal.THROTTLE, self.message(response))
        return super().classify(response)


def _error_code(response: requests.Response) -> str | None:
    data = body_json(response)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0].get("errorCode")
    return None


def soql_datetime(value: Any) -> str:
    """A SOQL datetime literal: UTC, whole seconds (floored, so the window only grows), unquoted."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s").strftime("%Y-%m-%dT%H:%M:%SZ")


class Org:
    """One Salesforce org reached through its ``instance_url``: describe and SOQL reads."""

    def __init__(self, base_url: str, options: dict[str, Any], session: VendorSession, auth: OAuth2RefreshAuth
                 ) -> None:
        self.session = session
        self.auth = auth
        self.fallback_url = base_url
        self.version = str(options["api_version"]).removeprefix("v")
        self.batch_size = int(options["batch_size"])

    @property
    def instance(self) -> str:
        self.auth.refresh()  # no-op while the token is fresh; the first call learns instance_url
        return str(self.auth.token_response.get("instance_url") or self.fallback_url).rstrip("/")

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"}
        return self.session.get(self.instance + path, params=params, headers=headers).json()

    def fields(self, sobject: str) -> list[str]:
        """Readable fields of an object, in describe order, compound and binary fields left out."""
        describe = self.get(f"/services/data/v{self.version}/sobjects/{sobject}/describe")
        return [f["name"] for f in describe["fields"] if f.get("type") not in SKIPPED_TYPES]

    def read(self, sobject: str, fields: list[str], since: datetime | None, include_deleted: bool
             ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records changed since ``since`` (all when None), oldest first."""
        endpoint = f"/services/data/v{self.version}/{'queryAll' if include_deleted else 'query'}"
        stalled = 0
        while True:
            where = f" WHERE SystemModstamp >= {soql_datetime(since)}" if since is not None else ""
            soql = f"SELECT {', '.join(fields)} FROM {sobject}{where} ORDER BY SystemModstamp ASC, Id ASC"
            data = self.get(endpoint, {"q": soql})
            try:
                while True:
                    records = data.get("records") or []
                    if records and records[-1].get("SystemModstamp"):
                        moved = pd.Timestamp(records[-1]["SystemModstamp"]).floor("s")
                        stalled = 0 if since is None or moved > pd.Timestamp(since).floor("s") else stalled
                        since = moved
                    yield records
                    if data.get("done", True) or not data.get("nextRecordsUrl"):
                        return
                    data = self.get(data["nextRecordsUrl"])
            except SourceRequestError as exc:
                stalled += 1
                if "INVALID_QUERY_LOCATOR" not in str(exc) or stalled > 2:
                    raise
                # the query locator expired between pages: query again from the last stamp seen (the
                # merge removes the records read twice)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """API names → snake_case columns; relationship records (none selected by default) → JSON text. Any
    other nested value is left for :func:`emit` to judge against the declared type."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "attributes" in value:
            value = json.dumps({k: v for k, v in value.items() if k != "attributes"}, default=str)
        out[_naming.normalize_identifier(key)] = value
    return out


def source(ctx: SourceContext) -> Any:
    """The dlt source: one resource per object, merged on ``id``, cursor ``system_modstamp``."""
    options = {**DEFAULTS, **ctx.options}
    client_id = options["client_id"]
    if not client_id:
        raise SourceConfigError(NAME, "option client_id (the connected app's consumer key) is not set",
                                fix="set sources.salesforce.options.client_id in sophia.yaml")
    auth = OAuth2RefreshAuth(NAME, ctx.url("/services/oauth2/token"), str(client_id), ctx.secret("client_secret"),
                             ctx.secret("refresh_token"), client_auth="post",
                             on_rotate=lambda token: ctx.save_secret("refresh_token", token),
                             default_expires_in=float(options["session_s"]))
    session = ctx.session(auth=auth, policy=SalesforcePolicy(), rate_per_s=options.get("rate_per_s"))
    org = Org(ctx.base_url, options, session, auth)

    def resource(stream: Stream) -> Any:
        sobject = SOBJECTS[stream.name]
        initial = ctx.start_date if stream.name in HISTORY else REFERENCE_START

        @dlt.resource(**stream.hints())
        def read(cursor: Any = incremental(stream, initial, lag=LAG_S)) -> Iterator[Any]:
            since = initial if ctx.full_refresh else cursor.start_value
            fields = org.fields(sobject)
            deletable = "IsDeleted" in fields
            for records in org.read(sobject, fields, since, include_deleted=deletable):
                yield from ctx.emit(stream, [flatten(r) for r in records],
                                    deleted=lambda row: row.get("is_deleted") is True)

        return read

    @dlt.source(name=NAME)
    def salesforce() -> list[Any]:
        return [resource(stream) for stream in STREAMS]

    return salesforce()


register(Connector(
    name=NAME,
    title="Salesforce",
    default_base_url="https://login.salesforce.com",
    credentials=("client_secret", "refresh_token"),
    options=DEFAULTS,
    streams=STREAMS,
    source=source,
    docs=__doc__ or "",
))
