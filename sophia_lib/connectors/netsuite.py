"""NetSuite: customers, invoices and their lines, budgets over SuiteQL.

Wire format (VENDOR-APIS.md section 3):

* Base URL ``https://{account_id}.suitetalk.api.netsuite.com`` (the account id lower-cased, ``_`` →
  ``-``; a ``{account_id}`` placeholder in the configured URL is filled from the option).
* Auth: OAuth 2.0 refresh-token grant at ``/services/rest/auth/oauth2/v1/token`` with the client
  authenticated by HTTP **Basic** (``client_id:client_secret``). Access tokens live 60 minutes
  (``expires_in`` is a string); the refresh token lives 7 days, so a source idle longer than that
  needs re-authorizing (the auth error says so).
* SuiteQL: ``POST /services/rest/query/v1/suiteql?limit=&offset=`` with ``Prefer: transient`` and
  ``{"q": …}``; pages end when ``hasMore`` is false. One query returns at most 100,000 rows
  (``max_results``), so reads go in **keyset windows**: ``ORDER BY lastmodifieddate, id`` and, before
  the offset would pass the cap, a new query starts after the last ``(lastmodifieddate, id)`` seen.
* Dates come in the account's display format and time zone, datetimes without their time. Every date
  is therefore selected as ``TO_CHAR(col, 'YYYY-MM-DD[ HH24:MI:SS]')``, and datetimes are turned
  into UTC with the account's time zone (option ``account_timezone``; an ambiguous wall-clock time in
  the autumn DST change is read as the earlier instant, so the cursor never skips ahead).
* Incremental: ``lastmodifieddate >= TO_DATE('<cursor − lag, account time>', 'YYYY-MM-DD HH24:MI:SS')``.
  The lag (``LAG_S``, 10 min) covers the one-second granularity and records saved by long-running
  scripts; the merge on the key removes the repeats.
* Deletes: the ``deletedrecord`` table (``recordtype``, ``recordid``, ``deleteddate``) read with the
  same cursor, as tombstones. Invoice lines follow their invoice: editing or deleting a line moves
  the invoice's ``lastmodifieddate``, so the lines of every changed invoice are read again and
  replace its old lines (dlt ``merge_key`` = ``transaction_id``); a deleted invoice takes its lines.
* Throttling: HTTP 429 (``CONCURRENCY_LIMIT_EXCEEDED``, the account's concurrency governance).
  Errors are ``{type, title, status, "o:errorDetails": [{detail, o:errorCode}]}``.

``transaction`` and ``transactionline`` start at the sync's ``start_date``; customers and budgets
are read whole on the first sync.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import dlt
import numpy as np
import pandas as pd
import pyarrow as pa
import requests

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import OAuth2RefreshAuth
from sophia_lib.connectors._http import ThrottlePolicy, VendorSession, body_json
from sophia_lib.connectors.errors import SourceConfigError
from sophia_lib.connectors.spec import DELETED_COLUMN, Connector, SourceContext, Stream, TColumnType, incremental

NAME = "netsuite"
LAG_S = 600.0
REFERENCE_START = datetime(2000, 1, 1, tzinfo=UTC)
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
DATETIME_MODEL = "YYYY-MM-DD HH24:MI:SS"
IN_LIST_MAX = 500
"""Ids per ``IN (…)`` list when reading invoice lines (Oracle allows 1,000 expressions)."""

TKind = Literal["value", "date", "datetime"]


class Table:
    """A SuiteQL table as read: its columns (how each is selected) and their declared types."""

    def __init__(self, name: str, columns: dict[str, tuple[TKind, TColumnType]], rename: dict[str, str] | None = None
                 ) -> None:
        self.name = name
        self.columns = columns
        self.rename = rename or {}

    def select(self, extra: Sequence[str] = ()) -> str:
        """The SELECT list: dates through ``TO_CHAR`` (stable format, time kept), then ``extra`` columns."""
        parts = []
        for column, (kind, _) in self.columns.items():
            if kind == "date":
                parts.append(f"TO_CHAR({column}, 'YYYY-MM-DD') AS {column}")
            elif kind == "datetime":
                parts.append(f"TO_CHAR({column}, '{DATETIME_MODEL}') AS {column}")
            else:
                parts.append(column)
        return ", ".join(parts + [c for c in extra if c not in self.columns])

    def types(self) -> dict[str, TColumnType]:
        return {self.rename.get(c, c): kind for c, (_, kind) in self.columns.items()}

    def datetimes(self) -> list[str]:
        return [c for c, (kind, _) in self.columns.items() if kind == "datetime"]


V, D, DT = "value", "date", "datetime"
CUSTOMER = Table("customer", {
    "id": (V, "text"), "entityid": (V, "text"), "companyname": (V, "text"), "email": (V, "text"),
    "phone": (V, "text"), "url": (V, "text"), "isperson": (V, "bool"), "isinactive": (V, "bool"),
    "firstsaledate": (D, "date"), "currency": (V, "text"), "subsidiary": (V, "text"), "terms": (V, "text"),
    "datecreated": (DT, "timestamp"), "lastmodifieddate": (DT, "timestamp")})
TRANSACTION = Table("transaction", {
    "id": (V, "text"), "tranid": (V, "text"), "type": (V, "text"), "recordtype": (V, "text"),
    "entity": (V, "text"), "trandate": (D, "date"), "duedate": (D, "date"), "closedate": (D, "date"),
    "status": (V, "text"), "foreigntotal": (V, "double"), "foreignamountremaining": (V, "double"),
    "currency": (V, "text"), "exchangerate": (V, "double"), "createddate": (DT, "timestamp"),
    "lastmodifieddate": (DT, "timestamp")})
TRANSACTION_LINE = Table("transactionline", {
    "transaction": (V, "text"), "id": (V, "text"), "linesequencenumber": (V, "bigint"), "uniquekey": (V, "text"),
    "mainline": (V, "bool"), "taxline": (V, "bool"), "item": (V, "text"), "memo": (V, "text"),
    "quantity": (V, "double"), "rate": (V, "double"), "netamount": (V, "double"), "department": (V, "text"),
    "linecreateddate": (DT, "timestamp"), "linelastmodifieddate": (DT, "timestamp")},
    rename={"transaction": "transaction_id", "id": "line_id"})
BUDGET = Table("budget", {
    "id": (V, "text"), "account": (V, "text"), "department": (V, "text"), "period": (V, "text"),
    "amount": (V, "double"), "currency": (V, "text"), "datecreated": (DT, "timestamp"),
    "lastmodifieddate": (DT, "timestamp")})
DEPARTMENT = Table("department", {
    "id": (V, "text"), "name": (V, "text"), "isinactive": (V, "bool"), "lastmodifieddate": (DT, "timestamp")})
GL_ACCOUNT = Table("account", {
    "id": (V, "text"), "acctnumber": (V, "text"), "accountsearchdisplayname": (V, "text"), "accttype": (V, "text"),
    "isinactive": (V, "bool"), "lastmodifieddate": (DT, "timestamp")})
ACCOUNTING_PERIOD = Table("accountingperiod", {
    "id": (V, "text"), "periodname": (V, "text"), "startdate": (D, "date"), "enddate": (D, "date"),
    "isquarter": (V, "bool"), "isyear": (V, "bool"), "lastmodifieddate": (DT, "timestamp")})

# Required: key and cursor only, because a tombstone from ``deletedrecord`` carries nothing else.
STREAMS: tuple[Stream, ...] = (
    Stream("customer", ("id",), "lastmodifieddate", (), CUSTOMER.types(), "Customers (accounts)"),
    Stream("transaction", ("id",), "lastmodifieddate", (), TRANSACTION.types(),
           "Invoices (transaction type CustInvc by default)"),
    Stream("transactionline", ("transaction_id", "line_id"), None, ("transaction_id", "line_id"),
           {**TRANSACTION_LINE.types(), "transaction_lastmodifieddate": "timestamp"},
           "Invoice lines (mainline = T is the header line); item lines are credits, so amounts are negative"),
    Stream("budget", ("id",), "lastmodifieddate", (), BUDGET.types(), "Budget amounts per account, "
           "department and accounting period"),
    Stream("department", ("id",), "lastmodifieddate", (), DEPARTMENT.types(), "Departments (names of budget and "
           "line department ids)"),
    Stream("account", ("id",), "lastmodifieddate", (), GL_ACCOUNT.types(), "General-ledger accounts (names of "
           "budget account ids)"),
    Stream("accountingperiod", ("id",), "lastmodifieddate", (), ACCOUNTING_PERIOD.types(), "Accounting periods "
           "(dates of budget period ids)"),
)
TABLES = {"customer": CUSTOMER, "transaction": TRANSACTION, "budget": BUDGET, "department": DEPARTMENT,
          "account": GL_ACCOUNT, "accountingperiod": ACCOUNTING_PERIOD}
DELETED_TYPES = {"customer": "customer", "transaction": "invoice", "budget": "budget", "department": "department",
                 "account": "account", "accountingperiod": "accountingperiod"}
"""``deletedrecord.recordtype`` of each stream's records."""
HISTORY = {"transaction"}
DEFAULTS: dict[str, Any] = {
    "account_id": "", "client_id": "", "account_timezone": "America/Los_Angeles", "page_size": 1000,
    "max_results": 100_000, "transaction_types": ["CustInvc"],
    "extra_columns": {"transaction": ["custbody_sf_opportunity"]},
}
"""Options: ``extra_columns`` adds custom fields per table (the default is the invoice's link to its
Salesforce opportunity; set it to ``{}`` in an account without that field)."""


class NetSuitePolicy(ThrottlePolicy):
    """NetSuite's words are in ``o:errorDetails`` (its ``title`` is only the HTTP reason)."""

    def message(self, response: requests.Response) -> str:
        data = body_json(response)
        details = data.get("o:errorDetails") if isinstance(data, dict) else None
        if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("detail"):
            code = details[0].get("o:errorCode")
            return f"{details[0]['detail']} ({code})" if code else str(details[0]["detail"])
        return super().message(response)


def account_host(account_id: str) -> str:
    """``1234567_SB1`` → ``1234567-sb1``, the account's host label."""
    return account_id.strip().lower().replace("_", "-")


class SuiteQL:
    """Windowed SuiteQL reads for one account."""

    def __init__(self, options: dict[str, Any], session: VendorSession, base_url: str) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + SUITEQL_PATH
        self.page_size = int(options["page_size"])
        self.max_results = int(options["max_results"])
        self.timezone = str(options["account_timezone"])

    def page(self, query: str, offset: int) -> dict[str, Any]:
        response = self.session.post(self.url, params={"limit": self.page_size, "offset": offset},
                                     json={"q": query}, headers={"Prefer": "transient"})
        return response.json()

    def local(self, value: Any) -> str:
        """A UTC instant as the account's wall-clock time, for ``TO_DATE``."""
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return stamp.tz_convert(self.timezone).strftime("%Y-%m-%d %H:%M:%S")

    def to_utc(self, values: list[Any]) -> list[Any]:
        """Account wall-clock strings → aware UTC datetimes (None stays None)."""
        stamps = pd.to_datetime(pd.Series(values, dtype=object), format="%Y-%m-%d %H:%M:%S", errors="coerce")
        local = stamps.dt.tz_localize(self.timezone, ambiguous=np.ones(len(stamps), dtype=bool),
                                      nonexistent="shift_forward")
        utc = local.dt.tz_convert("UTC")
        return [None if pd.isna(v) else v.to_pydatetime() for v in utc]

    def read(self, table: str, select: str, where: list[str], since: datetime | None, stamp: str = "lastmodifieddate",
             key: str = "id", stamp_is_date: bool = True) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``table`` rows with ``stamp >= since``, ordered by ``(stamp, key)``, in keyset windows
        that each stay under the result cap (``key`` and a non-date ``stamp`` are numeric ids)."""
        after: tuple[str, str] | None = None
        while True:
            conditions = list(where)
            if since is not None:
                conditions.append(f"{stamp} >= TO_DATE('{self.local(since)}', '{DATETIME_MODEL}')")
            if after is not None:
                bound = f"TO_DATE('{after[0]}', '{DATETIME_MODEL}')" if stamp_is_date else str(int(after[0]))
                conditions.append(f"({stamp} > {bound} OR ({stamp} = {bound} AND {key} > {int(after[1])}))")
            query = f"SELECT {select} FROM {table}"
            if conditions:
                query += " WHERE " + " AND ".join(conditions)
            query += f" ORDER BY {stamp}, {key}"
            offset = 0
            while True:
                data = self.page(query, offset)
                items = data.get("items") or []
                yield items
                offset += len(items)
                if not data.get("hasMore") or not items:
                    return
                if offset + self.page_size > self.max_results:
                    after = (items[-1][stamp], items[-1][key])
                    break

    def flatten(self, table: Table, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Items → rows: ``links`` dropped, datetimes to UTC, columns renamed to their stream names."""
        rows = [{table.rename.get(k, k): v for k, v in item.items() if k != "links"} for item in items]
        for column in table.datetimes():
            name = table.rename.get(column, column)
            converted = self.to_utc([row.get(name) for row in rows])
            for row, value in zip(rows, converted, strict=True):
                if name in row:
                    row[name] = value
        return rows


def base_url(url: str, account_id: str) -> str:
    """The configured base URL, its ``{account_id}`` placeholder filled with the account's host label."""
    if "{account_id}" not in url:
        return url
    if not account_id:
        raise SourceConfigError(NAME, "option account_id is not set and the base URL needs it",
                                fix="set sources.netsuite.options.account_id (e.g. 1234567 or 1234567_SB1)")
    return url.replace("{account_id}", account_host(account_id))


def source(ctx: SourceContext) -> Any:
    """The dlt source: customers, invoices (+ lines as a transformer of invoices), budgets and the lookups
    that name budget ids (departments, GL accounts, accounting periods)."""
    options = {**DEFAULTS, **ctx.options}
    client_id = options["client_id"]
    if not client_id:
        raise SourceConfigError(NAME, "option client_id (the integration record's client id) is not set",
                                fix="set sources.netsuite.options.client_id in sophia.yaml")
    url = base_url(ctx.base_url, str(options["account_id"]))
    auth = OAuth2RefreshAuth(NAME, url.rstrip("/") + TOKEN_PATH, str(client_id), ctx.secret("client_secret"),
                             ctx.secret("refresh_token"), client_auth="basic",
                             on_rotate=lambda token: ctx.save_secret("refresh_token", token))
    api = SuiteQL(options, ctx.session(auth=auth, policy=NetSuitePolicy(), rate_per_s=options.get("rate_per_s")), url)
    extra: dict[str, list[str]] = dict(options["extra_columns"] or {})
    types = [str(t).replace("'", "") for t in options["transaction_types"]]
    where = {"transaction": [f"type IN ({', '.join(repr(t) for t in types)})"]}

    def resource(stream: Stream) -> Any:
        table = TABLES[stream.name]
        initial = ctx.start_date if stream.name in HISTORY else REFERENCE_START

        @dlt.resource(**stream.hints())
        def read(cursor: Any = incremental(stream, initial, lag=LAG_S)) -> Iterator[Any]:
            since = initial if ctx.full_refresh else cursor.start_value
            select = table.select(extra.get(stream.name, []))
            for items in api.read(table.name, select, where.get(stream.name, []), since):
                yield from ctx.emit(stream, api.flatten(table, items))
            gone = f"recordid AS id, TO_CHAR(deleteddate, '{DATETIME_MODEL}') AS lastmodifieddate"
            for items in api.read("deletedrecord", gone, [f"recordtype = '{DELETED_TYPES[stream.name]}'"], since,
                                  stamp="deleteddate", key="recordid"):
                tombstones = [{"id": i.get("id"), "lastmodifieddate": i.get("lastmodifieddate")} for i in items]
                yield from ctx.emit(stream, api.flatten(table, tombstones), deleted=lambda row: True)

        return read

    lines = STREAMS[2]

    def read_lines(page: pa.Table) -> Iterator[Any]:
        """The lines of the invoices in one page: read again whole, replacing the old ones."""
        ids = page.column("id").to_pylist()
        stamps = page.column("lastmodifieddate").to_pylist()
        deleted = page.column(DELETED_COLUMN).to_pylist() if DELETED_COLUMN in page.column_names else []
        gone = {i for i, dead in zip(ids, deleted, strict=False) if dead}
        stamp_of = dict(zip(ids, stamps, strict=True))
        if gone:
            yield from ctx.emit(lines, [{"transaction_id": i, "line_id": "*"} for i in sorted(gone)],
                                deleted=lambda row: True)
        live = [i for i in ids if i not in gone]
        for start in range(0, len(live), IN_LIST_MAX):
            chunk = live[start:start + IN_LIST_MAX]
            condition = f"transaction IN ({', '.join(str(int(i)) for i in chunk)})"
            for items in api.read(TRANSACTION_LINE.name, TRANSACTION_LINE.select(), [condition], None,
                                  stamp="transaction", key="id", stamp_is_date=False):
                rows = api.flatten(TRANSACTION_LINE, items)
                for row in rows:
                    row["transaction_lastmodifieddate"] = stamp_of.get(row.get("transaction_id"))
                yield from ctx.emit(lines, rows)

    @dlt.source(name=NAME)
    def netsuite() -> list[Any]:
        readers = {stream.name: resource(stream) for stream in STREAMS if stream.name in TABLES}
        transaction_lines = dlt.transformer(read_lines, data_from=readers["transaction"],
                                            **lines.hints(), merge_key="transaction_id")
        return [readers["customer"], readers["transaction"], transaction_lines, readers["budget"],
                readers["department"], readers["account"], readers["accountingperiod"]]

    return netsuite()


register(Connector(
    name=NAME,
    title="NetSuite",
    default_base_url="https://{account_id}.suitetalk.api.netsuite.com",
    credentials=("client_secret", "refresh_token"),
    options=DEFAULTS,
    streams=STREAMS,
    source=source,
    docs=__doc__ or "",
))
