"""Notion API simulator (``https://api.notion.com/v1``), versions 2022-06-28 and 2025-09-03.

Served (BI reads): ``POST /v1/search``, ``POST /v1/databases/{id}/query`` (2022-06-28),
``GET /v1/databases/{id}``, ``POST /v1/data_sources/{id}/query`` and ``GET /v1/data_sources/{id}``
(2025-09-03), ``GET /v1/pages/{id}``, ``GET /v1/users``, ``GET /v1/users/me`` and
``POST /v1/oauth/token`` (Basic client auth; ``authorization_code`` and rotating ``refresh_token``).

Wire behaviour reproduced:

* Every call needs ``Notion-Version``: missing → 400 ``missing_version``, unknown → 400
  ``validation_error``. The version picks the model: 2025-09-03 has data sources (one per database
  here, ids derived from the database id), search filters on ``data_source`` and page parents are
  ``data_source_id``; the old ``databases/{id}/query`` answers ``invalid_request_url`` under it.
* Auth: a non-expiring internal-integration token, or OAuth access tokens (1 h) with a refresh
  token that rotates. A bad or expired token is 401 ``unauthorized``.
* Lists: ``{"object":"list","results":[…],"next_cursor","has_more","type":"page_or_database",…}``;
  ``page_size`` ≤ 100; ``next_cursor`` is the id of the next result, sent back as ``start_cursor``.
* Incremental: ``last_edited_time`` (minute granularity, seconds zeroed) filters ``on_or_after``,
  ``after``, ``before``, ``on_or_before``, ``equals`` (also ``created_time``), in ``and``/``or``
  compounds; search sorts by ``last_edited_time`` only.
* Deletes: trashed pages (``archived``/``in_trash: true``) drop out of search and queries but stay
  readable by id; a data-source query with ``"in_trash": true`` lists them, which is how a sync can
  see deletes without a full reconciliation.
* Errors: ``{"object":"error","status","code","message","request_id"}``; throttle is 429
  ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from bisect import bisect_left, bisect_right
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore
from sophia_lib.sandbox.simulator.base import NativeTable, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.simulator.formats import parse_any
from sophia_lib.sandbox.vendors import register

INTEGRATION_TOKEN = "secret_sandbox-demo-notion"  # noqa: S105 - demo credential of the simulator
CLIENT_ID = "1a2b3c4d-0000-4000-8000-5a4db0c11e47"
CLIENT_SECRET = "secret_sandbox-notion-client"  # noqa: S105
REFRESH_TOKEN = "nrt_sandbox-demo-refresh"  # noqa: S105
AUTH_CODE = "sandbox-notion-code"
BOT_ID = "5a4db0c1-50f1-4e1a-9000-0000000000b0"
WORKSPACE_ID = "5a4db0c1-50f1-4e1a-9000-00000000000a"
VERSIONS = ("2021-05-13", "2021-08-16", "2022-02-22", "2022-06-28", "2025-09-03")
DATA_SOURCES_FROM = "2025-09-03"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
DS_NAMESPACE = uuid.UUID("6ba7b812-9dad-11d1-80b4-00c04fd430c8")
TIMESTAMP_OPS = ("equals", "before", "after", "on_or_before", "on_or_after", "is_empty", "is_not_empty")


def _minute_iso(series: pd.Series) -> np.ndarray:
    """Timestamps → Notion's "2024-01-15T10:22:00.000Z" (seconds zeroed), vectorised."""
    stamps = pd.to_datetime(series, utc=True).dt.floor("min")
    return (stamps.dt.strftime("%Y-%m-%dT%H:%M") + ":00.000Z").astype(object).where(stamps.notna(), None).to_numpy()


def _norm_id(value: str) -> str | None:
    """A Notion id with or without dashes → canonical dashed lower-case form; None if not a UUID."""
    if not UUID_RE.match(value):
        return None
    return str(uuid.UUID(value.replace("-", "")))


def data_source_id(database_id: str) -> str:
    """The id of the (single) data source of a database under 2025-09-03, derived stably."""
    return str(uuid.uuid5(DS_NAMESPACE, database_id))


def rich_text(content: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": content, "link": None},
             "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                             "code": False, "color": "default"},
             "plain_text": content, "href": None}]


def _user_ref(uid: str) -> dict[str, str]:
    return {"object": "user", "id": uid}


def _slug(title: str, uid: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")
    return f"https://www.notion.so/{words + '-' if words else ''}{uid.replace('-', '')}"


DB_PROPERTIES = {
    "Name": {"id": "title", "name": "Name", "type": "title", "title": {}},
    "Author": {"id": "%3DauT", "name": "Author", "type": "people", "people": {}},
    "Words": {"id": "w%3Bds", "name": "Words", "type": "number", "number": {"format": "number"}},
}


@register
class Notion(SimulatedVendor):
    """Notion over the company's pages and databases."""

    name = "notion"

    # --- credentials -------------------------------------------------------------------
    def setup_credentials(self) -> None:
        self.tokens = TokenStore("ntn_oauth", access_ttl_s=3600.0, rotate_refresh=True)
        self.tokens.add_static(INTEGRATION_TOKEN, "internal")
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID)

    def credentials(self) -> dict[str, str]:
        return {"integration_token": INTEGRATION_TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN, "notion_version": "2022-06-28"}

    # --- rendering ---------------------------------------------------------------------
    def render(self) -> None:
        company = self.company
        employees = company["employees"]
        domain = str(employees["email"].dropna().iloc[0]).split("@")[-1] if len(employees) else "example.com"
        self.workspace_name = domain.split(".")[0].capitalize()
        people = company.presence_of("employee", "notion").join(
            employees.set_index("employee_id")[["first_name", "last_name", "email", "is_active", "deleted_at"]],
            on="entity_id", suffixes=("", "_emp"))
        primary = people[~people["is_duplicate"].fillna(False).astype(bool)].drop_duplicates("entity_id")
        self.user_of: dict[str, str] = primary.set_index("entity_id")["system_id"].to_dict()
        live = people[people["deleted_at"].isna() & people["deleted_at_emp"].isna()
                      & people["is_active"].fillna(True).astype(bool)]
        full = (live["first_name"].fillna("") + " " + live["last_name"].fillna("")).str.strip()
        names = live["name"].where(live["name"].notna() & (live["name"] != ""), full)
        mails = live["email"].fillna(live["email_emp"])
        users = [{"object": "user", "id": uid, "name": str(name), "avatar_url": None, "type": "person",
                  "person": {"email": None if pd.isna(mail) else str(mail).strip()}}
                 for uid, name, mail in zip(live["system_id"], names, mails, strict=True)]
        users.sort(key=lambda u: u["id"])
        self.bot = {"object": "user", "id": BOT_ID, "name": "Sophia", "avatar_url": None, "type": "bot",
                    "bot": {"owner": {"type": "workspace", "workspace": True}, "workspace_name": self.workspace_name}}
        self.users = [*users, self.bot]

        dbs = company["notion_databases"]
        db_last = _minute_iso(dbs["updated_at"])
        db_created = _minute_iso(dbs["created_at"])
        db_rows = []
        self.db_canon: dict[str, str] = {}
        for canon, sys_id, title, created, last, mod, deleted in zip(
                dbs["database_id"], dbs["system_id"], dbs["title"].fillna("").astype(str), db_created, db_last,
                pd.to_datetime(dbs["updated_at"], utc=True).dt.floor("min"), dbs["deleted_at"], strict=True):
            trashed = bool(pd.notna(deleted))
            self.db_canon[canon] = sys_id
            db_rows.append((mod.to_pydatetime(), {
                "object": "database", "id": sys_id, "cover": None, "icon": None, "created_time": created,
                "created_by": _user_ref(BOT_ID), "last_edited_by": _user_ref(BOT_ID), "last_edited_time": last,
                "title": rich_text(title), "description": [], "is_inline": False, "properties": DB_PROPERTIES,
                "parent": {"type": "workspace", "workspace": True}, "url": _slug("", sys_id), "public_url": None,
                "archived": trashed, "in_trash": trashed,
            }, trashed))
        self.tables["databases"] = NativeTable.build(db_rows)

        pages = company["pages"]
        edited = pd.to_datetime(pages["updated_at"], utc=True)
        if "last_edited_at" in pages:  # content edits and archive/delete both move last_edited_time
            edited = pd.concat([edited, pd.to_datetime(pages["last_edited_at"], utc=True)], axis=1).max(axis=1)
        edited_min = edited.dt.floor("min")
        frame = pd.DataFrame({
            "id": pages["system_id"].astype(str), "title": pages["title"].fillna("").astype(str),
            "created": _minute_iso(pages["created_at"]), "last": _minute_iso(edited),
            "author": pages["author_id"].map(self.user_of), "editor": pages["last_edited_by_id"].map(self.user_of),
            "db": pages["database_id"].map(self.db_canon), "words": pages["word_count"],
            "trashed": (pages["archived"].fillna(False).astype(bool) | pages["deleted_at"].notna()).to_numpy(),
        }, index=pages.index)
        page_rows = []
        for rec, mod in zip(frame.to_dict("records"), edited_min, strict=True):
            author = rec["author"] if isinstance(rec["author"], str) else BOT_ID
            editor = rec["editor"] if isinstance(rec["editor"], str) else author
            db = rec["db"] if isinstance(rec["db"], str) else None
            words = None if pd.isna(rec["words"]) else int(rec["words"])
            if db is not None:
                parent = {"type": "database_id", "database_id": db}
                properties = {
                    "Name": {"id": "title", "type": "title", "title": rich_text(rec["title"])},
                    "Author": {"id": "%3DauT", "type": "people", "people": [
                        {"object": "user", "id": author}]},
                    "Words": {"id": "w%3Bds", "type": "number", "number": words},
                }
            else:
                parent = {"type": "workspace", "workspace": True}
                properties = {"title": {"id": "title", "type": "title", "title": rich_text(rec["title"])}}
            page_rows.append((mod.to_pydatetime(), {
                "object": "page", "id": rec["id"], "created_time": rec["created"], "last_edited_time": rec["last"],
                "created_by": _user_ref(author), "last_edited_by": _user_ref(editor), "cover": None, "icon": None,
                "parent": parent, "archived": bool(rec["trashed"]), "in_trash": bool(rec["trashed"]),
                "properties": properties, "url": _slug(rec["title"], rec["id"]), "public_url": None,
            }, bool(rec["trashed"])))
        table = NativeTable.build(page_rows)
        self.tables["pages"] = table
        self.db_pages: dict[str, list[int]] = {}
        for i, rec in enumerate(table.records):
            if rec["parent"]["type"] == "database_id":
                self.db_pages.setdefault(rec["parent"]["database_id"], []).append(i)
        self.ds_to_db = {data_source_id(r["id"]): r["id"] for r in self.tables["databases"].records}

    # --- version-dependent shapes ------------------------------------------------------------
    @staticmethod
    def _new(version: str) -> bool:
        return version >= DATA_SOURCES_FROM

    def _page_out(self, page: dict[str, Any], version: str) -> dict[str, Any]:
        if not self._new(version) or page["parent"]["type"] != "database_id":
            return page
        db = page["parent"]["database_id"]
        return {**page, "parent": {"type": "data_source_id", "data_source_id": data_source_id(db), "database_id": db}}

    def _database_out(self, db: dict[str, Any], version: str) -> dict[str, Any]:
        if not self._new(version):
            return db
        out = {k: v for k, v in db.items() if k != "properties"}
        out["data_sources"] = [{"id": data_source_id(db["id"]), "name": db["title"][0]["plain_text"]
                                if db["title"] else ""}]
        return out

    def _data_source(self, db: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "data_source", "id": data_source_id(db["id"]), "created_time": db["created_time"],
            "last_edited_time": db["last_edited_time"], "created_by": db["created_by"],
            "last_edited_by": db["last_edited_by"], "title": db["title"], "description": [],
            "properties": DB_PROPERTIES, "parent": {"type": "database_id", "database_id": db["id"]},
            "database_parent": {"type": "workspace", "workspace": True}, "archived": db["archived"],
            "in_trash": db["in_trash"], "is_inline": False, "icon": None, "cover": None, "url": db["url"],
            "public_url": None,
        }

    # --- vendor answers ----------------------------------------------------------------
    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [
            ("/v1/oauth/token", self.oauth_token, ["POST"]),
            ("/v1/search", self.search, ["POST"]),
            ("/v1/databases/{id}/query", self.query_database, ["POST"]),
            ("/v1/databases/{id}", self.get_database, ["GET"]),
            ("/v1/data_sources/{id}/query", self.query_data_source, ["POST"]),
            ("/v1/data_sources/{id}", self.get_data_source, ["GET"]),
            ("/v1/pages/{id}", self.get_page, ["GET"]),
            ("/v1/users/me", self.me, ["GET"]),
            ("/v1/users", self.list_users, ["GET"]),
            ("/v1/users/{id}", self.get_user, ["GET"]),
            ("/{rest:path}", self.no_route, ["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ]

    @staticmethod
    def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"object": "error", "status": status, "code": code, "message": message,
                             "request_id": str(uuid.uuid4()), **extra}, status_code=status)

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        response = self._error(429, "rate_limited", "You have been rate limited. Please try again in a few minutes.")
        response.headers["Retry-After"] = str(fault.params.get("retry_after", 1))
        return response

    def error_response(self, request: Request, status: int, message: str) -> Response:
        code = {500: "internal_server_error", 502: "bad_gateway", 503: "service_unavailable",
                504: "gateway_timeout", 529: "service_overload"}.get(status, "internal_server_error")
        text = "Unexpected error occurred." if status == 500 else message
        return self._error(status, code, text)

    def expired_token_response(self, request: Request) -> Response:
        return self._error(401, "unauthorized", "API token is invalid.")

    def error_response_for_body(self, exc: Exception) -> Response:
        return self._error(400, "invalid_json", "Error parsing JSON body.")

    def _version(self, request: Request) -> str:
        version = request.headers.get("notion-version")
        if version is None:
            raise Reply(self._error(400, "missing_version", "Notion-Version header failed validation: "
                                    "Notion-Version header should be defined, instead was `undefined`."))
        if version not in VERSIONS:
            raise Reply(self._error(400, "validation_error", f"Provided API version {version} is invalid or "
                                    "deprecated. Please use a valid version."))
        return version

    def _guard_call(self, request: Request) -> str:
        """Version header first (Notion rejects a call without it before anything else), then the token."""
        version = self._version(request)
        self.require_bearer(request)
        return version

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = self.json_body(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise Reply(self._error(400, "validation_error", "body failed validation: body should be an object."))
        return body

    def _page_size(self, value: Any, where: str = "body") -> int:
        if value is None:
            return 100
        if where == "query":
            try:
                value = int(value)
            except ValueError:
                raise Reply(self._error(400, "validation_error", f"{where} failed validation: {where}.page_size "
                                        f"should be a number, instead was `\"{value}\"`.")) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Reply(self._error(400, "validation_error", f"{where} failed validation: {where}.page_size should "
                                    f"be a number, instead was `{json.dumps(value)}`."))
        if not 1 <= value <= 100:
            raise Reply(self._error(400, "validation_error", f"{where} failed validation: {where}.page_size should "
                                    f"be ≤ `100`, instead was `{value}`." if value > 100 else
                                    f"{where} failed validation: {where}.page_size should be ≥ `1`, instead was "
                                    f"`{value}`."))
        return value

    def _list(self, request: Request, items: list[dict[str, Any]], body: dict[str, Any], kind: str,
              version: str, where: str = "body") -> Response:
        size = self._page_size(body.get("page_size"), where)
        cursor = body.get("start_cursor")
        start = 0
        if cursor is not None:
            wanted = _norm_id(cursor) if isinstance(cursor, str) else None
            start = next((i for i, r in enumerate(items) if r["id"] == wanted), -1) if wanted else -1
            if start < 0:
                return self._error(400, "validation_error", f"{where} failed validation: {where}.start_cursor "
                                   f"should be a valid cursor, instead was `{cursor}`.")
        page = self.page(request, items, start, size)
        outs = [self._page_out(r, version) if r.get("object") == "page" else
                self._data_source(r) if self._new(version) and r.get("object") == "database" else r for r in page]
        more = start + size < len(items)
        return JSONResponse({"object": "list", "results": outs, "next_cursor": items[start + size]["id"] if more
                             else None, "has_more": more, "type": kind, kind: {}, "request_id": str(uuid.uuid4())})

    async def no_route(self, request: Request) -> Response:
        return self._error(400, "invalid_request_url", "Invalid request URL.")

    # OAuth ------------------------------------------------------------------------------
    async def oauth_token(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":") if auth.lower().startswith(
                "basic ") else ("", "", "")
        except (binascii.Error, UnicodeDecodeError):
            client_id, secret = "", ""
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            return self._error(401, "unauthorized", "Invalid client.")
        body = await self._body(request)
        grant = body.get("grant_type")
        if grant == "refresh_token":
            try:
                access, refresh = self.tokens.refresh(str(body.get("refresh_token", "")), CLIENT_ID)
            except InvalidGrant:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid refresh token."},
                                    status_code=400)
        elif grant == "authorization_code":
            if body.get("code") != AUTH_CODE:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid code."},
                                    status_code=400)
            access, new = self.tokens.issue(CLIENT_ID)
            assert new is not None
            refresh = new
        else:
            return self._error(400, "validation_error", "body failed validation: body.grant_type should be "
                               "`authorization_code` or `refresh_token`.")
        return JSONResponse({
            "access_token": access.value, "token_type": "bearer", "refresh_token": refresh.value,
            "expires_in": 3600, "bot_id": BOT_ID, "workspace_id": WORKSPACE_ID, "workspace_name": self.workspace_name,
            "workspace_icon": None, "owner": {"type": "workspace", "workspace": True},
            "duplicated_template_id": None, "request_id": str(uuid.uuid4()),
        })

    # search -----------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        version = self._guard_call(request)
        body = await self._body(request)
        query = body.get("query", "")
        if not isinstance(query, str):
            return self._error(400, "validation_error", "body failed validation: body.query should be a string.")
        objects = ["page", "data_source" if self._new(version) else "database"]
        flt = body.get("filter")
        if flt is not None:
            if (not isinstance(flt, dict) or flt.get("property") != "object" or flt.get("value") not in objects):
                return self._error(400, "validation_error", "body failed validation: body.filter.value should be "
                                   f"`\"{objects[0]}\"` or `\"{objects[1]}\"`, instead was "
                                   f"`{json.dumps(flt.get('value') if isinstance(flt, dict) else flt)}`.")
            objects = [flt["value"]]
        direction = "descending"
        sort = body.get("sort")
        if sort is not None:
            if (not isinstance(sort, dict) or sort.get("timestamp") != "last_edited_time"
                    or sort.get("direction") not in ("ascending", "descending")):
                return self._error(400, "validation_error", "body failed validation: body.sort.timestamp should be "
                                   "`\"last_edited_time\"` and body.sort.direction `\"ascending\"` or "
                                   "`\"descending\"`.")
            direction = sort["direction"]
        rows: list[tuple[datetime, str, dict[str, Any]]] = []
        needle = query.strip().lower()
        for kind, table in (("page", self.tables["pages"]), ("database", self.tables["databases"])):
            wanted = kind if kind == "page" else ("data_source" if self._new(version) else "database")
            if wanted not in objects:
                continue
            for mod, rec, deleted in zip(table.modified, table.records, table.deleted, strict=True):
                if deleted or (needle and needle not in self._title(rec).lower()):
                    continue
                rows.append((mod, rec["id"], rec))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=direction == "descending")
        return self._list(request, [r[2] for r in rows], body, "page_or_database", version)

    @staticmethod
    def _title(rec: dict[str, Any]) -> str:
        if rec["object"] == "database":
            return "".join(t["plain_text"] for t in rec["title"])
        prop = rec["properties"].get("Name") or rec["properties"].get("title") or {}
        return "".join(t["plain_text"] for t in prop.get("title", []))

    # database / data-source query ----------------------------------------------------
    def _db(self, raw_id: str) -> dict[str, Any]:
        db_id = _norm_id(raw_id)
        if db_id is None:
            raise Reply(self._error(400, "validation_error", f"path failed validation: path.database_id should be "
                                    f"a valid uuid, instead was `\"{raw_id}\"`."))
        db = self.tables["databases"].get(db_id)
        if db is None or db["in_trash"]:
            raise Reply(self._error(404, "object_not_found", f"Could not find database with ID: {db_id}. Make sure "
                                    "the relevant pages and databases are shared with your integration."))
        return db

    async def query_database(self, request: Request) -> Response:
        version = self._guard_call(request)
        if self._new(version):
            return self._error(400, "invalid_request_url", "Invalid request URL. Databases are queried through "
                               "their data sources from version 2025-09-03: POST /v1/data_sources/{id}/query.")
        db = self._db(request.path_params["id"])
        return self._query(request, db, await self._body(request), version)

    async def query_data_source(self, request: Request) -> Response:
        version = self._guard_call(request)
        if not self._new(version):
            return self._error(400, "invalid_request_url", "Invalid request URL.")
        raw = request.path_params["id"]
        ds = _norm_id(raw)
        db_id = self.ds_to_db.get(ds or "")
        if db_id is None:
            return self._error(404, "object_not_found", f"Could not find data_source with ID: {ds or raw}. Make "
                               "sure the relevant pages and databases are shared with your integration.")
        return self._query(request, self._db(db_id), await self._body(request), version)

    def _query(self, request: Request, db: dict[str, Any], body: dict[str, Any], version: str) -> Response:
        table = self.tables["pages"]
        indexes = self.db_pages.get(db["id"], [])
        include_trash = body.get("in_trash") is True and self._new(version)
        window = (None, None)
        test = None
        if body.get("filter") is not None:
            window, test = self._filter(body["filter"])
        lo, hi = 0, len(indexes)
        mods = [table.modified[i] for i in indexes] if window != (None, None) else []
        if window[0] is not None:  # a plain last_edited_time lower bound: bisect the sorted index
            lo = (bisect_left if window[0][1] else bisect_right)(mods, window[0][0])
        if window[1] is not None:
            hi = (bisect_right if window[1][1] else bisect_left)(mods, window[1][0])
        items = [table.records[i] for i in indexes[lo:hi] if include_trash or not table.deleted[i]]
        if test is not None:
            items = [r for r in items if test(r)]
        items = self._sort(items, body.get("sorts"))
        return self._list(request, items, body, "page_or_database", version)

    def _sort(self, items: list[dict[str, Any]], sorts: Any) -> list[dict[str, Any]]:
        if sorts is None:
            return sorted(items, key=lambda r: (r["created_time"], r["id"]), reverse=True)
        if not isinstance(sorts, list):
            raise Reply(self._error(400, "validation_error", "body failed validation: body.sorts should be an "
                                    "array."))
        for spec in reversed(sorts):
            if not isinstance(spec, dict) or spec.get("direction") not in ("ascending", "descending"):
                raise Reply(self._error(400, "validation_error", "body failed validation: body.sorts[0].direction "
                                        "should be `\"ascending\"` or `\"descending\"`."))
            reverse = spec["direction"] == "descending"
            if spec.get("timestamp") in ("last_edited_time", "created_time"):
                field = spec["timestamp"]
                items = sorted(items, key=lambda r, f=field: (r[f], r["id"]), reverse=reverse)
            elif spec.get("property") in DB_PROPERTIES:
                prop = spec["property"]
                items = sorted(items, key=lambda r, p=prop: self._prop_value(r, p), reverse=reverse)
            else:
                raise Reply(self._error(400, "validation_error", "Could not find sort property with name or id: "
                                        f"{spec.get('property') or spec.get('timestamp')}"))
        return items

    @staticmethod
    def _prop_value(rec: dict[str, Any], prop: str) -> tuple[int, Any]:
        value = rec["properties"].get(prop, {})
        if prop == "Name":
            return (0, "".join(t["plain_text"] for t in value.get("title", [])))
        if prop == "Words":
            number = value.get("number")
            return (1, 0) if number is None else (0, number)
        people = value.get("people", [])
        return (0, people[0]["id"] if people else "")

    def _filter(self, flt: Any) -> tuple[tuple[Any, Any], Any]:
        """Parse a filter → (((since, inclusive) | None, (until, inclusive) | None), predicate | None).

        A top-level last_edited_time bound (alone or in an ``and``) becomes an index window, the rest a
        predicate over page records.
        """
        bad = Reply(self._error(400, "validation_error", f"body failed validation: body.filter is not a valid "
                                f"filter: {json.dumps(flt)[:200]}"))
        if not isinstance(flt, dict):
            raise bad
        if "and" in flt or "or" in flt:
            key = "and" if "and" in flt else "or"
            parts = flt[key]
            if not isinstance(parts, list) or not parts:
                raise bad
            parsed = [self._filter(p) for p in parts]
            tests = [self._as_test(w, t) for w, t in parsed]
            if key == "and":
                return (None, None), lambda r: all(t(r) for t in tests)
            return (None, None), lambda r: any(t(r) for t in tests)
        if "timestamp" in flt:
            field = flt["timestamp"]
            if field not in ("last_edited_time", "created_time") or not isinstance(flt.get(field), dict):
                raise bad
            cond = flt[field]
            ops = [op for op in cond if op in TIMESTAMP_OPS]
            if len(ops) != 1 or len(cond) != 1:
                raise bad
            op = ops[0]
            if op in ("is_empty", "is_not_empty"):
                return (None, None), (lambda r: op == "is_not_empty")
            try:
                when = parse_any(cond[op])
            except (ValueError, TypeError, OverflowError):
                raise Reply(self._error(400, "validation_error", f"body failed validation: body.filter.{field}."
                                        f"{op} should be a valid ISO 8601 date string, instead was "
                                        f"`{json.dumps(cond[op])}`.")) from None
            if field == "last_edited_time" and op in ("after", "on_or_after"):
                return ((when, op == "on_or_after"), None), None
            if field == "last_edited_time" and op in ("before", "on_or_before"):
                return (None, (when, op == "on_or_before")), None

            def test(r: dict[str, Any], f: str = field, o: str = op, w: datetime = when) -> bool:
                t = parse_any(r[f])
                return {"equals": t == w, "before": t < w, "after": t > w, "on_or_before": t <= w,
                        "on_or_after": t >= w}[o]
            return (None, None), test
        prop = flt.get("property")
        if prop is not None:
            if prop not in DB_PROPERTIES and prop != "title":
                raise Reply(self._error(400, "validation_error", f"Could not find property with name or id: {prop}"))
            if prop in ("Name", "title") and isinstance(flt.get("title") or flt.get("rich_text"), dict):
                cond = flt.get("title") or flt.get("rich_text")
                if "contains" in cond:
                    return (None, None), lambda r: str(cond["contains"]).lower() in self._title(r).lower()
                if "equals" in cond:
                    return (None, None), lambda r: self._title(r) == cond["equals"]
            if prop == "Words" and isinstance(flt.get("number"), dict):
                cond = flt["number"]
                ops = {"equals": lambda a, b: a == b, "greater_than": lambda a, b: a > b,
                       "less_than": lambda a, b: a < b, "greater_than_or_equal_to": lambda a, b: a >= b,
                       "less_than_or_equal_to": lambda a, b: a <= b}
                if len(cond) == 1 and next(iter(cond)) in ops:
                    name, value = next(iter(cond.items()))
                    return (None, None), lambda r: (r["properties"]["Words"]["number"] is not None
                                                    and ops[name](r["properties"]["Words"]["number"], value))
        raise bad

    @staticmethod
    def _as_test(window: tuple[Any, Any], test: Any) -> Any:
        since, until = window

        def combined(r: dict[str, Any]) -> bool:
            t = parse_any(r["last_edited_time"]) if since or until else None
            if since and not (t >= since[0] if since[1] else t > since[0]):
                return False
            if until and not (t <= until[0] if until[1] else t < until[0]):
                return False
            return test is None or test(r)
        return combined

    # single objects -------------------------------------------------------------------
    async def get_database(self, request: Request) -> Response:
        version = self._guard_call(request)
        return JSONResponse(self._database_out(self._db(request.path_params["id"]), version))

    async def get_data_source(self, request: Request) -> Response:
        version = self._guard_call(request)
        if not self._new(version):
            return self._error(400, "invalid_request_url", "Invalid request URL.")
        raw = request.path_params["id"]
        db_id = self.ds_to_db.get(_norm_id(raw) or "")
        if db_id is None:
            return self._error(404, "object_not_found", f"Could not find data_source with ID: {raw}. Make sure the "
                               "relevant pages and databases are shared with your integration.")
        return JSONResponse(self._data_source(self._db(db_id)))

    async def get_page(self, request: Request) -> Response:
        version = self._guard_call(request)
        raw = request.path_params["id"]
        page_id = _norm_id(raw)
        if page_id is None:
            return self._error(400, "validation_error", f"path failed validation: path.page_id should be a valid "
                               f"uuid, instead was `\"{raw}\"`.")
        page = self.tables["pages"].get(page_id)
        if page is None:
            return self._error(404, "object_not_found", f"Could not find page with ID: {page_id}. Make sure the "
                               "relevant pages and databases are shared with your integration.")
        return JSONResponse(self._page_out(page, version))  # trashed pages stay readable, in_trash: true

    async def list_users(self, request: Request) -> Response:
        version = self._guard_call(request)
        params = {k: v for k, v in request.query_params.items() if k in ("page_size", "start_cursor")}
        return self._list(request, self.users, params, "user", version, where="query")

    async def get_user(self, request: Request) -> Response:
        self._guard_call(request)
        uid = _norm_id(request.path_params["id"])
        user = next((u for u in self.users if u["id"] == uid), None)
        if user is None:
            return self._error(404, "object_not_found", f"Could not find user with ID: {request.path_params['id']}.")
        return JSONResponse(user)

    async def me(self, request: Request) -> Response:
        self._guard_call(request)
        return JSONResponse(self.bot)
