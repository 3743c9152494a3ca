"""NetSuite simulator: OAuth 2.0 token endpoint and SuiteQL over the company's finance records.

Served (relative to the vendor base URL, i.e. ``https://{accountId}.suitetalk.api.netsuite.com``):

* ``POST /services/rest/auth/oauth2/v1/token`` — ``refresh_token`` (client authenticated with HTTP
  Basic ``client_id:client_secret``) and ``client_credentials`` (M2M: ``client_assertion_type =
  urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a ``client_assertion`` JWT whose header
  names the demo certificate in ``kid`` and whose claims carry ``iss`` = the client id, ``scope``
  with ``rest_webservices``, ``aud`` = the token URL and a future ``exp``). The simulator checks the
  JWT's structure and claims, **not** its signature (there is no certificate upload here). Access
  tokens live 60 minutes; ``expires_in`` is a string, as NetSuite sends it.
* ``POST /services/rest/query/v1/suiteql?limit=&offset=`` with ``Prefer: transient`` (required) and
  ``{"q": "SELECT …"}``. ``limit`` ≤ 1000 (default 1000). Answers ``{links, count, hasMore, items,
  offset, totalResults}``; ``items`` have lower-case keys, string values, ``"links": []``, and omit
  null columns. A query is capped at ``max_results`` (100,000) rows: an offset at or past it is an
  error, so connectors must window by date or id.

Tables: ``customer`` (accounts as NetSuite knows them), ``transaction`` (invoices, ``type`` CustInvc),
``transactionline`` (a ``mainline = 'T'`` row per invoice plus item lines; item-line ``netamount`` and
``quantity`` are **negative**, the credit side, as in a real account), ``budget``, lookups
``department``, ``account``, ``accountingperiod``, ``item``, and ``deletedrecord`` (``recordtype``,
``recordid``, ``name``, ``deleteddate``) for deletes. Dates come in the account's format ``M/D/YYYY``
and in the account's time zone (``account_timezone``, America/Los_Angeles), datetimes too (date part
only): use ``TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')`` for a stable cursor, and compare with
``TO_DATE('…', 'YYYY-MM-DD HH24:MI:SS')`` (same time zone). Editing or deleting a line moves its
transaction's ``lastmodifieddate``.

Errors use NetSuite's REST envelope ``{type, title, status, "o:errorDetails": [{detail, o:errorCode}]}``;
the throttle is HTTP 429 ``CONCURRENCY_LIMIT_EXCEEDED``; a dead token is 401 ``INVALID_LOGIN``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore
from sophia_lib.sandbox.simulator.base import Handler, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register
from sophia_lib.sandbox.vendors._soql import Col, Func, Lit, Query, QueryError, SelectItem, mask, parse, sort_index
from sophia_lib.sandbox.vendors._suiteql import account_date, parse_account_date, to_char, to_date

ACCOUNT_ID = "1234567_SB1"
CLIENT_ID = "sandbox-netsuite-client-id"
CLIENT_SECRET = "sandbox-netsuite-client-secret"  # noqa: S105 - demo credential of the simulator
REFRESH_TOKEN = "sandbox-netsuite-refresh-token"  # noqa: S105
CERTIFICATE_ID = "sandbox-netsuite-certificate"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ERROR_MEDIA = "application/vnd.oracle.resource+json; type=error"
COLLECTION_MEDIA = "application/vnd.oracle.resource+json; type=collection"
STATUS_TYPES = {
    400: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "Bad Request"),
    401: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2", "Unauthorized"),
    403: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.4", "Forbidden"),
    404: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5", "Not Found"),
    405: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.6", "Method Not Allowed"),
    429: ("https://www.rfc-editor.org/rfc/rfc6585.html#section-4", "Too Many Requests"),
    500: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1", "Internal Server Error"),
    502: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.3", "Bad Gateway"),
    503: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.4", "Service Unavailable"),
}
CURRENCY_IDS = {"USD": 1, "GBP": 2, "CAD": 3, "EUR": 4}
INVOICE_STATUS = {"open": "A", "overdue": "A", "paid": "B", "void": "V"}
GL_ACCOUNTS = {"Salaries": (6000, "Salaries & Wages"), "Software": (6100, "Software & Subscriptions"),
               "Travel": (6200, "Travel & Entertainment"), "Contractors": (6300, "Contractors"),
               "Programs": (6400, "Marketing Programs")}
SEARCH_ERROR = "Invalid search query. Detailed unprocessed description follows. Search error occurred: "


def ns_error(status: int, code: str, detail: str, **extra: str) -> JSONResponse:
    """NetSuite's REST error envelope (``extra``: o:errorHeader / o:errorQueryParam / o:errorPath)."""
    type_url, title = STATUS_TYPES.get(status, STATUS_TYPES[500 if status >= 500 else 400])
    body = {"type": type_url, "title": title, "status": status,
            "o:errorDetails": [{"detail": detail, "o:errorCode": code} | {f"o:{k}": v for k, v in extra.items()}]}
    return JSONResponse(body, status_code=status, media_type=ERROR_MEDIA)


@dataclass
class NsTable:
    """One SuiteQL table: typed columns (``int``, ``float``, ``currency``, ``str``, ``bool`` 'T'/'F',
    ``date``/``datetime`` naive in the account time zone)."""

    name: str
    types: dict[str, str]
    frame: pd.DataFrame


@dataclass
class _Result:
    table: NsTable
    columns: list[tuple[str, Any]]  # (output key, Col | Func)
    positions: np.ndarray
    query: Query


# --- rendering ------------------------------------------------------------------------------------------
def _local(series: pd.Series, tz: str, floor: str = "s") -> pd.Series:
    """UTC timestamps → naive wall-clock time in the account's time zone."""
    s = pd.to_datetime(series, utc=True)
    return s.dt.tz_convert(tz).dt.tz_localize(None).dt.floor(floor)


def _day(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.dt.floor("D")


def _obj(series: pd.Series) -> pd.Series:
    out = series.astype(object)
    return out.where(series.notna(), None)


def _ids(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("Int64")


def _ns_ids(company: Any, entity: str) -> pd.Series:
    """Canonical id → NetSuite internal id of the entity's primary live record."""
    p = company.presence_of(entity, "netsuite")
    p = p[p["deleted_at"].isna()].sort_values(["is_duplicate", "created_at"], kind="stable")
    return p.drop_duplicates("entity_id").set_index("entity_id")["system_id"]


def _lookup_ids(names: list[str], start: int = 1) -> dict[str, int]:
    return {name: start + i for i, name in enumerate(sorted(names))}


def render_tables(company: Any, tz: str) -> dict[str, NsTable]:
    """Every served SuiteQL table, vectorised."""
    tables: dict[str, NsTable] = {}
    deleted: list[pd.DataFrame] = []

    def add(name: str, types: dict[str, str], frame: pd.DataFrame) -> None:
        frame = frame[list(types)].sort_values("id" if "id" in types else list(types)[0], kind="stable")
        tables[name] = NsTable(name, types, frame.reset_index(drop=True))

    # customer
    p = company.presence_of("account", "netsuite")
    p = p.rename(columns={c: f"{c}_p" for c in p.columns if c != "system_id"})
    c = p.merge(company["accounts"], left_on="entity_id_p", right_on="account_id", how="inner")
    c_deleted = c["deleted_at_p"].notna() | c["deleted_at"].notna()
    c_mod = c[["updated_at_p", "updated_at", "deleted_at_p", "deleted_at"]].max(axis=1)
    name = c["name_p"].fillna(c["name"])
    cust = pd.DataFrame({
        "id": _ids(c["system_id"]), "entityid": _obj(name), "companyname": _obj(name),
        "email": _obj(c["email_p"]), "phone": _obj(c["phone_p"]),
        "url": _obj(c["domain_p"].fillna(c["domain"])), "isperson": "F",
        "isinactive": np.where(pd.to_datetime(c["churned_at"], utc=True).notna(), "T", "F"),
        "firstsaledate": _day(_local(c["customer_since"], tz)), "currency": 1, "subsidiary": 1, "terms": 2,
        "datecreated": _local(c[["created_at_p", "created_at"]].min(axis=1), tz),
        "lastmodifieddate": _local(c_mod, tz),
    })
    add("customer", {"id": "int", "entityid": "str", "companyname": "str", "email": "str", "phone": "str",
                     "url": "str", "isperson": "bool", "isinactive": "bool", "firstsaledate": "date",
                     "currency": "int", "subsidiary": "int", "terms": "int", "datecreated": "datetime",
                     "lastmodifieddate": "datetime"}, cust[~c_deleted.to_numpy()])
    deleted.append(pd.DataFrame({"recordtype": "customer", "recordid": cust["id"], "name": cust["companyname"],
                                 "deleteddate": cust["lastmodifieddate"]})[c_deleted.to_numpy()])

    # transaction (invoices) and transactionline
    inv, lines = company["invoices"], company["invoice_lines"]
    cust_ids = _ns_ids(company, "account")
    opp_sf = company["opportunities"].set_index("opportunity_id")["system_id"]
    live_lines = lines[lines["deleted_at"].isna()]
    line_mod = lines.assign(_m=lines[["updated_at", "deleted_at"]].max(axis=1)).groupby("invoice_id")["_m"].max()
    inv_mod = pd.concat([inv["updated_at"], inv["invoice_id"].map(line_mod)], axis=1).max(axis=1)
    inv_deleted = inv["deleted_at"].notna().to_numpy()
    total = pd.to_numeric(inv["total"], errors="coerce").astype(float)
    paid = inv["status"].astype(str) == "paid"
    tran = pd.DataFrame({
        "id": _ids(inv["system_id"]), "tranid": _obj(inv["tran_id"]), "type": "CustInvc", "recordtype": "invoice",
        "entity": _ids(inv["account_id"].map(cust_ids)), "trandate": _day(inv["issued_on"]),
        "duedate": _day(inv["due_on"]), "closedate": _day(inv["paid_on"]),
        "status": _obj(inv["status"].map(INVOICE_STATUS).fillna("A")), "foreigntotal": total,
        "foreignamountremaining": np.where(paid, 0.0, total), "currency": inv["currency"].map(CURRENCY_IDS).fillna(1),
        "exchangerate": 1.0, "custbody_sf_opportunity": _obj(inv["opportunity_id"].map(opp_sf)),
        "createddate": _local(inv["created_at"], tz), "lastmodifieddate": _local(inv_mod, tz),
    })
    add("transaction", {"id": "int", "tranid": "str", "type": "str", "recordtype": "str", "entity": "int",
                        "trandate": "date", "duedate": "date", "closedate": "date", "status": "str",
                        "foreigntotal": "currency", "foreignamountremaining": "currency", "currency": "int",
                        "exchangerate": "float", "custbody_sf_opportunity": "str", "createddate": "datetime",
                        "lastmodifieddate": "datetime"}, tran[~inv_deleted])
    deleted.append(pd.DataFrame({"recordtype": "invoice", "recordid": tran["id"], "name": tran["tranid"],
                                 "deleteddate": tran["lastmodifieddate"]})[inv_deleted])

    item_ids = _lookup_ids(lines["item"].dropna().unique().tolist(), 100)
    dept_names = sorted(set(lines["department"].dropna()) | set(company["budgets"]["department"].dropna()))
    dept_ids = _lookup_ids(dept_names)
    inv_live = inv[~inv_deleted]
    inv_key = inv.set_index("invoice_id")
    ll = live_lines[live_lines["invoice_id"].isin(inv_live["invoice_id"])]
    tran_id = _ids(ll["invoice_id"].map(inv_key["system_id"]))
    qty = pd.to_numeric(ll["quantity"], errors="coerce").astype(float)
    item_lines = pd.DataFrame({
        "id": pd.to_numeric(ll["line_no"]).astype("Int64"), "transaction": tran_id,
        "linesequencenumber": pd.to_numeric(ll["line_no"]).astype("Int64"),
        "uniquekey": tran_id * 1000 + pd.to_numeric(ll["line_no"]).astype("Int64"),
        "mainline": "F", "taxline": "F", "item": ll["item"].map(item_ids).astype("Int64"), "memo": _obj(ll["item"]),
        "quantity": -qty, "rate": pd.to_numeric(ll["rate"], errors="coerce").astype(float),
        "netamount": -pd.to_numeric(ll["amount"], errors="coerce").astype(float),
        "department": ll["department"].map(dept_ids).astype("Int64"),
        "linecreateddate": _local(ll["created_at"], tz), "linelastmodifieddate": _local(ll["updated_at"], tz),
    })
    main = pd.DataFrame({
        "id": 0, "transaction": _ids(inv_live["system_id"]), "linesequencenumber": 0,
        "uniquekey": _ids(inv_live["system_id"]) * 1000, "mainline": "T", "taxline": "F", "item": pd.NA,
        "memo": None, "quantity": np.nan, "rate": np.nan,
        "netamount": pd.to_numeric(inv_live["total"], errors="coerce").astype(float), "department": pd.NA,
        "linecreateddate": _local(inv_live["created_at"], tz), "linelastmodifieddate": _local(inv_live["updated_at"],
                                                                                               tz),
    })
    tl = pd.concat([main, item_lines], ignore_index=True).sort_values(["transaction", "id"], kind="stable")
    tl_types = {"uniquekey": "int", "transaction": "int", "id": "int", "linesequencenumber": "int",
                "mainline": "bool", "taxline": "bool", "item": "int", "memo": "str", "quantity": "float",
                "rate": "float", "netamount": "currency", "department": "int", "linecreateddate": "datetime",
                "linelastmodifieddate": "datetime"}
    for col in ("id", "transaction", "linesequencenumber", "uniquekey", "item", "department"):
        tl[col] = tl[col].astype("Int64")
    tables["transactionline"] = NsTable("transactionline", tl_types, tl[list(tl_types)].reset_index(drop=True))

    # budgets and lookups
    b = company["budgets"]
    b = b[b["created_at"] <= company.now]  # budgets for future months are entered ahead; not before they exist
    b_deleted = b["deleted_at"].notna().to_numpy()
    months = pd.to_datetime(b["month"])
    if getattr(months.dt, "tz", None) is not None:
        months = months.dt.tz_localize(None)
    period_starts = sorted(months.dt.to_period("M").unique())
    period_ids = {per: 100 + i for i, per in enumerate(period_starts)}
    gl = {cat: num for cat, (num, _) in GL_ACCOUNTS.items()}
    gl_ids = {cat: 200 + i for i, cat in enumerate(sorted(set(b["account_category"].dropna()) | set(gl)))}
    bud = pd.DataFrame({
        "id": _ids(b["system_id"]), "account": b["account_category"].map(gl_ids).astype("Int64"),
        "department": b["department"].map(dept_ids).astype("Int64"),
        "period": months.dt.to_period("M").map(period_ids).astype("Int64"),
        "amount": pd.to_numeric(b["amount"], errors="coerce").astype(float), "currency": 1,
        "datecreated": _local(b["created_at"], tz),
        "lastmodifieddate": _local(b[["updated_at", "deleted_at"]].max(axis=1), tz),
    })
    add("budget", {"id": "int", "account": "int", "department": "int", "period": "int", "amount": "currency",
                   "currency": "int", "datecreated": "datetime", "lastmodifieddate": "datetime"}, bud[~b_deleted])
    deleted.append(pd.DataFrame({"recordtype": "budget", "recordid": bud["id"], "name": None,
                                 "deleteddate": bud["lastmodifieddate"]})[b_deleted])

    epoch = _local(pd.Series([company.now - pd.Timedelta(days=730)]), tz)[0]
    add("department", {"id": "int", "name": "str", "isinactive": "bool", "lastmodifieddate": "datetime"},
        pd.DataFrame({"id": list(dept_ids.values()), "name": list(dept_ids), "isinactive": "F",
                      "lastmodifieddate": epoch}))
    add("item", {"id": "int", "itemid": "str", "displayname": "str", "itemtype": "str", "isinactive": "bool",
                 "lastmodifieddate": "datetime"},
        pd.DataFrame({"id": list(item_ids.values()), "itemid": list(item_ids), "displayname": list(item_ids),
                      "itemtype": "Service", "isinactive": "F", "lastmodifieddate": epoch}))
    cats = list(gl_ids)
    add("account", {"id": "int", "acctnumber": "str", "accountsearchdisplayname": "str", "accttype": "str",
                    "isinactive": "bool", "lastmodifieddate": "datetime"},
        pd.DataFrame({"id": [gl_ids[c] for c in cats],
                      "acctnumber": [str(GL_ACCOUNTS.get(c, (6900, c))[0]) for c in cats],
                      "accountsearchdisplayname": [GL_ACCOUNTS.get(c, (6900, c))[1] for c in cats],
                      "accttype": "Expense", "isinactive": "F", "lastmodifieddate": epoch}))
    starts = pd.PeriodIndex(period_starts, freq="M")
    add("accountingperiod", {"id": "int", "periodname": "str", "startdate": "date", "enddate": "date",
                             "isquarter": "bool", "isyear": "bool", "lastmodifieddate": "datetime"},
        pd.DataFrame({"id": [period_ids[s] for s in period_starts], "periodname": starts.strftime("%b %Y"),
                      "startdate": starts.start_time, "enddate": starts.end_time.floor("D"),
                      "isquarter": "F", "isyear": "F", "lastmodifieddate": epoch}))

    gone = pd.concat(deleted, ignore_index=True)
    gone["context"], gone["iscustomrecord"] = "UIF", "F"
    gone["recordid"] = gone["recordid"].astype("Int64")
    gone = gone.sort_values(["deleteddate", "recordid"], kind="stable").reset_index(drop=True)
    tables["deletedrecord"] = NsTable("deletedrecord", {
        "recordtype": "str", "recordid": "int", "name": "str", "deleteddate": "datetime", "context": "str",
        "iscustomrecord": "bool"}, gone[["recordtype", "recordid", "name", "deleteddate", "context", "iscustomrecord"]])
    for table in tables.values():  # make every column's dtype match its declared type
        for col, kind in table.types.items():
            if kind in ("date", "datetime"):
                table.frame[col] = pd.to_datetime(table.frame[col]).astype("datetime64[ns]")
            elif kind in ("float", "currency"):
                table.frame[col] = pd.to_numeric(table.frame[col], errors="coerce").astype(float)
            elif kind == "int":
                table.frame[col] = pd.to_numeric(table.frame[col], errors="coerce").astype("Int64")
            else:
                table.frame[col] = _obj(table.frame[col])
    return tables


def wire_column(series: pd.Series, kind: str) -> pd.Series:
    """A typed column as SuiteQL's JSON strings (None where null)."""
    present = series.notna()
    if kind in ("date", "datetime"):
        return account_date(series)
    if kind == "int":
        return series.astype("Int64").astype(str).astype(object).where(present, None)
    if kind == "currency":
        return series.map(lambda v: f"{v:.2f}").astype(object).where(present, None)
    if kind == "float":
        return series.map(lambda v: np.format_float_positional(v, trim="-")).astype(object).where(present, None)
    return series.astype(object).where(present, None)


# --- the simulator ----------------------------------------------------------------------------------------
@register
class NetSuiteSimulator(SimulatedVendor):
    """NetSuite over one company. ``max_results`` is SuiteQL's per-query cap (100,000)."""

    name = "netsuite"
    account_timezone = "America/Los_Angeles"
    max_results = 100_000
    max_limit = 1000

    def setup_credentials(self) -> None:
        self.tokens = TokenStore("netsuite", access_ttl_s=3600.0)
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID, ("rest_webservices",))
        self._cache: OrderedDict[tuple[int, str], _Result] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._generation = 0

    def credentials(self) -> dict[str, str]:
        return {"account_id": ACCOUNT_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN, "certificate_id": CERTIFICATE_ID}

    def render(self) -> None:
        self.ns_tables = render_tables(self.company, self.account_timezone)
        with self._cache_lock:
            self._generation += 1
            self._cache.clear()

    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        return [(TOKEN_PATH, self.token, ["POST"]),
                ("/services/rest/query/v1/suiteql", self.suiteql, ["POST"])]

    # --- vendor answers ----------------------------------------------------------------------------------
    def throttle_response(self, request: Request, fault: Fault) -> Response:
        return ns_error(429, "CONCURRENCY_LIMIT_EXCEEDED", "Request Limit Exceeded")

    def error_response(self, request: Request, status: int, message: str) -> Response:
        code = "UNEXPECTED_ERROR" if status >= 500 else "INVALID_PARAMETER"
        return ns_error(status, code, f"An unexpected error occurred: {message}" if status >= 500 else message)

    def expired_token_response(self, request: Request) -> Response:
        return ns_error(401, "INVALID_LOGIN", "Invalid login attempt. For more details, see the Login Audit Trail in "
                        "the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.")

    def error_response_for_body(self, exc: Exception) -> Response:
        return ns_error(400, "INVALID_PARAMETER", f"Invalid request body: {exc}")

    # --- auth --------------------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = str(form.get("grant_type", ""))
        if grant == "client_credentials":
            return self._client_credentials(request, form)
        if grant not in ("refresh_token",):
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        client = self._basic_client(request.headers.get("authorization"))
        if client is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        try:
            access, _ = self.tokens.refresh(str(form.get("refresh_token", "")), client)
        except InvalidGrant:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse({"access_token": access.value, "expires_in": "3600", "token_type": "bearer"})

    @staticmethod
    def _basic_client(header: str | None) -> str | None:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return client_id if (client_id, secret) == (CLIENT_ID, CLIENT_SECRET) else None

    def _client_credentials(self, request: Request, form: Any) -> Response:
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        try:
            header, claims = self._jwt_parts(str(form["client_assertion"]))
        except ValueError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        scope = claims.get("scope", [])
        scopes = scope.split() if isinstance(scope, str) else list(scope)
        aud = claims.get("aud", "")
        now = time.time()
        ok = (header.get("kid") == CERTIFICATE_ID and str(header.get("alg", "")).upper()[:2] in ("RS", "PS", "ES")
              and claims.get("iss") == CLIENT_ID and "rest_webservices" in scopes
              and str(aud[0] if isinstance(aud, list) and aud else aud).endswith(TOKEN_PATH)
              and isinstance(claims.get("exp"), int | float) and claims["exp"] > now
              and claims["exp"] - float(claims.get("iat", now)) <= 3600)
        if not ok:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        access, _ = self.tokens.issue(CLIENT_ID, ("rest_webservices",), with_refresh=False)
        return JSONResponse({"access_token": access.value, "expires_in": "3600", "token_type": "bearer"})

    @staticmethod
    def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        parts = token.split(".")
        if len(parts) != 3 or not parts[2]:
            raise ValueError("not a signed JWT")
        try:
            decoded = [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]]
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ValueError("undecodable JWT") from None
        if not all(isinstance(d, dict) for d in decoded):
            raise ValueError("JWT parts are not objects")
        return decoded[0], decoded[1]

    # --- SuiteQL -----------------------------------------------------------------------------------------
    async def suiteql(self, request: Request) -> Response:
        self.require_bearer(request)
        if "transient" not in request.headers.get("prefer", "").lower():
            return ns_error(400, "INVALID_HEADER", "The request must contain the header 'Prefer: transient'.",
                            errorHeader="Prefer")
        limit = self._int_param(request, "limit", self.max_limit, 1, self.max_limit)
        offset = self._int_param(request, "offset", 0, 0, None)
        body = self.json_body(await request.body())
        text = body.get("q") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return ns_error(400, "INVALID_PARAMETER", "Invalid search query. The request body must contain the "
                            "query in the 'q' property.", errorPath="q")
        try:
            result = self._result(text)
        except QueryError as exc:
            return ns_error(400, "INVALID_PARAMETER", SEARCH_ERROR + exc.message, errorPath="q")
        total = len(result.positions)
        if offset >= self.max_results:
            return ns_error(400, "INVALID_PARAMETER", f"Invalid search query. A SuiteQL query can return at most "
                            f"{self.max_results} results; the offset {offset} is out of range. Narrow the query.",
                            errorQueryParam="offset")
        reachable = min(total, self.max_results)
        start, stop = min(offset, reachable), min(offset + limit, reachable)
        lo = max(start - 1, 0)
        window = self._items(result, result.positions[lo:stop])
        items = self.page(request, window, start - lo, stop - start)
        has_more = stop < reachable
        links = [{"rel": "self", "href": self._href(request, limit, offset)}]
        if offset > 0:
            links.insert(0, {"rel": "previous", "href": self._href(request, limit, max(offset - limit, 0))})
            links.insert(0, {"rel": "first", "href": self._href(request, limit, 0)})
        if has_more:
            links.insert(-1, {"rel": "next", "href": self._href(request, limit, offset + limit)})
        last = ((reachable - 1) // limit) * limit if reachable else 0
        links.insert(-1, {"rel": "last", "href": self._href(request, limit, last)})
        return JSONResponse({"links": links, "count": len(items), "hasMore": has_more, "items": items,
                             "offset": offset, "totalResults": total}, media_type=COLLECTION_MEDIA)

    @staticmethod
    def _href(request: Request, limit: int, offset: int) -> str:
        return str(request.url.include_query_params(limit=limit, offset=offset))

    @staticmethod
    def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.strip().isdigit() or int(raw) < low or (high is not None and int(raw) > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Reply(ns_error(400, "INVALID_PARAMETER", f"Invalid value for the query parameter {name}: {raw}. "
                                 f"The value must be an integer {bound}.", errorQueryParam=name))
        return int(raw)

    def _result(self, text: str) -> _Result:
        key = (self._generation, text)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        query = parse(text, "suiteql")
        table = self.ns_tables.get(query.source.lower())
        if table is None:
            raise QueryError("object", f"Record '{query.source}' was not found.", query.source_pos)
        result = self._run(query, table)
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return result

    def _column(self, query: Query, table: NsTable, col: Col) -> str:
        parts = col.name.lower().split(".")
        if len(parts) == 2 and parts[0] in {table.name, (query.alias or "").lower()}:
            parts = parts[1:]
        if len(parts) != 1 or parts[0] not in table.types:
            raise QueryError("field", f"Field '{col.name.split('.')[-1]}' for record '{table.name}' was not found. "
                             "Reason: NOT_EXPOSED - Not available for channel SEARCH", col.pos)
        return parts[0]

    def _run(self, query: Query, table: NsTable) -> _Result:
        frame = table.frame
        aliases: dict[str, Any] = {}
        columns: list[tuple[str, Any]] = []
        for n, item in enumerate(query.select, 1):
            if item.expr == "*":
                columns += [(c, Col(c, 0)) for c in table.types]
                continue
            self._check_expr(query, table, item)
            out = (item.alias or (item.expr.name.split(".")[-1] if isinstance(item.expr, Col) else f"expr{n}")).lower()
            aliases[out] = item.expr
            columns.append((out, item.expr))

        def resolve(node: Any) -> pd.Series:
            if isinstance(node, Col) and node.name.lower() in aliases and node.name.lower() not in table.types:
                node = aliases[node.name.lower()]
            if isinstance(node, Col):
                return frame[self._column(query, table, node)]
            if isinstance(node, Func):
                return self._func(query, table, node, frame)
            raise QueryError("malformed", "Invalid or unsupported search", getattr(node, "pos", 0))

        def coerce(lit: Any, col: Any) -> Any:
            return self._literal(query, table, lit, col)

        keep = mask(query.where, frame, resolve, coerce)
        positions = np.flatnonzero(keep)
        if query.order_by:
            sub = frame.iloc[positions]
            order = sort_index(sub, query.order_by, lambda node: resolve(node).iloc[positions].reset_index(drop=True),
                               nulls_first_asc=False)
            positions = positions[order]
        return _Result(table, columns, positions, query)

    def _check_expr(self, query: Query, table: NsTable, item: SelectItem) -> None:
        expr = item.expr
        if isinstance(expr, Col):
            self._column(query, table, expr)
        elif isinstance(expr, Func):
            self._func(query, table, expr, table.frame.iloc[:0])
        else:
            raise QueryError("malformed", "Invalid or unsupported search", getattr(expr, "pos", 0))

    def _func(self, query: Query, table: NsTable, node: Func, frame: pd.DataFrame) -> pd.Series:
        args = node.args
        if node.name == "TO_CHAR" and len(args) in (1, 2) and isinstance(args[0], Col):
            column = self._column(query, table, args[0])
            kind = table.types[column]
            if kind in ("date", "datetime"):
                if len(args) == 1:
                    return account_date(frame[column])
                if not (isinstance(args[1], Lit) and args[1].kind == "string"):
                    raise QueryError("malformed", "TO_CHAR needs a quoted format model", node.pos)
                return to_char(frame[column], args[1].value, node.pos)
            return wire_column(frame[column], kind)
        if node.name in ("UPPER", "LOWER") and len(args) == 1 and isinstance(args[0], Col):
            series = frame[self._column(query, table, args[0])]
            text = series.astype(object).where(series.notna(), None)
            return text.str.upper() if node.name == "UPPER" else text.str.lower()
        raise QueryError("malformed", f"Invalid or unsupported search: function {node.name}", node.pos)

    def _literal(self, query: Query, table: NsTable, lit: Any, col: Any) -> Any:
        if isinstance(col, Col) and col.name.lower() not in table.types and "." not in col.name:
            kind = "str"  # an alias of a TO_CHAR/UPPER select item
        elif isinstance(col, Col):
            kind = table.types[self._column(query, table, col)]
        else:
            kind = "str"
        if isinstance(lit, Func):
            if lit.name in ("TO_DATE", "TO_TIMESTAMP") and len(lit.args) == 2 and all(
                    isinstance(a, Lit) and a.kind == "string" for a in lit.args):
                if kind not in ("date", "datetime"):
                    raise QueryError("malformed", "ORA-00932: inconsistent datatypes", lit.pos)
                return to_date(lit.args[0].value, lit.args[1].value, lit.pos)
            raise QueryError("malformed", f"Invalid or unsupported search: function {lit.name}", lit.pos)
        if not isinstance(lit, Lit) or lit.kind == "null":
            raise QueryError("malformed", "Invalid or unsupported search (use IS NULL)", getattr(lit, "pos", 0))
        value = lit.value
        if kind in ("date", "datetime"):
            if lit.kind != "string":
                raise QueryError("malformed", "ORA-00932: inconsistent datatypes: expected DATE got NUMBER", lit.pos)
            return parse_account_date(value, lit.pos)
        if kind in ("int", "float", "currency"):
            try:
                return float(value)
            except ValueError:
                raise QueryError("malformed", "ORA-01722: invalid number", lit.pos) from None
        return str(value)

    def _items(self, result: _Result, positions: np.ndarray) -> list[dict[str, Any]]:
        rows = result.table.frame.iloc[positions]
        values: list[tuple[str, list[Any]]] = []
        for out, expr in result.columns:
            if isinstance(expr, Col):
                column = expr.name.lower().split(".")[-1]
                values.append((out, wire_column(rows[column], result.table.types[column]).tolist()))
            else:
                series = self._func(result.query, result.table, expr, rows)
                values.append((out, series.astype(object).where(series.notna(), None).tolist()))
        items = []
        for i in range(len(rows)):
            item: dict[str, Any] = {"links": []}
            for out, vals in values:
                if vals[i] is not None:
                    item[out] = vals[i]
            items.append(item)
        return items
