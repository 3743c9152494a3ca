"""Intercom REST API 2.x, as a connector sees it (VENDOR-APIS.md section 5; schemas from the 2.16 OpenAPI file).

* Auth: ``Authorization: Bearer <access token>``; tokens never expire and there is no refresh token (an OAuth
  code exchange at ``POST /auth/eagle/token`` hands out another non-expiring token). ``Intercom-Version``
  is checked when sent (2.7 … 2.16, Unstable); without it the app's default version (2.11) applies.
* Contacts are Intercom appearances of people (``presence`` rows, duplicates included); ``role`` is
  ``user`` for people at customers and ``lead`` otherwise. Companies are Intercom appearances of accounts.
  Admins are the support and success staff plus every conversation assignee.
* Cursor pagination: ``pages.next.starting_after`` (query parameter on lists, ``pagination.starting_after``
  on search); the cursor is keyset-based (base64 of ``[sort value, id, next page]``) as Intercom's is.
  ``GET /conversations`` is most recently updated first; ``GET /contacts`` oldest first; search sorts by
  ``sort.field`` (default ``updated_at`` ascending). Companies page by number (``page``/``per_page``) or scroll.
* Incremental: search with ``updated_at`` (Unix seconds). Deleted records vanish (lists, search) and a GET of
  one answers 404 ``not_found``: Intercom has no delete feed, so connectors reconcile ids.
* Conversation ``priority``: ``priority``/``not_priority`` up to 2.15; from 2.16 the enum is
  ``none``/``low``/``medium``/``high``/``urgent`` (``priority`` → ``high``) *[inferred from the 2.16 spec]*.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import threading
import time
import uuid
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import bearer
from sophia_lib.sandbox.simulator.base import Handler, NativeTable, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.simulator.formats import decode_cursor, encode_cursor
from sophia_lib.sandbox.vendors import register

VERSIONS = tuple(f"2.{n}" for n in range(7, 17)) + ("Unstable",)
DEFAULT_VERSION = "2.11"
APP_ID = "hlcyn7qx"
SUPPORT_TEAM_ID = 5017691
ADMIN_TEAMS = ("Support", "CSM")
RATE_LIMIT = 10_000  # per minute, enforced over 10-second windows
OPERATORS = ("=", "!=", "IN", "NIN", "<", "<=", ">", ">=", "~", "!~", "^", "$")


def stable_hex(keys: Any, salt: str, nbytes: int = 12) -> list[str]:
    return [hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=nbytes).hexdigest() for k in keys]


def stable_number(keys: Any, low: int, span: int, salt: str) -> list[int]:
    return [low + int.from_bytes(hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=8).digest()) % span
            for k in keys]


def epoch_s_series(series: pd.Series) -> pd.Series:
    """Aware timestamps → Unix seconds as Python ints (None for NaT)."""
    s = pd.to_datetime(series, utc=True)
    secs = (s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return secs.astype(object).where(s.notna(), None).map(lambda v: None if v is None else int(v))


def _clean(value: Any) -> Any:
    """Missing → None; whole floats (pandas upcasts int columns with gaps) → int, as Intercom sends them."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if value != value:
            return None
        if value.is_integer():
            return int(value)
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    try:
        return list(value)
    except TypeError:
        return [] if pd.isna(value) else [value]


class IntercomError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _path(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# Search fields per object: name → how to read its value from a rendered record.
CONTACT_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    name: (lambda rec, n=name: rec.get(n)) for name in (
        "id", "external_id", "email", "email_domain", "name", "phone", "role", "created_at", "updated_at",
        "signed_up_at", "last_seen_at", "last_contacted_at", "last_replied_at", "owner_id", "workspace_id")
}
CONTACT_FIELDS["companies.id"] = lambda rec: [c["id"] for c in rec["companies"]["data"]]
CONVERSATION_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    name: (lambda rec, n=name: _path(rec, n)) for name in (
        "id", "created_at", "updated_at", "waiting_since", "snoozed_until", "open", "state", "read", "priority",
        "admin_assignee_id", "team_assignee_id", "source.type", "source.id", "source.delivered_as",
        "source.subject", "source.body", "source.author.id", "source.author.type", "source.author.name",
        "source.author.email", "conversation_rating.rating", "statistics.time_to_admin_reply",
        "statistics.first_admin_reply_at", "statistics.last_close_at")
}
CONVERSATION_FIELDS["contact_ids"] = lambda rec: [c["id"] for c in rec["contacts"]["contacts"]]
CONVERSATION_FIELDS["tag_ids"] = lambda rec: [t["id"] for t in rec["tags"]["tags"]]
CONVERSATION_FIELDS["teammate_ids"] = lambda rec: [t["id"] for t in rec["teammates"]["teammates"]]


@register
class Intercom(SimulatedVendor):
    """Intercom: static bearer token, cursor pages, search with Unix-second filters."""

    name = "intercom"
    ACCESS_TOKEN = "dG9rOmludGVyY29tLXNhbmRib3gtaGFsY3lvbmRhdGE6MToxMjM="
    CLIENT_ID = "intercom-sandbox-client"
    CLIENT_SECRET = "intercom-sandbox-secret"
    AUTH_CODE = "intercom-sandbox-code"

    # --- credentials and envelopes -------------------------------------------------------
    def setup_credentials(self) -> None:
        self.tokens.access_ttl_s = None  # Intercom access tokens do not expire
        self.tokens.add_static(self.ACCESS_TOKEN, "private-app")
        self._calls: deque[float] = deque()
        self._rate_lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        return {"access_token": self.ACCESS_TOKEN, "client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET}

    def _rate_headers(self, count: bool = True) -> dict[str, str]:
        now = time.time()
        with self._rate_lock:
            if count:
                self._calls.append(now)
            while self._calls and self._calls[0] < now - 60:
                self._calls.popleft()
            used = len(self._calls)
        return {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": str(max(0, RATE_LIMIT - used)),
                "X-RateLimit-Reset": str(int(now // 10 * 10 + 10))}

    def envelope(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"type": "error.list", "request_id": str(uuid.uuid4()),
                             "errors": [{"code": code, "message": message}]}, status_code=status,
                            headers=self._rate_headers(count=False) | (headers or {}))

    def error_response(self, request: Request, status: int, message: str) -> Response:
        code = {400: "parameter_invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                429: "rate_limit_exceeded", 503: "service_unavailable"}.get(status, "server_error")
        return self.envelope(status, code, message)

    def error_response_for_body(self, exc: Exception) -> Response:
        return self.envelope(400, "parameter_invalid", f"Invalid JSON body: {exc}")

    def expired_token_response(self, request: Request) -> Response:
        return self.envelope(401, "unauthorized", "Access Token Invalid")

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        reset = str(int(time.time() // 10 * 10 + 10))
        return self.envelope(429, "rate_limit_exceeded", f"Exceeded rate limit of {RATE_LIMIT} in 60 seconds",
                             headers={"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0",
                                      "X-RateLimit-Reset": reset})

    def _ok(self, body: Any) -> JSONResponse:
        return JSONResponse(body, headers=self._rate_headers())

    def _check(self, request: Request) -> str:
        """Auth and version; returns the effective Intercom-Version."""
        token = bearer(request.headers.get("authorization"))
        if token is None or self.tokens.check(token) is None:
            raise Reply(self.expired_token_response(request))
        version = request.headers.get("intercom-version")
        if version is None:
            return DEFAULT_VERSION
        if version not in VERSIONS:
            raise Reply(self.envelope(400, "intercom_version_invalid",
                                      f"The requested version could not be found; valid: {', '.join(VERSIONS)}"))
        return version

    # --- rendering -------------------------------------------------------------------------
    def render(self) -> None:
        c = self.company
        self.now = c.now
        self._render_admins()
        self._render_companies()
        self._render_contacts()
        self._render_conversations()
        self.deleted = {name: {r["id"] for r, gone in zip(t.records, t.deleted, strict=True) if gone}
                        for name, t in self.tables.items()}

    def _render_admins(self) -> None:
        emp = self.company["employees"]
        ids = dict(zip(emp["employee_id"], stable_number(emp["employee_id"], 1_000_000, 8_999_999, "ic-admin"),
                       strict=True))
        pres = self.company.presence_of("employee", "intercom")
        pres = pres[~pres["is_duplicate"].fillna(False).astype(bool)]
        ids.update({k: int(v) if str(v).isdigit() else v for k, v in zip(pres["entity_id"], pres["system_id"],
                                                                           strict=True)})
        self.admin_ids = ids
        assignees = set(self.company["conversations"]["assignee_id"].dropna())
        chosen = emp[(emp["team"].isin(ADMIN_TEAMS) | emp["employee_id"].isin(assignees)
                      | emp["employee_id"].isin(set(pres["entity_id"])))
                     & emp["deleted_at"].isna() & emp["is_active"].fillna(True).astype(bool)]
        self.admins = [{"type": "admin", "id": str(ids[r["employee_id"]]),
                        "name": f"{r['first_name']} {r['last_name']}", "email": r["email"], "job_title": r["title"],
                        "away_mode_enabled": False, "away_mode_reassign": False, "has_inbox_seat": True,
                        "team_ids": [SUPPORT_TEAM_ID], "avatar": None}
                       for r in chosen.sort_values("employee_id").to_dict("records")]

    @staticmethod
    def _joined(pres: pd.DataFrame, canon: pd.DataFrame, key: str) -> pd.DataFrame:
        merged = pres.merge(canon, left_on="entity_id", right_on=key, how="inner", suffixes=("", "_c"))
        merged["_modified"] = merged[["updated_at", "updated_at_c"]].max(axis=1)
        merged["_deleted"] = merged[["deleted_at", "deleted_at_c"]].min(axis=1)
        merged["_created"] = merged["created_at"].fillna(merged["created_at_c"])
        return merged.reset_index(drop=True)

    def _render_companies(self) -> None:
        c = self.company
        frame = self._joined(c.presence_of("account", "intercom"), c["accounts"], "account_id")
        frame["id"] = frame["system_id"].astype(str)
        primary = frame[~frame["is_duplicate"].fillna(False).astype(bool)].sort_values("_created")
        self.company_of_account = dict(zip(primary["entity_id"], primary["id"], strict=False))
        domain = frame["domain"].fillna(frame["domain_c"])
        wire = pd.DataFrame({
            "type": "company", "id": frame["id"],
            "name": frame["name"].fillna(frame["name_c"]).astype(object),
            "app_id": APP_ID,
            "company_id": stable_hex(frame["entity_id"], "ic-company-id", 6),
            "remote_created_at": epoch_s_series(frame["customer_since"].fillna(frame["first_touch_at"])),
            "created_at": epoch_s_series(frame["_created"]),
            "updated_at": epoch_s_series(frame["_modified"]),
            "last_request_at": epoch_s_series(frame["_modified"]),
            "size": frame["employee_count"].astype(object).where(frame["employee_count"].notna(), None),
            "website": ("https://" + domain.astype(str)).where(domain.notna(), None),
            "industry": frame["industry"].astype(object).where(frame["industry"].notna(), None),
            "segment": frame["segment"].astype(object), "region": frame["region"].astype(object),
        })
        people = c.presence_of("person", "intercom").merge(c["people"][["person_id", "account_id"]],
                                                           left_on="entity_id", right_on="person_id")
        user_count = people.groupby("account_id").size()
        entity_ids, modified = frame["entity_id"].tolist(), frame["_modified"].tolist()
        deleted = frame["_deleted"].notna().to_numpy()
        records = []
        for i, row in enumerate(wire.to_dict("records")):
            row = {k: _clean(v) for k, v in row.items()}
            custom = {k: str(row.pop(k)) for k in ("segment", "region") if row.get(k) is not None}
            row.pop("segment", None)
            row.pop("region", None)
            row = {k: v for k, v in row.items() if v is not None}
            row["size"] = int(row["size"]) if "size" in row else 0
            row.update({"monthly_spend": 0, "session_count": 0,
                        "user_count": int(user_count.get(entity_ids[i], 0)),
                        "custom_attributes": custom, "tags": {"type": "tag.list", "tags": []},
                        "segments": {"type": "segment.list", "segments": []}})
            records.append((modified[i], row, bool(deleted[i])))
        self.tables["companies"] = NativeTable.build(records)
        self.companies = sorted(self.tables["companies"].select(), key=lambda r: (r["created_at"], r["id"]))

    def _render_contacts(self) -> None:
        c = self.company
        frame = self._joined(c.presence_of("person", "intercom"), c["people"], "person_id")
        frame["id"] = frame["system_id"].astype(str)
        accounts = c["accounts"].set_index("account_id")
        customer = frame["account_id"].map(accounts["customer_since"].notna()).fillna(False).astype(bool)
        email = frame["email"].fillna(frame["email_c"])
        name = frame["name"].fillna(frame["first_name"] + " " + frame["last_name"])
        wire = pd.DataFrame({
            "type": "contact", "id": frame["id"], "workspace_id": APP_ID,
            "role": ["user" if x else "lead" for x in customer],
            "email": email.astype(object).where(email.notna(), ""),
            "email_domain": email.astype(str).str.split("@").str[-1].str.strip().str.lower().where(email.notna(), ""),
            "phone": frame["phone"].fillna(frame["phone_c"]).astype(object),
            "name": name.astype(object),
            "created_at": epoch_s_series(frame["_created"]),
            "updated_at": epoch_s_series(frame["_modified"]),
            "signed_up_at": epoch_s_series(frame["_created"].where(customer)),
            "last_seen_at": epoch_s_series(frame["_modified"].where(customer)),
            "company": frame["account_id"].map(self.company_of_account).astype(object),
        })
        modified, deleted = frame["_modified"].tolist(), frame["_deleted"].notna().to_numpy()
        records = []
        for i, row in enumerate(wire.to_dict("records")):
            row = {k: _clean(v) for k, v in row.items()}
            company = row.pop("company")
            cid = row["id"]
            row.update({
                "external_id": None, "owner_id": None, "has_hard_bounced": False, "marked_email_as_spam": False,
                "unsubscribed_from_emails": False, "last_replied_at": None, "last_contacted_at": None,
                "last_email_opened_at": None, "last_email_clicked_at": None, "language_override": None,
                "browser": None, "browser_version": None, "browser_language": None, "os": None,
                "custom_attributes": {}, "avatar": None,
                "tags": {"type": "list", "data": [], "url": f"/contacts/{cid}/tags", "total_count": 0,
                         "has_more": False},
                "notes": {"type": "list", "data": [], "url": f"/contacts/{cid}/notes", "total_count": 0,
                          "has_more": False},
                "companies": {"type": "list", "url": f"/contacts/{cid}/companies",
                              "data": [{"id": company, "type": "company", "url": f"/companies/{company}"}]
                              if company else [],
                              "total_count": 1 if company else 0, "has_more": False},
                "location": {"type": "location", "country": None, "region": None, "city": None},
                "social_profiles": {"type": "list", "data": []},
            })
            records.append((modified[i], row, bool(deleted[i])))
        self.tables["contacts"] = NativeTable.build(records)
        primary = frame[~frame["is_duplicate"].fillna(False).astype(bool)].sort_values("_created")
        self.contact_of_person = dict(zip(primary["entity_id"], primary["id"], strict=False))
        self.contact_list = sorted(self.tables["contacts"].select(), key=lambda r: (r["created_at"], r["id"]))

    def _render_conversations(self) -> None:
        c = self.company
        conv = c["conversations"].reset_index(drop=True)
        people = c["people"].set_index("person_id")
        contact = conv["person_id"].map(self.contact_of_person)
        derived = pd.Series(stable_hex(conv["person_id"], "ic-contact"), index=conv.index)
        contact = contact.fillna(derived)
        first_reply = conv["created_at"] + pd.to_timedelta(conv["first_response_s"].astype(float), unit="s")
        wire = pd.DataFrame({
            "id": conv["system_id"].astype(str),
            "created_at": epoch_s_series(conv["created_at"]),
            "updated_at": epoch_s_series(conv["updated_at"]),
            "state": conv["state"].astype(object),
            "priority": conv["priority"].astype(object),
            "title": conv["title"].astype(object),
            "contact": contact,
            "author_name": (conv["person_id"].map(people["first_name"]) + " "
                            + conv["person_id"].map(people["last_name"])).astype(object),
            "author_email": conv["person_id"].map(people["email"]).astype(object),
            "admin": conv["assignee_id"].map(self.admin_ids).astype(object),
            "first_reply_at": epoch_s_series(first_reply),
            "first_response_s": conv["first_response_s"].astype(object),
            "closed_at": epoch_s_series(conv["closed_at"]),
            "csat": conv["csat_rating"].astype(object),
            "company": conv["account_id"].map(self.company_of_account).astype(object),
            "role": [(self.tables["contacts"].get(k) or {}).get("role", "lead") for k in contact],
        })
        modified, tags = conv["updated_at"].tolist(), conv["tags"].tolist()
        deleted = conv["deleted_at"].notna().to_numpy()
        records = []
        for i, row in enumerate(wire.to_dict("records")):
            row = {k: _clean(v) for k, v in row.items()}
            records.append((modified[i], self._conversation(row, _list(tags[i])), bool(deleted[i])))
        self.tables["conversations"] = NativeTable.build(records)

    def _conversation(self, row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        cid, created, updated = row["id"], row["created_at"], row["updated_at"]
        state = row["state"] if row["state"] in ("open", "closed", "snoozed") else "open"
        admin = int(row["admin"]) if row["admin"] is not None and str(row["admin"]).isdigit() else None
        stats: dict[str, Any] = {"type": "conversation_statistics", "count_reopens": 0,
                                 "count_assignments": 1 if admin is not None else 0,
                                 "first_contact_reply_at": created}
        if admin is not None:
            stats.update({"time_to_assignment": 0, "first_assignment_at": created, "last_assignment_at": created})
        if row["first_response_s"] is not None and row["first_reply_at"] is not None:
            reply = int(row["first_response_s"])
            stats.update({"time_to_admin_reply": reply, "first_admin_reply_at": row["first_reply_at"],
                          "last_admin_reply_at": row["first_reply_at"], "median_time_to_reply": reply})
        if state == "closed" and row["closed_at"] is not None:
            stats.update({"first_close_at": row["closed_at"], "last_close_at": row["closed_at"],
                          "time_to_first_close": row["closed_at"] - created,
                          "time_to_last_close": row["closed_at"] - created})
            if admin is not None:
                stats["last_closed_by_id"] = str(admin)
        stats["count_conversation_parts"] = 1 + ("time_to_admin_reply" in stats) + ("last_close_at" in stats)
        rating = None
        if row["csat"] is not None and state == "closed":
            rating = {"rating": int(row["csat"]), "remark": "", "created_at": row["closed_at"] or updated,
                      "contact": {"type": "contact", "id": row["contact"], "external_id": None},
                      "teammate": {"type": "admin", "id": str(admin) if admin is not None else None}}
        tag_list = [{"type": "tag", "id": _tag_id(t), "name": t,
                     "applied_at": created, "applied_by": {"type": "admin", "id": str(admin) if admin else None}}
                    for t in tags]
        out = {
            "type": "conversation", "id": cid, "title": row["title"], "created_at": created, "updated_at": updated,
            "waiting_since": created if state == "open" else None,
            "snoozed_until": updated + 86_400 if state == "snoozed" else None,
            "open": state != "closed", "state": state, "read": True,
            "_priority": row["priority"],
            "admin_assignee_id": admin, "team_assignee_id": SUPPORT_TEAM_ID,
            "tags": {"type": "tag.list", "tags": tag_list},
            "conversation_rating": rating,
            "source": {"type": "conversation", "id": str(stable_number([cid], 100_000_000, 899_999_999, "ic-src")[0]),
                       "delivered_as": "customer_initiated", "subject": "",
                       "body": f"<p>{row['title'] or ''}</p>",
                       "author": {"type": row["role"], "id": row["contact"], "name": row["author_name"],
                                  "email": row["author_email"]},
                       "attachments": [], "url": None, "redacted": False},
            "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": row["contact"],
                                                               "external_id": None}]},
            "teammates": {"type": "admin.list",
                          "teammates": [{"type": "admin", "id": str(admin)}] if admin is not None else []},
            "custom_attributes": {},
            "first_contact_reply": {"created_at": created, "type": "conversation", "url": None},
            "sla_applied": None,
            "statistics": stats,
            "linked_objects": {"type": "list", "total_count": 0, "has_more": False, "data": []},
            "ai_agent_participated": False,
        }
        if row["company"]:
            out["_company_id"] = row["company"]
        return out

    # --- wire views ------------------------------------------------------------------------
    def _wire_conversation(self, rec: dict[str, Any], version: str, parts: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        if "_priority" in rec:
            new_enum = version in ("2.16", "Unstable")
            raw = rec["_priority"]
            if new_enum:
                out["priority"] = "high" if raw == "priority" else (raw if raw in ("low", "medium", "high", "urgent")
                                                                     else "none")
            else:
                out["priority"] = "priority" if raw in ("priority", "high", "urgent") else "not_priority"
        company = self.tables["companies"].get(rec.get("_company_id")) if rec.get("_company_id") else None
        out["company"] = company
        if parts:
            out["conversation_parts"] = self._parts(rec)
        return out

    def _parts(self, rec: dict[str, Any]) -> dict[str, Any]:
        stats = rec.get("statistics") or {}
        admin = rec.get("admin_assignee_id")
        author = ({"type": "admin", "id": str(admin), "name": None, "email": ""} if admin is not None
                  else {"type": "bot", "id": "0", "name": "Operator", "email": "operator@intercom.io"})
        parts = []
        base = int(stable_number([rec["id"]], 10**9, 8 * 10**9, "ic-part")[0])
        if admin is not None:
            parts.append(("assignment", rec["created_at"], None, {"type": "admin", "id": str(admin)}))
        if "first_admin_reply_at" in stats:
            parts.append(("comment", stats["first_admin_reply_at"], "<p>Thanks for reaching out — looking into it.</p>",
                          None))
        if "last_close_at" in stats:
            parts.append(("close", stats["last_close_at"], None, None))
        out = []
        for n, (kind, at, body, assigned) in enumerate(parts):
            out.append({"type": "conversation_part", "id": str(base + n), "part_type": kind, "body": body,
                        "created_at": at, "updated_at": at, "notified_at": at, "assigned_to": assigned,
                        "author": author, "attachments": [], "external_id": None, "redacted": False})
        return {"type": "conversation_part.list", "conversation_parts": out, "total_count": len(out)}

    # --- routes ----------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        return [
            ("/auth/eagle/token", self.token, ["POST"]),
            ("/me", self.me, ["GET"]),
            ("/admins", self.list_admins, ["GET"]),
            ("/teams", self.list_teams, ["GET"]),
            ("/contacts", self.list_contacts, ["GET"]),
            ("/contacts/search", self.search_contacts, ["POST"]),
            ("/contacts/{contact_id}", self.get_contact, ["GET"]),
            ("/conversations", self.list_conversations, ["GET"]),
            ("/conversations/search", self.search_conversations, ["POST"]),
            ("/conversations/{conversation_id}", self.get_conversation, ["GET"]),
            ("/companies", self.list_companies, ["GET"]),
            ("/companies/scroll", self.scroll_companies, ["GET"]),
            ("/companies/{company_id}", self.get_company, ["GET"]),
        ]

    async def token(self, request: Request) -> Response:
        """OAuth code exchange: a new non-expiring token (no refresh token exists)."""
        form = await request.form() if "form" in request.headers.get("content-type", "") else None
        data: dict[str, Any] = dict(form) if form is not None else (self.json_body(await request.body()) or {})
        if data.get("client_id") != self.CLIENT_ID or data.get("client_secret") != self.CLIENT_SECRET:
            return self.envelope(401, "unauthorized", "Invalid client_id or client_secret")
        if data.get("code") != self.AUTH_CODE:
            return self.envelope(400, "parameter_invalid", "Invalid authorization code")
        value = "dG9rO" + secrets.token_urlsafe(30)
        self.tokens.add_static(value, self.CLIENT_ID)
        return JSONResponse({"token_type": "Bearer", "token": value, "access_token": value})

    async def me(self, request: Request) -> Response:
        self._check(request)
        admin = self.admins[0] if self.admins else {"type": "admin", "id": "0", "name": "Sandbox", "email": ""}
        return self._ok(admin | {"app": {"type": "app", "id_code": APP_ID, "name": "Halcyon Data",
                                         "region": "US", "timezone": "UTC", "identity_verification": False}})

    async def list_admins(self, request: Request) -> Response:
        self._check(request)
        return self._ok({"type": "admin.list", "admins": self.page(request, self.admins, 0, len(self.admins))})

    async def list_teams(self, request: Request) -> Response:
        self._check(request)
        return self._ok({"type": "team.list", "teams": [{"type": "team", "id": str(SUPPORT_TEAM_ID), "name": "Support",
                                                         "admin_ids": [int(a["id"]) for a in self.admins
                                                                       if a["id"].isdigit()]}]})

    # --- cursors ---------------------------------------------------------------------------
    @staticmethod
    def _encode(key: Any, rid: str, page: int) -> str:
        return base64.b64encode(json.dumps([key, rid, page], separators=(",", ":")).encode()).decode()

    @staticmethod
    def _decode(cursor: str) -> tuple[Any, str, int]:
        try:
            key, rid, page = json.loads(base64.b64decode(cursor.encode(), validate=True))
            return tuple(key) if isinstance(key, list) else key, str(rid), int(page)
        except Exception:
            raise IntercomError(400, "parameter_invalid", "starting_after is invalid") from None

    @staticmethod
    def _per_page(value: Any, default: int, maximum: int) -> int:
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise IntercomError(400, "parameter_invalid", "per_page must be an integer") from None
        if number < 1 or number > maximum:
            raise IntercomError(400, "parameter_invalid", f"per_page must be between 1 and {maximum}")
        return number

    def _keyset_page(self, request: Request, items: list[dict[str, Any]], keys: list[tuple[Any, str]],
                     cursor: str | None, per_page: int, descending: bool
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page after a keyset cursor over items sorted by ``keys`` (ascending, or descending)."""
        page_no = 1
        start = 0
        if cursor:
            key, rid, page_no = self._decode(cursor)
            probe = (key, rid)
            start = _desc_after(keys, probe) if descending else bisect_right(keys, probe)
        page = self.page(request, items, start, per_page)
        total = len(items)
        pages: dict[str, Any] = {"type": "pages", "page": page_no, "per_page": per_page,
                                 "total_pages": max(1, -(-total // per_page))}
        if start + per_page < total:
            last = start + per_page - 1
            pages["next"] = {"page": page_no + 1, "starting_after": self._encode(keys[last][0], keys[last][1],
                                                                                 page_no + 1)}
        return page, pages

    # --- contacts --------------------------------------------------------------------------
    async def list_contacts(self, request: Request) -> Response:
        self._check(request)
        q = request.query_params
        try:
            per_page = self._per_page(q.get("per_page"), 50, 150)
            items = self.contact_list
            keys = [(_sortable(r["created_at"]), r["id"]) for r in items]
            page, pages = self._keyset_page(request, items, keys, q.get("starting_after"), per_page, False)
        except IntercomError as err:
            return self.envelope(err.status, err.code, err.message)
        return self._ok({"type": "list", "data": page, "total_count": len(items), "pages": pages})

    async def get_contact(self, request: Request) -> Response:
        self._check(request)
        rec = self.tables["contacts"].get(request.path_params["contact_id"])
        if rec is None or rec["id"] in self.deleted["contacts"]:
            return self.envelope(404, "not_found", "User Not Found")
        return self._ok(rec)

    async def search_contacts(self, request: Request) -> Response:
        self._check(request)
        return await self._search(request, "contacts", CONTACT_FIELDS, "list", "data", DEFAULT_VERSION)

    # --- conversations ---------------------------------------------------------------------
    async def list_conversations(self, request: Request) -> Response:
        version = self._check(request)
        q = request.query_params
        try:
            per_page = self._per_page(q.get("per_page"), 20, 150)
            items = self.tables["conversations"].select()[::-1]  # most recently updated first
            keys = [(_sortable(r["updated_at"]), r["id"]) for r in items]
            page, pages = self._keyset_page(request, items, keys, q.get("starting_after"), per_page, True)
        except IntercomError as err:
            return self.envelope(err.status, err.code, err.message)
        return self._ok({"type": "conversation.list",
                         "conversations": [self._wire_conversation(r, version) for r in page],
                         "total_count": len(items), "pages": pages})

    async def get_conversation(self, request: Request) -> Response:
        version = self._check(request)
        rec = self.tables["conversations"].get(request.path_params["conversation_id"])
        if rec is None or rec["id"] in self.deleted["conversations"]:
            return self.envelope(404, "not_found", "Resource Not Found")
        return self._ok(self._wire_conversation(rec, version, parts=True))

    async def search_conversations(self, request: Request) -> Response:
        version = self._check(request)
        return await self._search(request, "conversations", CONVERSATION_FIELDS, "conversation.list",
                                  "conversations", version)

    # --- search ----------------------------------------------------------------------------
    async def _search(self, request: Request, table: str, fields: dict[str, Callable[[dict[str, Any]], Any]],
                      list_type: str, key: str, version: str) -> Response:
        body = self.json_body(await request.body())
        try:
            if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
                raise IntercomError(400, "parameter_invalid", "query is required and must be an object")
            predicate = self._compile(body["query"], fields, depth=0)
            pagination = body.get("pagination") or {}
            if not isinstance(pagination, dict):
                raise IntercomError(400, "parameter_invalid", "pagination must be an object")
            per_page = self._per_page(pagination.get("per_page"), 20 if table == "conversations" else 50, 150)
            sort = body.get("sort") or {}
            if not isinstance(sort, dict):
                raise IntercomError(400, "parameter_invalid", "sort must be an object")
            field = sort.get("field", "updated_at")
            if field not in fields:
                raise IntercomError(400, "parameter_invalid", f"Unsupported sort field: {field}")
            order = sort.get("order", "ascending")
            if order not in ("ascending", "descending"):
                raise IntercomError(400, "parameter_invalid", "sort.order must be ascending or descending")
            getter = fields[field]
            items = [r for r in self.tables[table].select() if predicate(r)]
            items.sort(key=lambda r: (_sortable(getter(r)), r["id"]), reverse=order == "descending")
            keys = [(_sortable(getter(r)), r["id"]) for r in items]
            page, pages = self._keyset_page(request, items, keys, pagination.get("starting_after"), per_page,
                                            order == "descending")
        except IntercomError as err:
            return self.envelope(err.status, err.code, err.message)
        if table == "conversations":
            page = [self._wire_conversation(r, version) for r in page]
        return self._ok({"type": list_type, key: page, "total_count": len(items), "pages": pages})

    def _compile(self, query: dict[str, Any], fields: dict[str, Callable[[dict[str, Any]], Any]],
                 depth: int) -> Callable[[dict[str, Any]], bool]:
        op = query.get("operator")
        if op in ("AND", "OR"):
            if depth >= 2:
                raise IntercomError(400, "parameter_invalid", "Search queries can be nested at most two levels deep")
            parts = query.get("value")
            if not isinstance(parts, list) or not parts or len(parts) > 15:
                raise IntercomError(400, "parameter_invalid", f"{op} needs a list of 1 to 15 filters")
            preds = [self._compile(p if isinstance(p, dict) else {}, fields, depth + 1) for p in parts]
            return (lambda r: all(p(r) for p in preds)) if op == "AND" else (lambda r: any(p(r) for p in preds))
        field = query.get("field")
        if field not in fields:
            raise IntercomError(400, "parameter_invalid", f"Unsupported field: {field}")
        if op not in OPERATORS:
            raise IntercomError(400, "parameter_invalid", f"Invalid operator {op!r}; valid: {', '.join(OPERATORS)}")
        getter, value = fields[field], query.get("value")
        if op in ("IN", "NIN"):
            if not isinstance(value, list):
                raise IntercomError(400, "parameter_invalid", f"{op} needs a list value")
            wanted = {_norm(v) for v in value}

            def member(r: dict[str, Any]) -> bool:
                got = getter(r)
                return bool(wanted & {_norm(v) for v in got}) if isinstance(got, list) else _norm(got) in wanted
            return member if op == "IN" else (lambda r: not member(r))
        target = _norm(value)
        if op in ("<", "<=", ">", ">="):
            if not isinstance(target, int | float):
                raise IntercomError(400, "parameter_invalid", f"{field} {op} needs a number (Unix seconds for dates)")
            cmp = {"<": lambda a: a < target, "<=": lambda a: a <= target,
                   ">": lambda a: a > target, ">=": lambda a: a >= target}[op]
            return lambda r: isinstance(getter(r), int | float) and not isinstance(getter(r), bool) and cmp(getter(r))
        if op in ("=", "!="):
            def equal(r: dict[str, Any]) -> bool:
                got = getter(r)
                return target in {_norm(v) for v in got} if isinstance(got, list) else _norm(got) == target
            return equal if op == "=" else (lambda r: not equal(r))
        text = str(value or "").lower()
        match = {"~": lambda s: text in s, "!~": lambda s: text not in s,
                 "^": lambda s: s.startswith(text), "$": lambda s: s.endswith(text)}[op]
        return lambda r: match(str(getter(r) or "").lower())

    # --- companies -------------------------------------------------------------------------
    async def list_companies(self, request: Request) -> Response:
        """Page-numbered list (``page``, ``per_page`` ≤ 60); ``name``/``company_id`` narrow it."""
        self._check(request)
        q = request.query_params
        try:
            per_page = self._per_page(q.get("per_page"), 15, 60)
            page_no = int(q.get("page") or 1)
        except IntercomError as err:
            return self.envelope(err.status, err.code, err.message)
        except ValueError:
            return self.envelope(400, "parameter_invalid", "page must be an integer")
        items = self.companies
        if q.get("company_id") or q.get("name"):
            items = [c for c in items if (not q.get("company_id") or c["company_id"] == q["company_id"])
                     and (not q.get("name") or c["name"] == q["name"])]
            if not items:
                return self.envelope(404, "company_not_found", "Company Not Found")
        if page_no < 1:
            return self.envelope(400, "parameter_invalid", "page must be 1 or more")
        data = self.page(request, items, (page_no - 1) * per_page, per_page)
        return self._ok({"type": "list", "data": data, "total_count": len(items),
                         "pages": {"type": "pages", "page": page_no, "per_page": per_page,
                                   "total_pages": max(1, -(-len(items) // per_page))}})

    async def scroll_companies(self, request: Request) -> Response:
        """Scroll through every company: pass back ``scroll_param`` until ``data`` is empty."""
        self._check(request)
        param = request.query_params.get("scroll_param")
        offset = 0
        if param:
            try:
                offset = int(decode_cursor(param)["o"])
            except (ValueError, KeyError, TypeError):
                return self.envelope(404, "scroll_parameter_not_found", "scroll parameter not found")
        data = self.page(request, self.companies, offset, 50)
        return self._ok({"type": "list", "data": data, "pages": None, "total_count": None,
                         "scroll_param": encode_cursor({"o": offset + 50, "s": secrets.token_hex(4)})})

    async def get_company(self, request: Request) -> Response:
        self._check(request)
        rec = self.tables["companies"].get(request.path_params["company_id"])
        if rec is None or rec["id"] in self.deleted["companies"]:
            return self.envelope(404, "company_not_found", "Company Not Found")
        return self._ok(rec)


@functools.cache
def _tag_id(name: str) -> str:
    return str(stable_number([name], 1_000_000, 8_999_999, "ic-tag")[0])


def _norm(value: Any) -> Any:
    """Search values as Intercom compares them: numeric strings as numbers, strings case-insensitive."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text.lower()


def _sortable(value: Any) -> tuple[int, Any]:
    """A total order over mixed values: missing first, then numbers, then text (case-insensitive)."""
    if value is None or value == "":
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, int(value) if isinstance(value, bool) else value)
    if isinstance(value, list):
        return (2, ",".join(map(str, value)).lower())
    return (2, str(value).lower())


def _desc_after(keys: list[tuple[Any, str]], probe: tuple[Any, str]) -> int:
    """Index of the first key strictly below ``probe`` in a descending list."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] > probe or keys[mid] == probe:
            lo = mid + 1
        else:
            hi = mid
    return lo
