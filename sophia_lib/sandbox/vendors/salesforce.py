"""Salesforce REST API simulator: OAuth token endpoint, SOQL ``query``/``queryAll``, describe, limits.

Served (relative to the vendor base URL, which is also the ``instance_url`` the token call returns):

* ``POST /services/oauth2/token`` — ``refresh_token`` and ``client_credentials`` grants. The answer
  has ``access_token, instance_url, id, token_type, issued_at, signature, scope`` and **no
  ``expires_in``** (sessions last 2 h). With ``tokens.rotate_refresh`` a new ``refresh_token`` comes
  back and the old one dies. Errors use the OAuth shape (``invalid_grant`` …) with HTTP 400.
* ``GET /services/data/`` (versions), ``/services/data/vNN.0/limits``, ``…/sobjects``,
  ``…/sobjects/{Object}/describe``.
* ``GET /services/data/vNN.0/query?q=SOQL`` and ``…/queryAll`` (also returns ``IsDeleted = true``
  rows). Results are held server-side: a page is at most the batch size (``Sforce-Query-Options:
  batchSize=N``, 200..2000, default 2000) and ``nextRecordsUrl`` (``…/query/{locatorId}-{offset}``)
  fetches the next one. Locators expire after ``locator_idle_s`` idle seconds or on
  :meth:`SalesforceSimulator.expire_query_locators` (``INVALID_QUERY_LOCATOR``).

SOQL subset (see :mod:`._soql`): field lists with one-level relationship paths (``Account.Name``),
``FIELDS(ALL|STANDARD|CUSTOM)``, ``COUNT()``, ``WHERE`` with ``= != < <= > >= IN LIKE``, AND/OR/NOT,
unquoted datetime/date literals, ``ORDER BY … ASC|DESC NULLS FIRST|LAST``, ``LIMIT``, ``OFFSET``.
Type mismatches, unknown fields and objects answer Salesforce's errors (``INVALID_FIELD``,
``INVALID_TYPE``, ``MALFORMED_QUERY``) in its JSON-array envelope.

Every ``/services/data`` response carries ``Sforce-Limit-Info: api-usage=N/LIMIT``; past the daily
allocation (``api_limit``) or on a throttle fault the answer is **403** ``REQUEST_LIMIT_EXCEEDED``
without ``Retry-After``. Note that ``User`` has no ``IsDeleted`` (users are deactivated, never
deleted) and ``OpportunityHistory`` has no ``LastModifiedDate`` (use ``SystemModstamp``), as in
the real org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore
from sophia_lib.sandbox.simulator.base import Handler, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register
from sophia_lib.sandbox.vendors._soql import Col, Query, QueryError, mask, parse, row_col, sort_index

API_VERSION = "62.0"
VERSIONS = [f"{v}.0" for v in range(50, 63)]
CLIENT_ID = "3MVG9sandboxSophiaDemoConnectedApp"
CLIENT_SECRET = "sandbox-salesforce-secret"  # noqa: S105 - demo credential of the simulator
REFRESH_TOKEN = "5Aep861sandboxSophiaDemoRefresh"  # noqa: S105
ORG_ID = "00D5e000000SoPHAAA"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_BATCH, MIN_BATCH, MAX_BATCH = 2000, 200, 2000
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
STRING_TYPES = {"id", "reference", "string", "picklist", "email", "phone", "url", "textarea"}
NUMBER_TYPES = {"double", "currency", "percent", "int"}
SOAP_TYPES = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime",
              "date": "xsd:date", "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
              "int": "xsd:int"}
TYPE_WORDS = {"datetime": "dateTime", "date": "date", "boolean": "boolean", "double": "double",
              "currency": "currency", "percent": "percent", "int": "int"}
OPP_TYPES = {"new_business": "New Business", "renewal": "Renewal", "expansion": "Expansion"}
FORECAST_API = {"Pipeline": "Pipeline", "Best Case": "BestCase", "Commit": "Forecast", "Closed": "Closed",
                "Omitted": "Omitted"}


def sf_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Salesforce's REST error envelope: a JSON array of ``{message, errorCode}``."""
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@dataclass(frozen=True)
class SfField:
    name: str
    type: str
    ref: str | None = None  # referenced object
    rel: str | None = None  # relationship name (Account for AccountId)
    custom: bool = False
    compound: str | None = None
    nillable: bool = True

    def describe(self) -> dict[str, Any]:
        label = self.name.removesuffix("__c").removesuffix("Id").replace("_", " ") or self.name
        return {
            "name": self.name, "label": label, "type": self.type, "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "length": 0 if self.type not in STRING_TYPES else (18 if self.type in ("id", "reference") else 255),
            "precision": 18 if self.type in ("double", "currency") else 0,
            "scale": 2 if self.type in ("double", "currency") else 0,
            "digits": 9 if self.type == "int" else 0,
            "nillable": self.nillable, "custom": self.custom, "calculated": False,
            "compoundFieldName": self.compound, "referenceTo": [self.ref] if self.ref else [],
            "relationshipName": self.rel, "filterable": True, "sortable": self.type != "textarea",
            "groupable": self.type not in ("double", "currency", "percent", "datetime"),
            "unique": False, "externalId": False, "idLookup": self.name == "Id",
            "createable": self.name not in ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate"),
            "updateable": self.name not in ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate"),
            "defaultValue": None, "picklistValues": [], "permissionable": self.nillable and self.name != "Id",
        }


def F(name: str, type_: str, ref: str | None = None, **kw: Any) -> SfField:  # noqa: N802 - a short table builder
    rel = kw.pop("rel", None) or (name.removesuffix("Id") if ref else None)
    return SfField(name, type_, ref, rel, **kw)


STAMPS = [F("CreatedDate", "datetime", nillable=False), F("LastModifiedDate", "datetime", nillable=False),
          F("SystemModstamp", "datetime", nillable=False)]
ID_DEL = [F("Id", "id", nillable=False), F("IsDeleted", "boolean", nillable=False)]

OBJECTS: dict[str, tuple[str, str, list[SfField]]] = {
    "Account": ("001", "Accounts", [
        *ID_DEL, F("Name", "string", nillable=False), F("Type", "picklist"), F("Industry", "picklist"),
        F("Website", "url"), F("Phone", "phone"), F("BillingCountry", "string"),
        F("NumberOfEmployees", "int"), F("AnnualRevenue", "currency"), F("OwnerId", "reference", "User"),
        F("Segment__c", "picklist", custom=True), F("Region__c", "picklist", custom=True),
        F("Customer_Since__c", "date", custom=True), F("Churn_Date__c", "date", custom=True), *STAMPS]),
    "Contact": ("003", "Contacts", [
        *ID_DEL, F("AccountId", "reference", "Account"), F("FirstName", "string", compound="Name"),
        F("LastName", "string", compound="Name", nillable=False), F("Name", "string", nillable=False),
        F("Email", "email"), F("Phone", "phone"), F("Title", "string"), F("OwnerId", "reference", "User"),
        F("Lifecycle_Stage__c", "picklist", custom=True), *STAMPS]),
    "Opportunity": ("006", "Opportunities", [
        *ID_DEL, F("AccountId", "reference", "Account"), F("Name", "string", nillable=False),
        F("Type", "picklist"), F("Amount", "currency"), F("StageName", "picklist", nillable=False),
        F("Probability", "percent"), F("ExpectedRevenue", "currency"), F("CloseDate", "date", nillable=False),
        F("IsClosed", "boolean", nillable=False), F("IsWon", "boolean", nillable=False),
        F("LeadSource", "picklist"), F("ForecastCategory", "picklist", nillable=False),
        F("ForecastCategoryName", "picklist"), F("FiscalYear", "int"), F("FiscalQuarter", "int"),
        F("HasOpportunityLineItem", "boolean", nillable=False), F("OwnerId", "reference", "User"), *STAMPS]),
    "OpportunityHistory": ("008", "Opportunity History", [
        *ID_DEL, F("OpportunityId", "reference", "Opportunity", nillable=False), F("StageName", "picklist"),
        F("Amount", "currency"), F("ExpectedRevenue", "currency"), F("CloseDate", "date"),
        F("Probability", "percent"), F("ForecastCategory", "picklist"),
        F("CreatedById", "reference", "User", rel="CreatedBy"), F("CreatedDate", "datetime", nillable=False),
        F("SystemModstamp", "datetime", nillable=False)]),
    "User": ("005", "Users", [
        F("Id", "id", nillable=False), F("Username", "string", nillable=False), F("Email", "email", nillable=False),
        F("FirstName", "string", compound="Name"), F("LastName", "string", compound="Name", nillable=False),
        F("Name", "string", nillable=False), F("Title", "string"), F("Department", "string"),
        F("Division", "string"), F("IsActive", "boolean", nillable=False), F("ManagerId", "reference", "User"),
        F("UserType", "picklist"), *STAMPS]),
    "Task": ("00T", "Tasks", [
        *ID_DEL, F("Subject", "string"), F("Status", "picklist", nillable=False), F("Priority", "picklist"),
        F("ActivityDate", "date"), F("WhoId", "reference", "Contact"), F("WhatId", "reference", "Opportunity"),
        F("AccountId", "reference", "Account"), F("OwnerId", "reference", "User"), F("TaskSubtype", "picklist"),
        F("IsClosed", "boolean", nillable=False), F("CompletedDateTime", "datetime"), *STAMPS]),
    "Event": ("00U", "Events", [
        *ID_DEL, F("Subject", "string"), F("StartDateTime", "datetime"), F("EndDateTime", "datetime"),
        F("ActivityDateTime", "datetime"), F("ActivityDate", "date"), F("DurationInMinutes", "int"),
        F("WhoId", "reference", "Contact"), F("WhatId", "reference", "Opportunity"),
        F("AccountId", "reference", "Account"), F("OwnerId", "reference", "User"), F("EventSubtype", "picklist"),
        *STAMPS]),
}


@dataclass
class SfObject:
    """One sObject: its fields and a frame of typed values (``_mod``/``_deleted`` internal, sorted by ``_mod``)."""

    name: str
    key_prefix: str
    plural: str
    fields: list[SfField]
    frame: pd.DataFrame
    by_lower: dict[str, SfField] = field(default_factory=dict)
    rels: dict[str, SfField] = field(default_factory=dict)
    _by_id: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        self.by_lower = {f.name.lower(): f for f in self.fields}
        self.rels = {f.rel.lower(): f for f in self.fields if f.rel}

    @property
    def by_id(self) -> pd.DataFrame:
        if self._by_id is None:
            self._by_id = self.frame.set_index("Id")
        return self._by_id


@dataclass
class Locator:
    frame: pd.DataFrame
    obj: SfObject
    fields: list[tuple[str, SfField, SfField | None]]  # (output path, field, related field)
    positions: np.ndarray
    used_at: float
    kind: str = "query"  # or queryAll: the path nextRecordsUrl points at


# --- rendering helpers ---------------------------------------------------------------------------------
def _ms(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series, utc=True)
    return s.dt.floor("ms")


def _date_str(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series)
    out = s.dt.strftime("%Y-%m-%d").astype(object)
    return out.where(s.notna(), None)


def _obj(series: pd.Series) -> pd.Series:
    """Strings as object dtype with None for missing (JSON null), whatever pandas string dtype came in."""
    out = series.astype(object)
    return out.where(series.notna(), None)


def _sf_ids(company: Any, entity: str) -> pd.Series:
    """Canonical id → the Salesforce id of its primary (non-duplicate, live) record."""
    p = company.presence_of(entity, "salesforce")
    p = p.sort_values(["is_duplicate", "created_at"], kind="stable")
    p = p[p["deleted_at"].isna()] if "deleted_at" in p else p
    return p.drop_duplicates("entity_id").set_index("entity_id")["system_id"]


def _map(values: pd.Series, mapping: pd.Series) -> pd.Series:
    return _obj(values.map(mapping))


def _presence_frame(company: Any, entity: str, table: str, key: str) -> pd.DataFrame:
    p = company.presence_of(entity, "salesforce")
    p = p.rename(columns={c: f"{c}_p" for c in p.columns if c != "system_id"})
    base = company[table]
    merged = p.merge(base, left_on="entity_id_p", right_on=key, how="inner")
    merged["_created"] = merged[["created_at_p", "created_at"]].min(axis=1)
    merged["_mod"] = merged[["updated_at_p", "updated_at"]].max(axis=1)
    merged["_deleted"] = merged["deleted_at_p"].notna() | merged["deleted_at"].notna()
    return merged.reset_index(drop=True)


def _split_name(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = full.astype(str).str.strip().str.split(" ", n=1, expand=True)
    if parts.shape[1] == 1:
        parts[1] = None
    first = parts[0].where(parts[1].notna(), None)
    last = parts[1].where(parts[1].notna(), parts[0])
    return _obj(first), _obj(last)


def _finish(columns: dict[str, Any], created: pd.Series, mod: pd.Series, deleted: pd.Series,
            has_last_modified: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame["CreatedDate"] = _ms(created).to_numpy()
    if has_last_modified:
        frame["LastModifiedDate"] = _ms(mod).to_numpy()
    frame["SystemModstamp"] = _ms(mod).to_numpy()
    frame["_mod"] = _ms(mod).to_numpy()
    frame["_deleted"] = np.asarray(deleted, dtype=bool)
    return frame.sort_values(["_mod", "Id"], kind="stable").reset_index(drop=True)


def render_objects(company: Any) -> dict[str, SfObject]:
    """Every served sObject from the company tables (vectorised)."""
    users = _sf_ids(company, "employee")
    accounts = _sf_ids(company, "account")
    contacts = _sf_ids(company, "person")
    opps_all = company["opportunities"]
    opp_ids = opps_all.set_index("opportunity_id")["system_id"]
    frames: dict[str, pd.DataFrame] = {}

    a = _presence_frame(company, "account", "accounts", "account_id")
    churned, since = pd.to_datetime(a["churned_at"], utc=True), pd.to_datetime(a["customer_since"], utc=True)
    acct_type = np.where(churned.notna(), "Former Customer", np.where(since.notna(), "Customer", "Prospect"))
    frames["Account"] = _finish({
        "Id": _obj(a["system_id"]), "IsDeleted": a["_deleted"].to_numpy(),
        "Name": _obj(a["name_p"].fillna(a["name"])), "Type": acct_type.astype(object),
        "Industry": _obj(a["industry"]), "Website": _obj(a["domain_p"].fillna(a["domain"])),
        "Phone": _obj(a["phone_p"]), "BillingCountry": _obj(a["country"]),
        "NumberOfEmployees": pd.to_numeric(a["employee_count"], errors="coerce").astype(float),
        "AnnualRevenue": pd.to_numeric(a["annual_revenue"], errors="coerce").astype(float),
        "OwnerId": _map(a["owner_id"], users), "Segment__c": _obj(a["segment"]), "Region__c": _obj(a["region"]),
        "Customer_Since__c": _date_str(a["customer_since"]), "Churn_Date__c": _date_str(a["churned_at"]),
    }, a["_created"], a["_mod"], a["_deleted"])

    c = _presence_frame(company, "person", "people", "person_id")
    full = c["name_p"].fillna(c["first_name"].astype(str) + " " + c["last_name"].astype(str))
    first, last = _split_name(full)
    acct_owner = company["accounts"].set_index("account_id")["owner_id"]
    frames["Contact"] = _finish({
        "Id": _obj(c["system_id"]), "IsDeleted": c["_deleted"].to_numpy(), "AccountId": _map(c["account_id"], accounts),
        "FirstName": first, "LastName": last, "Name": _obj(full.str.strip()),
        "Email": _obj(c["email_p"].fillna(c["email"])), "Phone": _obj(c["phone_p"].fillna(c["phone"])),
        "Title": _obj(c["title"]), "OwnerId": _map(c["account_id"].map(acct_owner), users),
        "Lifecycle_Stage__c": _obj(c["lifecycle_stage"]),
    }, c["_created"], c["_mod"], c["_deleted"])

    o = opps_all
    amount = pd.to_numeric(o["amount"], errors="coerce").astype(float)
    prob = pd.to_numeric(o["probability"], errors="coerce").astype(float)
    close = pd.to_datetime(o["close_date"])
    frames["Opportunity"] = _finish({
        "Id": _obj(o["system_id"]), "IsDeleted": o["deleted_at"].notna().to_numpy(),
        "AccountId": _map(o["account_id"], accounts), "Name": _obj(o["name"]),
        "Type": _obj(o["type"].map(OPP_TYPES).fillna(o["type"])), "Amount": amount, "StageName": _obj(o["stage"]),
        "Probability": prob, "ExpectedRevenue": (amount * prob / 100.0).round(2), "CloseDate": _date_str(close),
        "IsClosed": o["is_closed"].astype(bool).to_numpy(), "IsWon": o["is_won"].astype(bool).to_numpy(),
        "LeadSource": _obj(o["lead_source"]),
        "ForecastCategory": _obj(o["forecast_category"].map(FORECAST_API).fillna(o["forecast_category"])),
        "ForecastCategoryName": _obj(o["forecast_category"]), "FiscalYear": close.dt.year.astype(float),
        "FiscalQuarter": close.dt.quarter.astype(float), "HasOpportunityLineItem": False,
        "OwnerId": _map(o["owner_id"], users),
    }, o["created_at"], o["updated_at"], o["deleted_at"].notna())

    h = company["opportunity_history"].merge(
        opps_all[["opportunity_id", "owner_id", "deleted_at", "forecast_category"]].rename(
            columns={"deleted_at": "_opp_deleted", "forecast_category": "_fc"}), on="opportunity_id", how="left")
    h_amount = pd.to_numeric(h["amount"], errors="coerce").astype(float)
    h_prob = pd.to_numeric(h["probability"], errors="coerce").astype(float)
    h_deleted = h["deleted_at"].notna() | h["_opp_deleted"].notna()
    h_mod = h[["updated_at", "_opp_deleted"]].max(axis=1)
    stage_fc = {"Closed Won": "Closed", "Closed Lost": "Omitted", "Negotiation/Review": "Forecast",
                "Proposal/Price Quote": "BestCase"}
    frames["OpportunityHistory"] = _finish({
        "Id": _obj(h["system_id"]), "IsDeleted": h_deleted.to_numpy(),
        "OpportunityId": _map(h["opportunity_id"], opp_ids), "StageName": _obj(h["stage"]), "Amount": h_amount,
        "ExpectedRevenue": (h_amount * h_prob / 100.0).round(2), "CloseDate": _date_str(h["close_date"]),
        "Probability": h_prob, "ForecastCategory": _obj(h["stage"].map(stage_fc).fillna("Pipeline")),
        "CreatedById": _map(h["owner_id"], users),
    }, h["changed_at"], h_mod, h_deleted, has_last_modified=False)

    u = _presence_frame(company, "employee", "employees", "employee_id")
    email = _obj(u["email_p"].fillna(u["email"]))
    u_full = u["first_name"].astype(str) + " " + u["last_name"].astype(str)
    frames["User"] = _finish({
        "Id": _obj(u["system_id"]), "Username": _obj(email.str.lower() + ".sandbox"), "Email": email,
        "FirstName": _obj(u["first_name"]), "LastName": _obj(u["last_name"]), "Name": _obj(u_full),
        "Title": _obj(u["title"]), "Department": _obj(u["department"]), "Division": _obj(u["team"]),
        "IsActive": (u["is_active"].fillna(False).astype(bool) & ~u["_deleted"]).to_numpy(),
        "ManagerId": _map(u["manager_id"], users), "UserType": "Standard",
    }, u["_created"], u["_mod"], np.zeros(len(u), dtype=bool))

    act = company["activities"]
    act = act[act["system"] == "salesforce"]
    for name, kinds in (("Task", ("task", "email")), ("Event", ("event", "meeting"))):
        t = act[act["kind"].isin(kinds)]
        occurred = _ms(t["occurred_at"])
        common = {
            "Id": _obj(t["system_id"]), "IsDeleted": t["deleted_at"].notna().to_numpy(), "Subject": _obj(t["subject"]),
            "WhoId": _map(t["person_id"], contacts), "WhatId": _map(t["opportunity_id"], opp_ids),
            "AccountId": _map(t["account_id"], accounts), "OwnerId": _map(t["owner_id"], users),
            "ActivityDate": _date_str(t["occurred_at"]),
        }
        if name == "Task":
            closed = (t["status"] == "Completed").to_numpy()
            common |= {"Status": _obj(t["status"]), "Priority": "Normal",
                       "TaskSubtype": np.where(t["kind"] == "email", "Email", "Task").astype(object),
                       "IsClosed": closed, "CompletedDateTime": occurred.where(closed)}
        else:
            common |= {"StartDateTime": occurred, "EndDateTime": occurred + pd.Timedelta(minutes=30),
                       "ActivityDateTime": occurred, "DurationInMinutes": 30.0, "EventSubtype": "Event"}
        frames[name] = _finish(common, t["created_at"], t["updated_at"], t["deleted_at"].notna())

    out = {}
    for name, (prefix, plural, fields) in OBJECTS.items():
        frame = frames[name]
        frame = frame[[f.name for f in fields] + ["_mod", "_deleted"]]
        out[name] = SfObject(name, prefix, plural, fields, frame)
    return out


# --- wire formatting ---------------------------------------------------------------------------------
def wire_values(series: pd.Series, sf_type: str) -> list[Any]:
    """A column as JSON values: datetimes ``…T10:22:33.000+0000``, ints, floats, bools, null."""
    present = series.notna()
    if sf_type == "datetime":
        s = pd.to_datetime(series, utc=True)
        text = s.dt.strftime("%Y-%m-%dT%H:%M:%S.") + (s.dt.microsecond // 1000).astype("Int64").astype(str).str.zfill(3)
        return (text + "+0000").astype(object).where(present, None).tolist()
    if sf_type == "int":
        return [int(v) if ok else None for v, ok in zip(series.tolist(), present.tolist(), strict=True)]
    if sf_type in NUMBER_TYPES:
        return [float(v) if ok else None for v, ok in zip(series.tolist(), present.tolist(), strict=True)]
    if sf_type == "boolean":
        return [bool(v) for v in series.tolist()]
    return series.astype(object).where(present, None).tolist()


# --- the simulator -------------------------------------------------------------------------------------
@register
class SalesforceSimulator(SimulatedVendor):
    """Salesforce over one company. ``api_limit`` is the org's daily API allocation."""

    name = "salesforce"
    api_limit: int = 100_000
    locator_idle_s: float = 900.0
    max_locators: int = 200

    def setup_credentials(self) -> None:
        self.tokens = TokenStore(f"{ORG_ID}!AQ", access_ttl_s=7200.0)
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID, ("api", "refresh_token"))
        self.api_used = 0
        self._usage_lock = threading.Lock()
        self._locators: OrderedDict[str, Locator] = OrderedDict()

    def credentials(self) -> dict[str, str]:
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}

    def render(self) -> None:
        self.objects = render_objects(self.company)
        self._lower = {name.lower(): obj for name, obj in self.objects.items()}

    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        data = "/services/data/{version}"
        table: list[tuple[str, Handler, list[str]]] = [
            ("/services/oauth2/token", self.token, ["POST"]),
            ("/services/data", self.versions, ["GET"]),
            ("/services/data/", self.versions, ["GET"]),
            (data + "/limits", self.limits, ["GET"]),
            (data + "/sobjects", self.describe_global, ["GET"]),
            (data + "/sobjects/{sobject}/describe", self.describe, ["GET"]),
        ]
        for kind in ("query", "queryAll"):
            table += [(f"{data}/{kind}", self.query, ["GET"]), (f"{data}/{kind}/{{locator}}", self.query_more, ["GET"])]
        return table + [(p + "/", h, m) for p, h, m in table if not p.endswith("/") and p != "/services/data"]

    # --- vendor answers ------------------------------------------------------------------------------
    def throttle_response(self, request: Request, fault: Fault) -> Response:
        return JSONResponse(LIMIT_EXCEEDED, status_code=403)

    def error_response(self, request: Request, status: int, message: str) -> Response:
        code = {400: "BAD_REQUEST", 404: "NOT_FOUND", 503: "SERVER_UNAVAILABLE"}.get(status, "UNKNOWN_EXCEPTION")
        if status == 500:
            message = f"An unexpected error occurred. Please include this ErrorId if you contact support: " \
                      f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**5)} ({message})"
        return sf_error(status, code, message)

    def expired_token_response(self, request: Request) -> Response:
        return JSONResponse(SESSION_EXPIRED, status_code=401)

    def guard(self, path: str, handler: Handler) -> Handler:
        inner = super().guard(path, handler)
        if not path.startswith("/services/data"):
            return inner

        async def endpoint(request: Request) -> Response:
            with self._usage_lock:
                self.api_used += 1
                over = self.api_used > self.api_limit
            info = {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"}
            if over:
                return JSONResponse(LIMIT_EXCEEDED, status_code=403, headers=info)
            response = await inner(request)
            response.headers.update(info)
            return response

        endpoint.__name__ = getattr(inner, "__name__", "endpoint")
        return endpoint

    def expire_query_locators(self) -> None:
        """Forget every open query cursor (the next ``nextRecordsUrl`` answers ``INVALID_QUERY_LOCATOR``)."""
        self._locators.clear()

    # --- auth ------------------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = str(form.get("grant_type", ""))
        client_id, secret = str(form.get("client_id", "")), form.get("client_secret")
        if grant not in ("refresh_token", "client_credentials"):
            return oauth_error("unsupported_grant_type", "grant type not supported")
        if client_id != CLIENT_ID:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if (secret is not None or grant == "client_credentials") and secret != CLIENT_SECRET:
            return oauth_error("invalid_client", "invalid client credentials")
        if grant == "refresh_token":
            try:
                access, refresh = self.tokens.refresh(str(form.get("refresh_token", "")), client_id)
            except InvalidGrant:
                return oauth_error("invalid_grant", "expired access/refresh token")
        else:
            access, refresh = self.tokens.issue(client_id, ("api",), with_refresh=False)
        url = request.url  # the vendor mount is this server's "My Domain": instance_url = base URL
        instance = f"{url.scheme}://{url.netloc}{url.path.rsplit('/services/oauth2/token', 1)[0]}"
        user = self.objects["User"].frame["Id"]
        identity = f"{instance}/id/{ORG_ID}/{user.iloc[0] if len(user) else '005000000000000AAA'}"
        issued = str(int(time.time() * 1000))
        signature = base64.b64encode(hmac.new(CLIENT_SECRET.encode(), (identity + issued).encode(),
                                              hashlib.sha256).digest()).decode()
        body = {"access_token": access.value, "instance_url": instance, "id": identity, "token_type": "Bearer",
                "issued_at": issued, "signature": signature, "scope": " ".join(access.scopes) or "api"}
        if grant == "refresh_token" and self.tokens.rotate_refresh and refresh is not None:
            body["refresh_token"] = refresh.value
        return JSONResponse(body)

    def _version(self, request: Request) -> str:
        raw = request.path_params.get("version", "")
        if not raw.startswith("v") or raw[1:] not in VERSIONS:
            raise Reply(sf_error(404, "NOT_FOUND", "The requested resource does not exist"))
        return raw[1:]

    # --- metadata --------------------------------------------------------------------------------------
    async def versions(self, request: Request) -> Response:
        out = []
        for v in VERSIONS:
            k = int(float(v)) - 60
            season = ("Spring", "Summer", "Winter")[k % 3]
            year = 24 + k // 3 + (1 if season == "Winter" else 0)
            out.append({"label": f"{season} '{year:02d}", "url": f"/services/data/v{v}", "version": v})
        return JSONResponse(out)

    async def limits(self, request: Request) -> Response:
        self.require_bearer(request)
        self._version(request)
        return JSONResponse({
            "DailyApiRequests": {"Max": self.api_limit, "Remaining": max(self.api_limit - self.api_used, 0)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        })

    def _sobject_summary(self, obj: SfObject, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{obj.name}"
        return {"name": obj.name, "label": obj.name, "labelPlural": obj.plural, "keyPrefix": obj.key_prefix,
                "custom": False, "queryable": True, "retrieveable": True, "replicateable": True,
                "searchable": obj.name != "OpportunityHistory", "deletable": obj.name not in ("User",
                                                                                              "OpportunityHistory"),
                "createable": obj.name != "OpportunityHistory", "updateable": obj.name != "OpportunityHistory",
                "urls": {"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"}}

    async def describe_global(self, request: Request) -> Response:
        self.require_bearer(request)
        version = self._version(request)
        return JSONResponse({"encoding": "UTF-8", "maxBatchSize": 200,
                             "sobjects": [self._sobject_summary(o, version) for o in self.objects.values()]})

    async def describe(self, request: Request) -> Response:
        self.require_bearer(request)
        version = self._version(request)
        obj = self._lower.get(request.path_params["sobject"].lower())
        if obj is None:
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        return JSONResponse(self._sobject_summary(obj, version) | {
            "fields": [f.describe() for f in obj.fields], "childRelationships": [], "recordTypeInfos": []})

    # --- SOQL ------------------------------------------------------------------------------------------
    def _batch_size(self, request: Request, default: int = DEFAULT_BATCH) -> int:
        options = request.headers.get("sforce-query-options", "")
        for part in options.split(","):
            key, _, value = part.partition("=")
            if key.strip().lower() == "batchsize" and value.strip().isdigit():
                return min(max(int(value.strip()), MIN_BATCH), MAX_BATCH)
        return default

    async def query(self, request: Request) -> Response:
        self.require_bearer(request)
        version = self._version(request)
        include_deleted = request.url.path.rstrip("/").endswith("queryAll")
        text = request.query_params.get("q")
        if text is None:
            return sf_error(400, "MALFORMED_QUERY", "A query string must be provided.")
        try:
            query = parse(text, "soql")
            obj = self._lower.get(query.source.lower())
            if obj is None:
                raise QueryError("object", f"sObject type '{query.source}' is not supported. If you are attempting "
                                 "to use a custom object, be sure to append the '__c' after the entity name. Please "
                                 "reference your WSDL or the describe call for the appropriate names.",
                                 query.source_pos)
            fields = self._select_fields(query, obj)
            rows = self._run(query, obj, include_deleted)
        except QueryError as exc:
            return self._query_error(text, exc)
        if query.count_only:
            return JSONResponse({"totalSize": len(rows), "done": True, "records": []})
        locator = Locator(obj.frame, obj, fields, rows, time.time(), "queryAll" if include_deleted else "query")
        return self._page(request, version, locator, None, 0, self._batch_size(request))

    async def query_more(self, request: Request) -> Response:
        self.require_bearer(request)
        version = self._version(request)
        raw = request.path_params["locator"]
        locator_id, _, offset = raw.rpartition("-")
        locator = self._locators.get(locator_id)
        if locator is not None and time.time() - locator.used_at > self.locator_idle_s:
            self._locators.pop(locator_id, None)
            locator = None
        if locator is None or not offset.isdigit() or int(offset) > len(locator.positions):
            return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        locator.used_at = time.time()
        self._locators.move_to_end(locator_id)
        return self._page(request, version, locator, locator_id, int(offset), self._batch_size(request))

    def _page(self, request: Request, version: str, loc: Locator, locator_id: str | None, start: int,
              size: int) -> Response:
        total = len(loc.positions)
        lo = max(start - 1, 0)  # one record back, so a duplicate_record fault can repeat it
        window = self._records(loc, loc.positions[lo:start + size], version)
        records = self.page(request, window, start - lo, size)
        done = start + size >= total
        body: dict[str, Any] = {"totalSize": total, "done": done}
        if not done:
            if locator_id is None:
                locator_id = "01g5e" + "".join(secrets.choice(BASE62) for _ in range(13))
                self._locators[locator_id] = loc
                while len(self._locators) > self.max_locators:
                    self._locators.popitem(last=False)
            body["nextRecordsUrl"] = f"/services/data/v{version}/{loc.kind}/{locator_id}-{start + size}"
        body["records"] = records
        return JSONResponse(body)

    def _records(self, loc: Locator, positions: np.ndarray, version: str) -> list[dict[str, Any]]:
        rows = loc.frame.iloc[positions]
        ids = rows["Id"].tolist()
        columns: list[tuple[list[str], list[Any]]] = []
        for path, f, rel_field in loc.fields:
            if rel_field is None:
                columns.append(([path], wire_values(rows[f.name], f.type)))
                continue
            target = self.objects[f.ref or ""]
            ref_ids = rows[f.name]
            values = wire_values(ref_ids.map(target.by_id[rel_field.name]), rel_field.type)
            columns.append((path.split("."), list(zip(ref_ids.tolist(), values, strict=True))))
        out = []
        prefix = f"/services/data/v{version}/sobjects/{loc.obj.name}/"
        for i, record_id in enumerate(ids):
            rec: dict[str, Any] = {"attributes": {"type": loc.obj.name, "url": prefix + record_id}}
            for path, values in columns:
                if len(path) == 1:
                    rec[path[0]] = values[i]
                    continue
                ref_id, value = values[i]
                rel_name = path[0]
                if ref_id is None:
                    rec[rel_name] = None
                    continue
                target = self._rel_target(loc.obj, rel_name)
                nested = rec.get(rel_name) or {"attributes": {
                    "type": target, "url": f"/services/data/v{version}/sobjects/{target}/{ref_id}"}}
                nested[path[1]] = value
                rec[rel_name] = nested
            out.append(rec)
        return out

    def _rel_target(self, obj: SfObject, rel_name: str) -> str:
        return obj.rels[rel_name.lower()].ref or ""

    def _field(self, obj: SfObject, col: Col) -> tuple[str, SfField, SfField | None]:
        """Resolve a field path (``Name`` or ``Account.Name``) to (output path, field, related field)."""
        parts = col.name.split(".")
        if len(parts) == 2 and parts[0].lower() == obj.name.lower():  # Opportunity.Name on Opportunity
            parts = parts[1:]
        if len(parts) == 1:
            f = obj.by_lower.get(parts[0].lower())
            if f is None:
                raise QueryError("field", f"No such column '{parts[0]}' on entity '{obj.name}'. If you are "
                                 "attempting to use a custom field, be sure to append the '__c' after the custom "
                                 "field name. Please reference your WSDL or the describe call for the appropriate "
                                 "names.", col.pos, parts[0])
            return f.name, f, None
        link = obj.rels.get(parts[0].lower())
        if link is None or len(parts) > 2:
            raise QueryError("field", f"Didn't understand relationship '{parts[0]}' in field path. If you are "
                             "attempting to use a custom relationship, be sure to append the '__r' after the custom "
                             "relationship name. Please reference your WSDL or the describe call for the appropriate "
                             "names.", col.pos, parts[0])
        target = self.objects[link.ref or ""]
        rel_field = target.by_lower.get(parts[1].lower())
        if rel_field is None:
            raise QueryError("field", f"No such column '{parts[1]}' on entity '{target.name}'. If you are "
                             "attempting to use a custom field, be sure to append the '__c' after the custom field "
                             "name. Please reference your WSDL or the describe call for the appropriate names.",
                             col.pos, parts[1])
        return f"{link.rel}.{rel_field.name}", link, rel_field

    def _select_fields(self, query: Query, obj: SfObject) -> list[tuple[str, SfField, SfField | None]]:
        if query.count_only:
            return []
        if query.fields_fn is not None:
            if query.fields_fn in ("ALL", "CUSTOM") and (query.limit is None or query.limit > 200):
                raise QueryError("malformed", "The SOQL FIELDS function must have a LIMIT of at most 200",
                                 query.source_pos)
            keep = {"ALL": lambda f: True, "STANDARD": lambda f: not f.custom, "CUSTOM": lambda f: f.custom}
            return [(f.name, f, None) for f in obj.fields if keep[query.fields_fn](f)]
        out: list[tuple[str, SfField, SfField | None]] = []
        seen: set[str] = set()
        for item in query.select:
            if not isinstance(item.expr, Col):
                raise QueryError("malformed", "unexpected token: '('", getattr(item.expr, "pos", 0))
            resolved = self._field(obj, item.expr)
            if resolved[0].lower() in seen:
                raise QueryError("malformed", f"duplicate field selected: {resolved[0]}", item.expr.pos)
            seen.add(resolved[0].lower())
            out.append(resolved)
        return out

    def _run(self, query: Query, obj: SfObject, include_deleted: bool) -> np.ndarray:
        frame = obj.frame

        def resolve(node: Any) -> pd.Series:
            if not isinstance(node, Col):
                raise QueryError("malformed", "unexpected token: '('", getattr(node, "pos", 0))
            _, f, rel_field = self._field(obj, node)
            if rel_field is None:
                return frame[f.name]
            return frame[f.name].map(self.objects[f.ref or ""].by_id[rel_field.name])

        def coerce(lit: Any, col: Any) -> Any:
            _, f, rel_field = self._field(obj, col)
            target = rel_field or f
            return self._literal(lit, target)

        keep = mask(query.where, frame, resolve, coerce, null_ne_true=True)
        if not include_deleted:
            keep &= ~frame["_deleted"].to_numpy()
        positions = np.flatnonzero(keep)
        if query.order_by:
            sub = frame.iloc[positions]
            order = sort_index(sub, query.order_by, lambda node: _resolve_sub(resolve, node, positions),
                               nulls_first_asc=True)
            positions = positions[order]
        if query.offset:
            if query.offset > 2000:
                raise QueryError("malformed", "Maximum SOQL offset allowed is 2000", query.source_pos)
            positions = positions[query.offset:]
        if query.limit is not None:
            positions = positions[:query.limit]
        return positions

    @staticmethod
    def _literal(lit: Any, f: SfField) -> Any:
        kind = lit.kind
        if kind == "null":
            return None
        want = "string" if f.type in STRING_TYPES else TYPE_WORDS.get(f.type, f.type)
        ok = {"string": kind == "string", "boolean": kind == "bool", "dateTime": kind == "datetime",
              "date": kind == "date"}.get(want, kind == "number")
        if not ok:
            quoted = "should be enclosed in quotes" if want == "string" else "should not be enclosed in quotes"
            raise QueryError("type", f"value of filter criterion for field '{f.name}' must be of type {want} and "
                             f"{quoted}", lit.pos, f.name)
        if kind == "datetime":
            stamp = pd.Timestamp(lit.value)
            return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
        return lit.value

    def _query_error(self, text: str, exc: QueryError) -> Response:
        if exc.kind == "object":
            return sf_error(400, "INVALID_TYPE", self._pointed(text, exc))
        if exc.kind in ("field", "type"):
            return sf_error(400, "INVALID_FIELD", self._pointed(text, exc))
        return sf_error(400, "MALFORMED_QUERY", self._pointed(text, exc))

    @staticmethod
    def _pointed(text: str, exc: QueryError) -> str:
        """Salesforce's error text: the query line, a caret under the problem, then the reason."""
        row, column = row_col(text, exc.pos)
        line = text.splitlines()[row - 1] if text.splitlines() else text
        return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{exc.message}"


def _resolve_sub(resolve: Any, node: Any, positions: np.ndarray) -> pd.Series:
    return resolve(node).iloc[positions].reset_index(drop=True)
