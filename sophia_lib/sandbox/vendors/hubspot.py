"""HubSpot CRM v3, as a connector sees it (VENDOR-APIS.md section 2).

Objects served:

* ``contacts``: every HubSpot appearance of a person (``presence`` rows with system ``hubspot``, duplicates
  included), with the name/email/phone variants HubSpot shows.
* ``companies``: every HubSpot appearance of an account.
* ``deals``: HubSpot mirrors the Salesforce opportunities of accounts that exist in HubSpot (the
  HubSpot-Salesforce integration syncs them; marketing works in HubSpot, sales in Salesforce). A deal's id
  is a stable number derived from the opportunity id; ``hs_salesforceopportunityid`` keeps the link.
* ``tickets``: served, empty (support lives in Intercom).
* owners: employees of the customer-facing departments, plus everyone who owns an account or deal.

Deletes are HubSpot archives: archived records are only listed with ``archived=true`` (with
``archivedAt``) and never appear in search. List pages go in id order with ``after`` = the next id;
search pages are offsets (``after`` = "200") capped at 10,000 results.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
import uuid
from bisect import bisect_left
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, bearer
from sophia_lib.sandbox.simulator.base import Handler, NativeTable, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.simulator.formats import parse_any
from sophia_lib.sandbox.vendors import register

EPOCH = pd.Timestamp(0, tz="UTC")
TYPE_ALIASES = {"0-1": "contacts", "0-2": "companies", "0-3": "deals", "0-5": "tickets",
                "contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}
OBJECT_TYPES = ("contacts", "companies", "deals", "tickets")
MODIFIED_PROP = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate",
                 "tickets": "hs_lastmodifieddate"}
# (name, type, fieldType, label) per object; type drives filter comparisons.
PROPERTIES: dict[str, list[tuple[str, str, str, str]]] = {
    "contacts": [
        ("firstname", "string", "text", "First Name"), ("lastname", "string", "text", "Last Name"),
        ("email", "string", "text", "Email"), ("phone", "string", "phonenumber", "Phone Number"),
        ("jobtitle", "string", "text", "Job Title"), ("company", "string", "text", "Company Name"),
        ("associatedcompanyid", "number", "number", "Primary Associated Company ID"),
        ("lifecyclestage", "enumeration", "radio", "Lifecycle Stage"),
        ("hubspot_owner_id", "enumeration", "select", "Contact owner"),
        ("createdate", "datetime", "date", "Create Date"),
        ("lastmodifieddate", "datetime", "date", "Last Modified Date"),
        ("hs_object_id", "number", "number", "Record ID"),
    ],
    "companies": [
        ("name", "string", "text", "Company name"), ("domain", "string", "text", "Company Domain Name"),
        ("industry", "enumeration", "select", "Industry"),
        ("numberofemployees", "number", "number", "Number of Employees"),
        ("annualrevenue", "number", "number", "Annual Revenue"), ("country", "string", "text", "Country/Region"),
        ("lifecyclestage", "enumeration", "radio", "Lifecycle Stage"),
        ("hubspot_owner_id", "enumeration", "select", "Company owner"),
        ("createdate", "datetime", "date", "Create Date"),
        ("hs_lastmodifieddate", "datetime", "date", "Last Modified Date"),
        ("hs_object_id", "number", "number", "Record ID"),
    ],
    "deals": [
        ("dealname", "string", "text", "Deal Name"), ("amount", "number", "number", "Amount"),
        ("dealstage", "enumeration", "radio", "Deal Stage"), ("pipeline", "enumeration", "select", "Pipeline"),
        ("closedate", "datetime", "date", "Close Date"), ("dealtype", "enumeration", "radio", "Deal Type"),
        ("hs_is_closed", "bool", "booleancheckbox", "Is Deal Closed?"),
        ("hs_is_closed_won", "bool", "booleancheckbox", "Is Closed Won"),
        ("hs_deal_stage_probability", "number", "number", "Deal Stage Probability"),
        ("hs_salesforceopportunityid", "string", "text", "Salesforce Opportunity ID"),
        ("hubspot_owner_id", "enumeration", "select", "Deal owner"),
        ("createdate", "datetime", "date", "Create Date"),
        ("hs_lastmodifieddate", "datetime", "date", "Last Modified Date"),
        ("hs_object_id", "number", "number", "Record ID"),
    ],
    "tickets": [
        ("subject", "string", "text", "Ticket name"), ("hs_pipeline_stage", "enumeration", "radio", "Ticket status"),
        ("createdate", "datetime", "date", "Create Date"),
        ("hs_lastmodifieddate", "datetime", "date", "Last Modified Date"),
        ("hs_object_id", "number", "number", "Record ID"),
    ],
}
DEFAULT_PROPERTIES = {
    "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
    "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
    "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
              "hs_object_id", "pipeline"],
    "tickets": ["createdate", "hs_lastmodifieddate", "hs_object_id", "hs_pipeline_stage", "subject"],
}
# Canonical (Salesforce-style) stage names → HubSpot's default deal-stage internal ids.
STAGE_IDS = {
    "prospecting": "appointmentscheduled", "discovery": "appointmentscheduled",
    "qualification": "qualifiedtobuy", "qualified": "qualifiedtobuy",
    "needs analysis": "presentationscheduled", "demo": "presentationscheduled",
    "proposal": "decisionmakerboughtin", "proposal/price quote": "decisionmakerboughtin",
    "negotiation": "contractsent", "negotiation/review": "contractsent",
    "closed won": "closedwon", "closed lost": "closedlost",
}
LIFECYCLE = {"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
             "evangelist", "other"}
OWNER_DEPARTMENTS = ("Sales", "Customer Success", "Marketing")
SEARCH_OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                    "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
SEARCH_CAP = 10_000
RATE_MAX, RATE_DAILY = 100, 250_000


def stable_number(keys: pd.Series | list[str], low: int, span: int, salt: str) -> list[str]:
    """Vendor-style numeric ids that depend only on a canonical id (stable across renders and advance)."""
    return [str(low + int.from_bytes(hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=8).digest()) % span)
            for k in keys]


def iso_ms(series: pd.Series) -> pd.Series:
    """Aware timestamps → ``2019-10-30T03:30:17.883Z`` strings (None for NaT), vectorised."""
    s = pd.to_datetime(series, utc=True)
    out = s.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return out.astype(object).where(s.notna(), None)


def utc(series: pd.Series) -> pd.Series:
    """Dates or timestamps, naive (taken as UTC) or aware → aware UTC timestamps."""
    s = pd.to_datetime(series)
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")


def epoch_ms_series(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series, utc=True)
    return ((s - EPOCH) / pd.Timedelta(milliseconds=1)).round()


def text(series: pd.Series) -> pd.Series:
    """Any column → HubSpot property strings (None where missing)."""
    out = series.astype(object).where(series.notna(), None)
    return out.map(lambda v: v if v is None or isinstance(v, str) else _num_str(v))


def _num_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _slug(value: str) -> str:
    return "".join(ch for ch in str(value).lower() if ch.isalnum())


class HubSpotError(Exception):
    """A request HubSpot refuses; becomes its error envelope."""

    def __init__(self, status: int, message: str, category: str = "VALIDATION_ERROR", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.category, self.extra = status, message, category, extra


@register
class HubSpot(SimulatedVendor):
    """HubSpot CRM v3: private-app token or OAuth (30-minute access tokens, refresh token unchanged)."""

    name = "hubspot"
    PRIVATE_APP_TOKEN = "pat-na1-sandbox-0000-4c1d-9e2f-halcyondata"
    CLIENT_ID = "hubspot-sandbox-client"
    CLIENT_SECRET = "hubspot-sandbox-secret"
    REFRESH_TOKEN = "hubspot-sandbox-refresh-token"
    REDIRECT_URI = "http://localhost:8000/oauth/hubspot/callback"

    # --- credentials ---------------------------------------------------------------------
    def setup_credentials(self) -> None:
        self.tokens.access_ttl_s = 1800.0
        self.tokens.add_static(self.PRIVATE_APP_TOKEN, "private-app")
        self.tokens.add_refresh_token(self.REFRESH_TOKEN, self.CLIENT_ID)
        self._known: set[str] = {self.PRIVATE_APP_TOKEN}
        self._codes: dict[str, tuple[str, str]] = {}
        self._calls: deque[float] = deque()
        self._daily = 0
        self._rate_lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        return {"private_app_token": self.PRIVATE_APP_TOKEN, "client_id": self.CLIENT_ID,
                "client_secret": self.CLIENT_SECRET, "refresh_token": self.REFRESH_TOKEN,
                "redirect_uri": self.REDIRECT_URI}

    # --- envelopes -------------------------------------------------------------------------
    @staticmethod
    def envelope(status: int, message: str, category: str, **extra: Any) -> JSONResponse:
        body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
        body.update(extra)
        return JSONResponse(body, status_code=status)

    def error_response(self, request: Request, status: int, message: str) -> Response:
        category = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES",
                    404: "OBJECT_NOT_FOUND", 429: "RATE_LIMITS"}.get(status, "INTERNAL_ERROR")
        return self.envelope(status, message, category)

    def error_response_for_body(self, exc: Exception) -> Response:
        return self.envelope(400, f"Invalid input JSON on line 1, column 1: {exc}", "VALIDATION_ERROR")

    def expired_token_response(self, request: Request) -> Response:
        return self.envelope(401, "The OAuth token used to make this call expired 0 second(s) ago.",
                             "EXPIRED_AUTHENTICATION", context={"expiredAt": [time.strftime("%Y-%m-%dT%H:%M:%SZ")]})

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        policy = str(fault.params.get("policyName", "TEN_SECONDLY_ROLLING")).upper()
        message = {"DAILY": "You have reached your daily limit.",
                   "SECONDLY": "You have reached your secondly limit."}.get(
            policy, "You have reached your ten_secondly_rolling limit.")
        body = {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()), "policyName": policy, "requestId": str(uuid.uuid4())}
        headers = self._rate_headers(count=False)
        if policy == "DAILY":
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
        else:
            headers["X-HubSpot-RateLimit-Remaining"] = "0"
        return JSONResponse(body, status_code=429, headers=headers)

    def _rate_headers(self, count: bool = True) -> dict[str, str]:
        """X-HubSpot-RateLimit-* for a Free/Starter private app (100 per 10 s, 250k per day)."""
        now = time.monotonic()
        with self._rate_lock:
            if count:
                self._calls.append(now)
                self._daily += 1
            while self._calls and self._calls[0] < now - 10:
                self._calls.popleft()
            used, daily = len(self._calls), self._daily
        return {"X-HubSpot-RateLimit-Daily": str(RATE_DAILY),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, RATE_DAILY - daily)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "X-HubSpot-RateLimit-Max": str(RATE_MAX),
                "X-HubSpot-RateLimit-Remaining": str(max(0, RATE_MAX - used)),
                "X-HubSpot-RateLimit-Secondly": str(RATE_MAX // 10),
                "X-HubSpot-RateLimit-Secondly-Remaining": str(max(0, RATE_MAX // 10 - min(used, RATE_MAX // 10)))}

    def _ok(self, body: Any, status: int = 200, rate_headers: bool = True) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=self._rate_headers() if rate_headers else None)

    def _auth(self, request: Request) -> None:
        token = bearer(request.headers.get("authorization"))
        if token is not None and self.tokens.check(token) is not None:
            return
        if token is not None and token in self._known:
            raise Reply(self.expired_token_response(request))
        raise Reply(self.envelope(
            401, "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
                 "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION"))

    # --- rendering -------------------------------------------------------------------------
    def render(self) -> None:
        c = self.company
        self.owner_ids, owners = self._render_owners()
        companies, company_of_account = self._render_companies()
        contacts = self._render_contacts(company_of_account)
        deals = self._render_deals(company_of_account)
        # reverse associations for companies
        by_company: dict[str, dict[str, list[str]]] = {}
        for kind, records in (("contacts", contacts), ("deals", deals)):
            for rec in records:
                for cid in rec["_assoc"].get("companies", []):
                    by_company.setdefault(cid, {}).setdefault(kind, []).append(rec["id"])
        for rec in companies:
            rec["_assoc"] = by_company.get(rec["id"], {})
        tables = {"contacts": contacts, "companies": companies, "deals": deals, "tickets": []}
        self.tables = {kind: NativeTable.build([(r["_modified"], r, r["archived"]) for r in recs])
                       for kind, recs in tables.items()}
        self.by_id: dict[str, dict[bool, tuple[list[int], list[dict[str, Any]]]]] = {}
        for kind, recs in tables.items():
            self.by_id[kind] = {}
            for archived in (False, True):
                chosen = sorted((r for r in recs if r["archived"] is archived), key=lambda r: int(r["id"]))
                self.by_id[kind][archived] = ([int(r["id"]) for r in chosen], chosen)
        owners.sort(key=lambda o: int(o["id"]))
        self.owners = owners
        self.pipelines = self._render_pipelines()
        self.now = c.now

    def _render_owners(self) -> tuple[dict[str, str], list[dict[str, Any]]]:
        c = self.company
        emp = c["employees"]
        ids = dict(zip(emp["employee_id"], stable_number(emp["employee_id"], 10_000_000, 89_999_999, "hs-owner"),
                       strict=True))
        pres = c.presence_of("employee", "hubspot")
        pres = pres[~pres["is_duplicate"].fillna(False).astype(bool)]
        ids.update(dict(zip(pres["entity_id"], pres["system_id"].astype(str), strict=True)))
        owning = set(c["accounts"]["owner_id"].dropna()) | set(c["opportunities"]["owner_id"].dropna())
        chosen = emp[emp["department"].isin(OWNER_DEPARTMENTS) | emp["employee_id"].isin(owning)
                     | emp["employee_id"].isin(set(pres["entity_id"]))].copy()
        chosen["archived"] = chosen["deleted_at"].notna() | ~chosen["is_active"].fillna(True).astype(bool)
        chosen["createdAt"] = iso_ms(chosen["created_at"])
        chosen["updatedAt"] = iso_ms(chosen["updated_at"])
        user_ids = stable_number(chosen["employee_id"], 1_000_000, 8_999_999, "hs-user")
        owners = []
        for row, uid in zip(chosen.to_dict("records"), user_ids, strict=True):
            owners.append({"id": ids[row["employee_id"]], "email": row["email"], "type": "PERSON",
                           "firstName": row["first_name"], "lastName": row["last_name"],
                           "userId": None if row["archived"] else int(uid), "userIdIncludingInactive": int(uid),
                           "createdAt": row["createdAt"], "updatedAt": row["updatedAt"],
                           "archived": bool(row["archived"]),
                           "teams": [{"id": stable_number([row["team"]], 1_000_000, 8_999_999, "hs-team")[0],
                                      "name": row["team"], "primary": True}]})
        return ids, owners

    def _owner_col(self, series: pd.Series) -> pd.Series:
        return series.map(self.owner_ids).astype(object).where(series.notna(), None)

    @staticmethod
    def _with_entity(pres: pd.DataFrame, canon: pd.DataFrame, key: str) -> pd.DataFrame:
        """Presence rows joined with their canonical rows; modified/archived from both sides."""
        merged = pres.merge(canon, left_on="entity_id", right_on=key, how="inner", suffixes=("", "_c"))
        merged["_modified"] = merged[["updated_at", "updated_at_c"]].max(axis=1)
        merged["_deleted"] = merged[["deleted_at", "deleted_at_c"]].min(axis=1)
        merged["_created"] = merged["created_at"].fillna(merged["created_at_c"])
        return merged

    def _finish(self, kind: str, frame: pd.DataFrame, props: dict[str, pd.Series],
                assoc: list[dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
        """Build native records: all properties as strings, plus typed values for search filters."""
        props["createdate"] = iso_ms(frame["_created"])
        props[MODIFIED_PROP[kind]] = iso_ms(frame["_modified"])
        props["hs_object_id"] = frame["id"]
        prop_frame = pd.DataFrame({k: v.to_numpy() for k, v in props.items()})
        typed: dict[str, Any] = {}
        for name, ptype, _f, _l in PROPERTIES[kind]:
            col = prop_frame[name]
            if ptype == "datetime":
                typed[name] = epoch_ms_series(pd.to_datetime(col, utc=True, format="ISO8601"))
            elif ptype == "number":
                typed[name] = pd.to_numeric(col, errors="coerce")
            else:
                typed[name] = col.str.lower()
        typed_frame = pd.DataFrame(typed)
        typed_frame = typed_frame.astype(object).where(typed_frame.notna(), None)
        archived = frame["_deleted"].notna().to_numpy()
        created_iso = props["createdate"].to_numpy()
        updated_iso = props[MODIFIED_PROP[kind]].to_numpy()
        archived_iso = iso_ms(frame["_deleted"]).to_numpy()
        modified = frame["_modified"].tolist()
        records = []
        for i, (p, t) in enumerate(zip(prop_frame.to_dict("records"), typed_frame.to_dict("records"), strict=True)):
            rec: dict[str, Any] = {"id": p["hs_object_id"], "properties": p, "createdAt": created_iso[i],
                                   "updatedAt": updated_iso[i], "archived": bool(archived[i]),
                                   "_typed": t, "_modified": modified[i], "_assoc": assoc[i] if assoc else {}}
            if archived[i]:
                rec["archivedAt"] = archived_iso[i]
            records.append(rec)
        return records

    def _render_companies(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        c = self.company
        pres = c.presence_of("account", "hubspot")
        frame = self._with_entity(pres, c["accounts"], "account_id").reset_index(drop=True)
        frame["id"] = frame["system_id"].astype(str)
        primary = frame[~frame["is_duplicate"].fillna(False).astype(bool)].sort_values("_created")
        company_of_account = dict(zip(primary["entity_id"], primary["id"], strict=False))
        for acc, cid in zip(frame["entity_id"], frame["id"], strict=True):
            company_of_account.setdefault(acc, cid)
        customer = frame["customer_since"].notna() & frame["churned_at"].isna()
        props = {
            "name": text(frame["name"].fillna(frame["name_c"])),
            "domain": text(frame["domain"].fillna(frame["domain_c"])),
            "industry": text(frame["industry"].map(lambda v: None if v is None or pd.isna(v)
                                                   else str(v).upper().replace(" ", "_").replace("&", "AND"))),
            "numberofemployees": text(frame["employee_count"]),
            "annualrevenue": text(frame["annual_revenue"]),
            "country": text(frame["country"]),
            "lifecyclestage": pd.Series(["customer" if x else "lead" for x in customer], dtype=object),
            "hubspot_owner_id": self._owner_col(frame["owner_id"]),
        }
        return self._finish("companies", frame, props), company_of_account

    def _render_contacts(self, company_of_account: dict[str, str]) -> list[dict[str, Any]]:
        c = self.company
        pres = c.presence_of("person", "hubspot")
        frame = self._with_entity(pres, c["people"], "person_id").reset_index(drop=True)
        frame["id"] = frame["system_id"].astype(str)
        full = frame["name"].astype(object).where(frame["name"].notna(), None)
        split = full.map(lambda v: (v.split(" ", 1) + [""])[:2] if isinstance(v, str) else None)
        first = split.map(lambda v: v[0] if v else None).fillna(frame["first_name"])
        last = split.map(lambda v: v[1] if v else None).fillna(frame["last_name"])
        accounts = c["accounts"].set_index("account_id")
        company_id = frame["account_id"].map(company_of_account)
        stage = frame["lifecycle_stage"].map(lambda v: _slug(v) if isinstance(v, str) else None)
        stage = stage.map(lambda v: v if v in LIFECYCLE else ("other" if v else None))
        props = {
            "firstname": text(first), "lastname": text(last),
            "email": text(frame["email"].fillna(frame["email_c"])),
            "phone": text(frame["phone"].fillna(frame["phone_c"])),
            "jobtitle": text(frame["title"]),
            "company": text(frame["account_id"].map(accounts["name"])),
            "associatedcompanyid": text(company_id),
            "lifecyclestage": text(stage),
            "hubspot_owner_id": self._owner_col(frame["account_id"].map(accounts["owner_id"])),
        }
        assoc = [{"companies": [cid]} if isinstance(cid, str) else {} for cid in company_id]
        return self._finish("contacts", frame, props, assoc)

    def _render_deals(self, company_of_account: dict[str, str]) -> list[dict[str, Any]]:
        c = self.company
        opps = c["opportunities"]
        frame = opps[opps["account_id"].isin(set(company_of_account))].copy().reset_index(drop=True)
        frame["id"] = stable_number(frame["opportunity_id"], 1_000_000_000, 8_999_999_999, "hs-deal")
        frame["_modified"] = frame["updated_at"]
        frame["_deleted"] = frame["deleted_at"]
        frame["_created"] = frame["created_at"]
        stage = frame["stage"].map(self._stage_id)
        is_closed = frame["is_closed"].fillna(False).astype(bool)
        props = {
            "dealname": text(frame["name"]), "amount": text(frame["amount"]),
            "dealstage": text(stage), "pipeline": pd.Series(["default"] * len(frame), dtype=object),
            "closedate": iso_ms(utc(frame["close_date"])),
            "dealtype": text(frame["type"].map({"new_business": "newbusiness", "renewal": "existingbusiness",
                                                "expansion": "existingbusiness"})),
            "hs_is_closed": text(is_closed),
            "hs_is_closed_won": text(frame["is_won"].fillna(False).astype(bool) & is_closed),
            "hs_deal_stage_probability": text(frame["probability"].map(
                lambda p: None if p is None or pd.isna(p) else round(p / 100 if p > 1 else p, 4))),
            "hs_salesforceopportunityid": text(frame["system_id"]),
            "hubspot_owner_id": self._owner_col(frame["owner_id"]),
        }
        assoc = [{"companies": [company_of_account[a]]} for a in frame["account_id"]]
        return self._finish("deals", frame, props, assoc)

    @staticmethod
    def _stage_id(stage: Any) -> str | None:
        if stage is None or (not isinstance(stage, str) and pd.isna(stage)):
            return None
        return STAGE_IDS.get(str(stage).strip().lower(), _slug(stage))

    def _render_pipelines(self) -> list[dict[str, Any]]:
        opps = self.company["opportunities"]
        created = iso_ms(pd.Series([opps["created_at"].min() if len(opps) else self.company.now]))[0]
        stages = (opps.assign(p=opps["probability"].astype(float), closed=opps["is_closed"].fillna(False))
                  .groupby("stage", sort=False).agg(p=("p", "mean"), closed=("closed", "max"), won=("is_won", "max"))
                  .reset_index())
        stages = stages.sort_values(["closed", "p"], ascending=[True, True]).reset_index(drop=True)
        out = []
        for i, row in enumerate(stages.to_dict("records")):
            p = 0.0 if pd.isna(row["p"]) else float(row["p"])
            p = p / 100 if p > 1 else p
            if row["closed"]:
                p = 1.0 if bool(row["won"]) else 0.0
            out.append({"id": self._stage_id(row["stage"]), "label": str(row["stage"]), "displayOrder": i,
                        "metadata": {"isClosed": "true" if bool(row["closed"]) else "false",
                                     "probability": _num_str(round(p, 2))},
                        "createdAt": created, "updatedAt": created, "archived": False,
                        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"})
        return [{"id": "default", "label": "Sales Pipeline", "displayOrder": 0, "stages": out,
                 "createdAt": created, "updatedAt": created, "archived": False}]

    # --- routes ----------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        return [
            ("/oauth/authorize", self.authorize, ["GET"]),
            ("/oauth/v1/token", self.token, ["POST"]),
            ("/crm/v3/owners", self.list_owners, ["GET"]),
            ("/crm/v3/owners/", self.list_owners, ["GET"]),
            ("/crm/v3/pipelines/{object_type}", self.list_pipelines, ["GET"]),
            ("/crm/v3/properties/{object_type}", self.list_properties, ["GET"]),
            ("/crm/v3/objects/{object_type}", self.list_objects, ["GET"]),
            ("/crm/v3/objects/{object_type}/search", self.search, ["POST"]),
            ("/crm/v3/objects/{object_type}/batch/read", self.batch_read, ["POST"]),
            ("/crm/v3/objects/{object_type}/{object_id}", self.get_object, ["GET"]),
        ]

    async def authorize(self, request: Request) -> Response:
        """The consent screen, auto-approved: redirect back with a one-time code."""
        q = request.query_params
        if q.get("client_id") != self.CLIENT_ID or not q.get("redirect_uri"):
            return self.envelope(400, "Invalid client_id or missing redirect_uri", "VALIDATION_ERROR")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (q["client_id"], q["redirect_uri"])
        params = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        sep = "&" if "?" in q["redirect_uri"] else "?"
        return RedirectResponse(q["redirect_uri"] + sep + urlencode(params), status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()

        def bad(status: str, message: str) -> Response:
            return JSONResponse({"status": status, "message": message, "correlationId": str(uuid.uuid4())},
                                status_code=400)

        grant = form.get("grant_type")
        if form.get("client_id") != self.CLIENT_ID:
            return bad("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != self.CLIENT_SECRET:
            return bad("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant == "refresh_token":
            try:
                access, refresh = self.tokens.refresh(str(form.get("refresh_token") or ""), self.CLIENT_ID)
            except InvalidGrant:
                return bad("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        elif grant == "authorization_code":
            issued = self._codes.pop(str(form.get("code") or ""), None)
            if issued is None:
                return bad("BAD_AUTH_CODE", "missing or unknown auth code")
            if form.get("redirect_uri") != issued[1]:
                return bad("BAD_REDIRECT_URI", "redirect_uri does not match the one used to get the code")
            access, refresh = self.tokens.issue(self.CLIENT_ID)
        else:
            return bad("BAD_GRANT_TYPE", "grant_type must be authorization_code or refresh_token")
        self._known.add(access.value)
        return JSONResponse({"token_type": "bearer", "refresh_token": refresh.value if refresh else None,
                             "access_token": access.value, "expires_in": int(self.tokens.access_ttl_s or 1800)})

    # --- object endpoints ------------------------------------------------------------------
    def _object_type(self, request: Request) -> str:
        raw = request.path_params["object_type"]
        kind = TYPE_ALIASES.get(raw.lower(), raw.lower())
        if kind not in OBJECT_TYPES:
            raise Reply(self.envelope(400, f"Unable to infer object type from: {raw}", "OBJECT_NOT_FOUND"))
        return kind

    @staticmethod
    def _int_param(value: Any, name: str, default: int) -> int:
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise HubSpotError(400, f"Invalid value for {name}: {value!r} is not an integer") from None
        if number < 0:
            raise HubSpotError(400, f"{name} must be non-negative")
        return number

    def _project(self, kind: str, rec: dict[str, Any], props: list[str], assoc: list[str] | None = None
                 ) -> dict[str, Any]:
        """The wire form of a record: only the requested properties (unknown names silently skipped)."""
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        source = rec.get("properties")
        if isinstance(source, dict):
            out["properties"] = {p: source.get(p) for p in props if p in source}
        if assoc:
            links = {}
            for other in assoc:
                other = TYPE_ALIASES.get(other.lower(), other.lower())
                ids = rec.get("_assoc", {}).get(other)
                if ids:
                    singular = kind[:-1] if kind != "companies" else "company"
                    target = other[:-1] if other != "companies" else "company"
                    links[other] = {"results": [{"id": i, "type": f"{singular}_to_{target}"} for i in ids]}
            if links:
                out["associations"] = links
        return out

    def _requested(self, kind: str, raw: list[str] | str | None) -> list[str]:
        if raw is None or raw == [] or raw == "":
            return DEFAULT_PROPERTIES[kind]
        names = raw if isinstance(raw, list) else [raw]
        props: list[str] = []
        for item in names:
            props.extend(p.strip() for p in str(item).split(",") if p.strip())
        return props

    async def list_objects(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        q = request.query_params
        try:
            limit = min(max(self._int_param(q.get("limit"), "limit", 10), 1), 100)
            after = self._int_param(q.get("after"), "after", 0)
        except HubSpotError as err:
            return self.envelope(err.status, err.message, err.category)
        archived = q.get("archived", "false").lower() == "true"
        ids, records = self.by_id[kind][archived]
        start = bisect_left(ids, after)
        page = self.page(request, records, start, limit)
        props = self._requested(kind, q.getlist("properties"))
        assoc = [a for item in q.getlist("associations") for a in item.split(",") if a]
        body: dict[str, Any] = {"results": [self._project(kind, r, props, assoc) for r in page]}
        if start + limit < len(records):
            nxt = str(ids[start + limit])
            params = [(k, v) for k, v in q.multi_items() if k != "after"] + [("after", nxt)]
            body["paging"] = {"next": {"after": nxt, "link": str(request.url.replace(query=urlencode(params)))}}
        return self._ok(body)

    async def get_object(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        q = request.query_params
        archived = q.get("archived", "false").lower() == "true"
        rec = self.tables[kind].get(request.path_params["object_id"])
        if rec is None or rec["archived"] != archived:
            return self.envelope(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND",
                                 context={"id": [request.path_params["object_id"]]})
        assoc = [a for item in q.getlist("associations") for a in item.split(",") if a]
        return self._ok(self._project(kind, rec, self._requested(kind, q.getlist("properties")), assoc))

    async def batch_read(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        body = self.json_body(await request.body())
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return self.envelope(400, "Invalid input JSON: 'inputs' is required", "VALIDATION_ERROR")
        inputs = body["inputs"]
        if len(inputs) > 100:
            return self.envelope(400, f"Batch input size {len(inputs)} is larger than the maximum of 100",
                                 "VALIDATION_ERROR")
        archived = request.query_params.get("archived", "false").lower() == "true"
        props = self._requested(kind, body.get("properties"))
        started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        results, missing = [], []
        for item in inputs:
            rid = str(item.get("id")) if isinstance(item, dict) else str(item)
            rec = self.tables[kind].get(rid)
            if rec is None or rec["archived"] != archived:
                missing.append(rid)
            else:
                results.append(self._project(kind, rec, props))
        out: dict[str, Any] = {"status": "COMPLETE", "results": self.page(request, results, 0, len(results)),
                               "startedAt": started, "completedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                                                  time.gmtime())}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                              "message": f"Could not get some {kind[:-1].upper()} objects, they may be deleted or "
                                         "not exist. Check that ids are valid.", "context": {"ids": missing}}]
        return self._ok(out, status=207 if missing else 200)

    # --- search ----------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        body = self.json_body(await request.body())
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return self.envelope(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
        try:
            results, total, start, limit = self._search(kind, body)
        except HubSpotError as err:
            return self.envelope(err.status, err.message, err.category, **err.extra)
        props = self._requested(kind, body.get("properties"))
        page = self.page(request, results, start, limit)
        out: dict[str, Any] = {"total": total, "results": [self._project(kind, r, props) for r in page]}
        if start + limit < total:
            out["paging"] = {"next": {"after": str(start + limit)}}
        return self._ok(out, rate_headers=False)  # search answers carry no X-HubSpot-RateLimit-* headers

    def _check_property(self, kind: str, name: Any) -> str:
        known = {p[0]: p[1] for p in PROPERTIES[kind]}
        if not isinstance(name, str) or name not in known:
            raise HubSpotError(400, f"There was a problem with the request. Property \"{name}\" does not exist "
                                    f"on object type {kind}.", errors=[{"message": f"Unknown property: {name}",
                                                                       "code": "INVALID_PROPERTY", "in": name}])
        return known[name]

    def _typed_value(self, ptype: str, value: Any, prop: str) -> Any:
        if value is None:
            raise HubSpotError(400, f"Filter on {prop} needs a value")
        if ptype == "datetime":
            try:
                return parse_any(value).timestamp() * 1000.0
            except (ValueError, TypeError, OverflowError):
                raise HubSpotError(400, f"Invalid datetime value {value!r} for {prop}: use epoch milliseconds "
                                        "or an ISO 8601 string") from None
        if ptype == "number":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise HubSpotError(400, f"Invalid number value {value!r} for {prop}") from None
        return str(value).lower()

    def _compile(self, kind: str, flt: Any) -> tuple[Any, float | None]:
        """A filter → (predicate over typed values, lower bound on the modified date in ms or None)."""
        if not isinstance(flt, dict):
            raise HubSpotError(400, "Each filter must be an object with propertyName and operator")
        prop, op = flt.get("propertyName"), str(flt.get("operator", "")).upper()
        ptype = self._check_property(kind, prop)
        if op not in SEARCH_OPERATORS:
            valid = ", ".join(sorted(SEARCH_OPERATORS))
            raise HubSpotError(400, f"Invalid operator {flt.get('operator')!r}; valid: {valid}")
        if op == "HAS_PROPERTY":
            return (lambda t: t.get(prop) not in (None, "")), None
        if op == "NOT_HAS_PROPERTY":
            return (lambda t: t.get(prop) in (None, "")), None
        if op in ("IN", "NOT_IN"):
            values = flt.get("values")
            if not isinstance(values, list):
                raise HubSpotError(400, f"Operator {op} needs a 'values' list")
            wanted = {self._typed_value(ptype, v, prop) for v in values}
            return ((lambda t: t.get(prop) in wanted) if op == "IN"
                    else (lambda t: t.get(prop) not in wanted)), None
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).lower().strip("*")
            has = lambda t: token in str(t.get(prop) or "")  # noqa: E731
            return (has if op == "CONTAINS_TOKEN" else (lambda t: not has(t))), None
        value = self._typed_value(ptype, flt.get("value"), prop)
        modified = prop == MODIFIED_PROP[kind]
        if op == "BETWEEN":
            high = self._typed_value(ptype, flt.get("highValue"), prop)
            return (lambda t: t.get(prop) is not None and value <= t[prop] <= high), (value if modified else None)
        if op in ("EQ", "NEQ"):
            eq = lambda t: t.get(prop) == value  # noqa: E731
            return (eq if op == "EQ" else (lambda t: not eq(t))), (value if modified and op == "EQ" else None)
        cmp = {"LT": lambda a: a < value, "LTE": lambda a: a <= value,
               "GT": lambda a: a > value, "GTE": lambda a: a >= value}[op]
        bound = value if modified and op in ("GT", "GTE") else None
        return (lambda t: t.get(prop) is not None and cmp(t[prop])), bound

    def _search(self, kind: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int, int]:
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or len(groups) > 5:
            raise HubSpotError(400, "filterGroups must be a list of at most 5 groups")
        compiled, bounds = [], []
        n_filters = 0
        for group in groups:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list) or len(filters) > 10:
                raise HubSpotError(400, "Each filter group needs 'filters': a list of at most 10 filters")
            n_filters += len(filters)
            preds = [self._compile(kind, f) for f in filters]
            compiled.append([p for p, _b in preds])
            group_bounds = [b for _p, b in preds if b is not None]
            bounds.append(min(group_bounds) if group_bounds else None)
        if n_filters > 25:
            raise HubSpotError(400, f"Too many filters ({n_filters}); the maximum is 25")
        limit = self._int_param(body.get("limit"), "limit", 10)
        start = self._int_param(body.get("after"), "after", 0)
        if limit > 200:
            raise HubSpotError(400, f"limit {limit} is too large; the maximum page size is 200")
        limit = max(limit, 1)
        if start >= SEARCH_CAP:
            raise HubSpotError(400, f"The search cannot page past {SEARCH_CAP} results; narrow the filter "
                                    "(move the GTE on the last-modified date forward) instead.")
        since = None
        if compiled and all(b is not None for b in bounds):
            since = datetime.fromtimestamp(math.floor(min(bounds)) / 1000.0 - 0.001, tz=UTC)
        candidates = self.tables[kind].select(since=since)
        if compiled:
            candidates = [r for r in candidates if any(all(p(r["_typed"]) for p in group) for group in compiled)]
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise HubSpotError(400, "sorts takes at most one sort")
        if sorts:
            sort = sorts[0]
            if isinstance(sort, str):
                sort = {"propertyName": sort.lstrip("-"),
                        "direction": "DESCENDING" if sort.startswith("-") else "ASCENDING"}
            prop = sort.get("propertyName") if isinstance(sort, dict) else None
            self._check_property(kind, prop)
            descending = str(sort.get("direction", "ASCENDING")).upper() == "DESCENDING"
            present = [r for r in candidates if r["_typed"].get(prop) is not None]
            absent = [r for r in candidates if r["_typed"].get(prop) is None]
            present.sort(key=lambda r: (r["_typed"][prop], int(r["id"])), reverse=descending)
            candidates = present + absent  # records without a value come last either way
        else:
            candidates.sort(key=lambda r: int(r["id"]))
        return candidates, len(candidates), start, limit

    # --- metadata --------------------------------------------------------------------------
    async def list_owners(self, request: Request) -> Response:
        self._auth(request)
        q = request.query_params
        try:
            limit = min(max(self._int_param(q.get("limit"), "limit", 100), 1), 500)
            after = self._int_param(q.get("after"), "after", 0)
        except HubSpotError as err:
            return self.envelope(err.status, err.message, err.category)
        archived = q.get("archived", "false").lower() == "true"
        owners = [o for o in self.owners if o["archived"] is archived]
        if q.get("email"):
            owners = [o for o in owners if o["email"].lower() == q["email"].lower()]
        ids = [int(o["id"]) for o in owners]
        start = bisect_left(ids, after)
        body: dict[str, Any] = {"results": self.page(request, owners, start, limit)}
        if start + limit < len(owners):
            nxt = str(ids[start + limit])
            link = str(request.url.replace(query=urlencode({"after": nxt, "limit": limit})))
            body["paging"] = {"next": {"after": nxt, "link": link}}
        return self._ok(body)

    async def list_pipelines(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        if kind == "deals":
            return self._ok({"results": self.pipelines})
        if kind == "tickets":
            created = self.pipelines[0]["createdAt"]
            stages = [{"id": str(i + 1), "label": label, "displayOrder": i, "createdAt": created,
                       "updatedAt": created, "archived": False,
                       "metadata": {"ticketState": "CLOSED" if label == "Closed" else "OPEN"}}
                      for i, label in enumerate(["New", "Waiting on contact", "Waiting on us", "Closed"])]
            return self._ok({"results": [{"id": "0", "label": "Support Pipeline", "displayOrder": 0, "stages": stages,
                                          "createdAt": created, "updatedAt": created, "archived": False}]})
        return self.envelope(400, f"Object type {kind} does not support pipelines", "VALIDATION_ERROR")

    async def list_properties(self, request: Request) -> Response:
        self._auth(request)
        kind = self._object_type(request)
        created = self.pipelines[0]["createdAt"]
        results = []
        for i, (name, ptype, field_type, label) in enumerate(PROPERTIES[kind]):
            options: list[dict[str, Any]] = []
            if name == "dealstage":
                options = [{"label": s["label"], "value": s["id"], "displayOrder": s["displayOrder"], "hidden": False}
                           for s in self.pipelines[0]["stages"]]
            elif name == "lifecyclestage":
                options = [{"label": v, "value": v, "displayOrder": j, "hidden": False}
                           for j, v in enumerate(sorted(LIFECYCLE))]
            results.append({"name": name, "label": label, "type": ptype, "fieldType": field_type,
                            "groupName": f"{kind[:-1]}information", "description": "", "options": options,
                            "displayOrder": i, "calculated": name in ("hs_object_id", MODIFIED_PROP[kind]),
                            "externalOptions": name == "hubspot_owner_id", "hasUniqueValue": name == "hs_object_id",
                            "hidden": False, "hubspotDefined": True, "formField": ptype == "string",
                            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True,
                                                     "readOnlyValue": name in ("hs_object_id", "createdate",
                                                                               MODIFIED_PROP[kind])},
                            "createdAt": created, "updatedAt": created, "archived": False})
        return self._ok({"results": results})
