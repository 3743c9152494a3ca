"""Gong API v2, as a connector sees it (VENDOR-APIS.md section 4).

* Auth: Basic ``accessKey:accessKeySecret``, or an OAuth bearer from ``POST /oauth2/generate-customer-token``
  (grant and code/refresh token in the query string, client credentials as Basic auth).
* ``GET /v2/calls`` and ``POST /v2/calls/extensive``: calls whose start time is in [fromDateTime, toDateTime),
  oldest first, 100 a page; ``records.cursor`` only while more pages remain (query parameter on GET, body
  field on POST: a cursor sent in the query string of the POST is ignored, so page 1 comes back, as Gong does).
  An empty result is **404** "No calls found corresponding to the provided filters".
* Calls have no updated field. Analysis (content topics, interaction stats, speakers) arrives late: it is
  only in ``/calls/extensive`` once ``analysis_ready_at <= now``; connectors re-read a lookback window.
* Deleted calls simply vanish (Gong exposes no tombstones).
* ``GET /v2/users``: the employees that Gong records (customer-facing teams plus every call owner).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from bisect import bisect_left
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, bearer
from sophia_lib.sandbox.simulator.base import Handler, Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.simulator.formats import decode_cursor, encode_cursor, parse_any
from sophia_lib.sandbox.vendors import register

PAGE_SIZE = 100
NO_CALLS = "No calls found corresponding to the provided filters"
GONG_DEPARTMENTS = ("Sales", "Customer Success")
WORKSPACE_ID = "623457276584334"
_ALNUM = string.ascii_lowercase + string.digits


def stable_number(keys: Any, low: int, span: int, salt: str) -> list[str]:
    """Numeric-string ids that depend only on a canonical id (stable across renders and advance)."""
    return [str(low + int.from_bytes(hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=8).digest()) % span)
            for k in keys]


def iso_offset_series(series: pd.Series) -> pd.Series:
    """Aware timestamps → ``2024-01-15T16:02:10Z`` (Gong writes ISO 8601 in the company's zone; UTC here)."""
    s = pd.to_datetime(series, utc=True)
    return s.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).where(s.notna(), None)


def _list(value: Any) -> list[Any]:
    """A list column cell (list, tuple, array, or a delimited string) → list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    try:
        return list(value)
    except TypeError:
        return [] if pd.isna(value) else [value]


def _num(value: Any, default: float | None = None) -> float | None:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if number != number else number  # NaN


class GongError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@register
class Gong(SimulatedVendor):
    """Gong v2: Basic key/secret or OAuth; calls by date range, extensive details with late analysis."""

    name = "gong"
    ACCESS_KEY = "GONGSANDBOXACCESSKEY0001"
    ACCESS_KEY_SECRET = "gong-sandbox-access-key-secret"
    CLIENT_ID = "gong-sandbox-client"
    CLIENT_SECRET = "gong-sandbox-client-secret"
    REFRESH_TOKEN = "gong-sandbox-refresh-token"

    # --- credentials and envelopes -------------------------------------------------------
    def setup_credentials(self) -> None:
        self.tokens.access_ttl_s = 86_400.0
        self.tokens.add_refresh_token(self.REFRESH_TOKEN, self.CLIENT_ID, ("api:calls:read:basic",
                                                                          "api:calls:read:extensive",
                                                                          "api:users:read"))
        self._codes: dict[str, str] = {}
        self._known: set[str] = set()

    def credentials(self) -> dict[str, str]:
        return {"access_key": self.ACCESS_KEY, "access_key_secret": self.ACCESS_KEY_SECRET,
                "client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET, "refresh_token": self.REFRESH_TOKEN}

    @staticmethod
    def request_id() -> str:
        return "".join(secrets.choice(_ALNUM) for _ in range(19))

    def envelope(self, status: int, *messages: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"requestId": self.request_id(), "errors": list(messages)}, status_code=status,
                            headers=headers)

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return self.envelope(status, message)

    def error_response_for_body(self, exc: Exception) -> Response:
        return self.envelope(400, f"Unable to parse request body: {exc}")

    def expired_token_response(self, request: Request) -> Response:
        return self.envelope(401, "Access token expired")

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        retry = str(fault.params.get("retry_after", 2))
        return self.envelope(429, "API request limit exceeded: 3 calls per second, 10000 calls per day",
                             headers={"Retry-After": retry})

    def _auth(self, request: Request) -> None:
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                key, _, secret = base64.b64decode(value.strip()).decode().partition(":")
            except Exception:
                raise Reply(self.envelope(401, "Invalid Authorization header")) from None
            if key == self.ACCESS_KEY and secret == self.ACCESS_KEY_SECRET:
                return
            raise Reply(self.envelope(401, "Invalid access key or secret"))
        token = bearer(header)
        if token is not None and self.tokens.check(token) is not None:
            return
        if token is not None and token in self._known:
            raise Reply(self.expired_token_response(request))
        raise Reply(self.envelope(401, "Authorization header is missing or invalid"))

    # --- rendering -------------------------------------------------------------------------
    def render(self) -> None:
        c = self.company
        emp = c["employees"]
        user_ids = dict(zip(emp["employee_id"], stable_number(emp["employee_id"], 10**14, 9 * 10**14, "gong-user"),
                            strict=True))
        pres = c.presence_of("employee", "gong")
        pres = pres[~pres["is_duplicate"].fillna(False).astype(bool)]
        user_ids.update(dict(zip(pres["entity_id"], pres["system_id"].astype(str), strict=True)))
        self.user_ids = user_ids
        calls = c["calls"]
        calls = calls[calls["deleted_at"].isna() & (calls["started_at"] <= c.now)].copy()
        calls = calls.sort_values(["started_at", "system_id"]).reset_index(drop=True)
        self._render_users(set(calls["owner_id"].dropna()) | set(pres["entity_id"]))
        started = iso_offset_series(calls["started_at"])
        duration = calls["duration_s"].fillna(0).astype(float).round().astype(int)
        direction = calls["direction"].map(
            lambda d: d.title() if isinstance(d, str) and d.title() in ("Inbound", "Outbound", "Conference")
            else ("Conference" if d is None or not isinstance(d, str) else "Unknown"))
        ids = calls["system_id"].astype(str)
        meta = pd.DataFrame({
            "id": ids,
            "url": "https://app.gong.io/call?id=" + ids,
            "title": calls["title"].astype(object).where(calls["title"].notna(), None),
            "scheduled": iso_offset_series(calls["started_at"].dt.floor("15min")),
            "started": started,
            "duration": duration,
            "primaryUserId": calls["owner_id"].map(user_ids).astype(object).where(calls["owner_id"].notna(), None),
            "direction": direction,
            "system": "Zoom",
            "scope": "External",
            "media": "Video",
            "language": "eng",
            "workspaceId": WORKSPACE_ID,
        })
        records = meta.to_dict("records")
        for rec in records:
            rec.update({"sdrDisposition": None, "clientUniqueId": None, "customData": None, "purpose": None,
                        "meetingUrl": f"https://zoom.us/j/{rec['id'][-10:]}", "isPrivate": False,
                        "calendarEventId": hashlib.blake2b(rec["id"].encode(), digest_size=8).hexdigest()})
        self.calls = records
        self.call_rows = calls.to_dict("records")
        self.started = calls["started_at"].tolist()
        self.index = {rec["id"]: i for i, rec in enumerate(records)}
        self.now = c.now
        self._render_lookups()

    def _render_users(self, extra: set[str]) -> None:
        emp = self.company["employees"]
        chosen = emp[emp["department"].isin(GONG_DEPARTMENTS) | emp["employee_id"].isin(extra)]
        chosen = chosen[chosen["deleted_at"].isna()].copy()
        chosen["_created"] = iso_offset_series(chosen["hired_at"].fillna(chosen["created_at"]))
        users = []
        for row in chosen.sort_values("employee_id").to_dict("records"):
            uid = self.user_ids[row["employee_id"]]
            manager = row.get("manager_id")
            users.append({
                "id": uid, "emailAddress": row["email"], "created": row["_created"],
                "active": bool(row["is_active"]) if row["is_active"] is not None else True,
                "emailAliases": [], "trustedEmailAddress": None, "firstName": row["first_name"],
                "lastName": row["last_name"], "title": row["title"], "phoneNumber": None, "extension": None,
                "personalMeetingUrls": [f"https://zoom.us/my/{row['first_name'].lower()}{uid[-4:]}"],
                "settings": {"webConferencesRecorded": True, "preventWebConferenceRecording": False,
                             "telephonyCallsImported": False, "emailsImported": True, "preventEmailImport": False,
                             "nonRecordedMeetingsImported": True, "gongConnectEnabled": True},
                "managerId": self.user_ids.get(manager) if isinstance(manager, str) else None,
                "meetingConsentPageUrl": None, "spokenLanguages": [{"language": "en-US", "primary": True}],
            })
        self.users = users

    # --- routes ----------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        return [
            ("/oauth2/authorize", self.authorize, ["GET"]),
            ("/oauth2/generate-customer-token", self.token, ["POST"]),
            ("/v2/calls", self.list_calls, ["GET"]),
            ("/v2/calls/extensive", self.calls_extensive, ["POST"]),
            ("/v2/calls/{call_id}", self.get_call, ["GET"]),
            ("/v2/users", self.list_users, ["GET"]),
        ]

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.CLIENT_ID or not q.get("redirect_uri"):
            return self.envelope(400, "Invalid client_id or missing redirect_uri")
        code = secrets.token_urlsafe(16)
        self._codes[code] = q["redirect_uri"]
        params = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        sep = "&" if "?" in q["redirect_uri"] else "?"
        return RedirectResponse(q["redirect_uri"] + sep + urlencode(params), status_code=302)

    async def token(self, request: Request) -> Response:
        """Grant and code/refresh token in the query string; client id and secret as Basic auth."""
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        try:
            client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
        except Exception:
            client_id, secret = "", ""
        if scheme.lower() != "basic" or client_id != self.CLIENT_ID or secret != self.CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_description": "Bad client credentials"},
                                status_code=401)
        q = request.query_params
        grant = q.get("grant_type")
        if grant == "refresh_token":
            try:
                access, refresh = self.tokens.refresh(q.get("refresh_token", ""), self.CLIENT_ID)
            except InvalidGrant:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid refresh token"},
                                    status_code=400)
        elif grant == "authorization_code":
            if self._codes.pop(q.get("code", ""), None) is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid authorization code"},
                                    status_code=400)
            access, new = self.tokens.issue(self.CLIENT_ID, ("api:calls:read:basic", "api:calls:read:extensive",
                                                             "api:users:read"))
            assert new is not None
            refresh = new
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        self._known.add(access.value)
        base = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        return JSONResponse({"access_token": access.value, "refresh_token": refresh.value, "token_type": "bearer",
                             "scope": " ".join(access.scopes), "expires_in": int(self.tokens.access_ttl_s or 86400),
                             "api_base_url_for_customer": base})

    # --- calls -----------------------------------------------------------------------------
    @staticmethod
    def _when(value: Any, name: str) -> datetime | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or value.strip().lstrip("-").isdigit():
            raise GongError(400, f"{name}: invalid date-time format, expected ISO-8601 such as 2024-01-01T00:00:00Z")
        try:
            return parse_any(value)
        except (ValueError, TypeError):
            raise GongError(400, f"{name}: invalid date-time format, expected ISO-8601 such as "
                                 "2024-01-01T00:00:00Z") from None

    def _select(self, since: datetime | None, until: datetime | None, call_ids: list[str] | None = None,
                users: list[str] | None = None) -> list[int]:
        """Positions of calls with start in [since, until), filtered by ids and primary users."""
        lo = 0 if since is None else bisect_left(self.started, since)
        hi = len(self.started) if until is None else bisect_left(self.started, until)
        positions = range(lo, hi)
        if call_ids is not None:
            wanted = {str(i) for i in call_ids}
            positions = [i for i in positions if self.calls[i]["id"] in wanted]
        if users is not None:
            chosen = {str(u) for u in users}
            positions = [i for i in positions if self.calls[i]["primaryUserId"] in chosen]
        return list(positions)

    def _offset(self, cursor: Any, fingerprint: str) -> int:
        if cursor in (None, ""):
            return 0
        try:
            state = decode_cursor(str(cursor))
            offset = int(state["o"])
        except (ValueError, KeyError, TypeError):
            raise GongError(400, "cursor: invalid cursor") from None
        if state.get("f") != fingerprint:
            raise GongError(400, "cursor: the cursor does not belong to this query; keep the other inputs unchanged")
        return offset

    def _records(self, total: int, offset: int, size: int, fingerprint: str) -> dict[str, Any]:
        records: dict[str, Any] = {"totalRecords": total, "currentPageSize": size,
                                   "currentPageNumber": offset // PAGE_SIZE}
        if offset + PAGE_SIZE < total:
            records["cursor"] = encode_cursor({"o": offset + PAGE_SIZE, "f": fingerprint})
        return records

    async def list_calls(self, request: Request) -> Response:
        self._auth(request)
        q = request.query_params
        try:
            if not q.get("fromDateTime") or not q.get("toDateTime"):
                raise GongError(400, "fromDateTime and toDateTime are required")
            since, until = self._when(q.get("fromDateTime"), "fromDateTime"), self._when(q.get("toDateTime"),
                                                                                        "toDateTime")
            workspace = q.get("workspaceId")
            if workspace not in (None, "", WORKSPACE_ID):
                raise GongError(400, f"workspaceId: unknown workspace {workspace}")
            fingerprint = hashlib.blake2b(f"{since}|{until}".encode(), digest_size=6).hexdigest()
            positions = self._select(since, until)
            offset = self._offset(q.get("cursor"), fingerprint)
        except GongError as err:
            return self.envelope(err.status, err.message)
        if not positions:
            return self.envelope(404, NO_CALLS)
        calls = self.page(request, [self.calls[i] for i in positions], offset, PAGE_SIZE)
        return JSONResponse({"requestId": self.request_id(),
                             "records": self._records(len(positions), offset, len(calls), fingerprint),
                             "calls": calls})

    async def get_call(self, request: Request) -> Response:
        self._auth(request)
        i = self.index.get(request.path_params["call_id"])
        if i is None:
            return self.envelope(404, f"Call {request.path_params['call_id']} not found")
        return JSONResponse({"requestId": self.request_id(), "call": self.calls[i]})

    async def calls_extensive(self, request: Request) -> Response:
        """Cursor is read from the body only: a cursor in the query string is ignored (Gong's pitfall)."""
        self._auth(request)
        body = self.json_body(await request.body())
        if body is None:
            body = {}
        try:
            if not isinstance(body, dict):
                raise GongError(400, "Request body must be a JSON object")
            flt = body.get("filter") or {}
            if not isinstance(flt, dict):
                raise GongError(400, "filter must be an object")
            since, until = self._when(flt.get("fromDateTime"), "filter.fromDateTime"), self._when(
                flt.get("toDateTime"), "filter.toDateTime")
            call_ids, users = flt.get("callIds"), flt.get("primaryUserIds")
            for name, value in (("callIds", call_ids), ("primaryUserIds", users)):
                if value is not None and not isinstance(value, list):
                    raise GongError(400, f"filter.{name} must be an array of ids")
            selector = body.get("contentSelector") or {}
            if not isinstance(selector, dict):
                raise GongError(400, "contentSelector must be an object")
            fingerprint = hashlib.blake2b(repr((since, until, call_ids, users)).encode(), digest_size=6).hexdigest()
            positions = self._select(since, until, call_ids, users)
            offset = self._offset(body.get("cursor"), fingerprint)
        except GongError as err:
            return self.envelope(err.status, err.message)
        if not positions:
            return self.envelope(404, NO_CALLS)
        lo = max(offset - 1, 0)  # one record before the page, for the duplicate_record fault
        built = [self._extensive(i, selector) for i in positions[lo:offset + PAGE_SIZE]]
        calls = self.page(request, built, offset - lo, PAGE_SIZE)
        return JSONResponse({"requestId": self.request_id(),
                             "records": self._records(len(positions), offset, len(calls), fingerprint),
                             "calls": calls})

    def _extensive(self, i: int, selector: dict[str, Any]) -> dict[str, Any]:
        """One call in the extensive shape; content/interaction only once the analysis is ready."""
        meta, row = self.calls[i], self.call_rows[i]
        exposed = selector.get("exposedFields") or {}
        out: dict[str, Any] = {"metaData": meta}
        if selector.get("context") in ("Extended", "Basic"):
            out["context"] = self._context(row, extended=selector["context"] == "Extended")
        if exposed.get("parties"):
            out["parties"] = self._parties(row, meta)
        ready_at = row.get("analysis_ready_at")
        ready = ready_at is not None and not pd.isna(ready_at) and ready_at <= self.now
        if ready and isinstance(exposed.get("content"), dict) and any(exposed["content"].values()):
            out["content"] = self._content(row, exposed["content"])
        if ready and isinstance(exposed.get("interaction"), dict) and any(exposed["interaction"].values()):
            out["interaction"] = self._interaction(row, meta, exposed["interaction"])
        if isinstance(exposed.get("collaboration"), dict) and exposed["collaboration"].get("publicComments"):
            out["collaboration"] = {"publicComments": []}
        if exposed.get("media"):
            out["media"] = {"audioUrl": f"https://app.gong.io/media/{meta['id']}.mp3",
                            "videoUrl": f"https://app.gong.io/media/{meta['id']}.mp4"}
        return out

    def _render_lookups(self) -> None:
        """Dicts the extensive view needs (Salesforce ids for context, people and staff for parties)."""
        c = self.company
        pres = c["presence"]
        sf = pres[(pres["system"] == "salesforce") & ~pres["is_duplicate"].fillna(False).astype(bool)]
        self.sf_ids = dict(zip(zip(sf["entity"], sf["entity_id"], strict=True), sf["system_id"], strict=True))
        opps = c["opportunities"]
        self.opps = dict(zip(opps["opportunity_id"], zip(opps["system_id"], opps["name"], opps["stage"], strict=True),
                             strict=True))
        self.account_names = dict(zip(c["accounts"]["account_id"], c["accounts"]["name"], strict=True))
        cols = c["people"][["person_id", "first_name", "last_name", "email", "title", "phone"]]
        self.people = {r["person_id"]: r for r in cols.to_dict("records")}
        cols = c["employees"][["employee_id", "first_name", "last_name", "email", "title"]]
        self.employees = {r["employee_id"]: r for r in cols.to_dict("records")}

    def _context(self, row: dict[str, Any], extended: bool) -> list[dict[str, Any]]:
        objects = []
        account = self.sf_ids.get(("account", row.get("account_id")))
        if account:
            objects.append({"objectType": "Account", "objectId": account,
                            "fields": [{"name": "Name", "value": self.account_names.get(row.get("account_id"))}]
                            if extended else []})
        opp = self.opps.get(row.get("opportunity_id"))
        if opp is not None:
            sf_id, name, stage = opp
            objects.append({"objectType": "Opportunity", "objectId": sf_id,
                            "fields": [{"name": "Name", "value": name}, {"name": "StageName", "value": stage}]
                            if extended else []})
        return [{"system": "Salesforce", "objects": objects}] if objects else []

    def _speaker(self, call_id: str, n: int) -> str:
        return stable_number([f"{call_id}:{n}"], 10**15, 9 * 10**15, "gong-speaker")[0]

    def _parties(self, row: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
        parties = []
        owner = self.employees.get(row.get("owner_id"))
        if owner is not None:
            parties.append({"id": self._speaker(meta["id"], 100), "emailAddress": owner["email"],
                            "name": f"{owner['first_name']} {owner['last_name']}", "title": owner["title"],
                            "userId": meta["primaryUserId"], "speakerId": self._speaker(meta["id"], 0),
                            "context": [], "affiliation": "Internal", "phoneNumber": None,
                            "methods": ["Invitee"]})
        people = self.people
        for n, pid in enumerate(_list(row.get("participant_person_ids")), start=1):
            person = people.get(pid)
            if person is None:
                continue
            sf = self.sf_ids.get(("person", pid))
            parties.append({"id": self._speaker(meta["id"], 100 + n), "emailAddress": person["email"],
                            "name": f"{person['first_name']} {person['last_name']}", "title": person["title"],
                            "userId": None, "speakerId": self._speaker(meta["id"], n),
                            "context": [{"system": "Salesforce", "objects": [{"objectType": "Contact",
                                                                               "objectId": sf}]}] if sf else [],
                            "affiliation": "External",
                            "phoneNumber": person["phone"] if isinstance(person["phone"], str) else None,
                            "methods": ["Invitee", "Attendee"]})
        return parties

    def _content(self, row: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        topics = [str(t) for t in _list(row.get("topics"))]
        duration = int(_num(row.get("duration_s"), 0) or 0)
        share = duration // max(len(topics) + 1, 2)
        content: dict[str, Any] = {}
        if wanted.get("topics"):
            content["topics"] = [{"name": t, "duration": share} for t in topics]
        if wanted.get("trackers"):
            content["trackers"] = [{"id": stable_number([t], 10**12, 9 * 10**12, "gong-tracker")[0], "name": t,
                                    "count": 1 + len(t) % 4, "type": "KEYWORD", "occurrences": []} for t in topics]
        if wanted.get("brief"):
            content["brief"] = f"{row.get('title') or 'Call'}: discussed {', '.join(topics) or 'next steps'}."
        if wanted.get("outline"):
            content["outline"] = [{"section": t, "startTime": k * share, "duration": share, "items": []}
                                  for k, t in enumerate(topics)]
        if wanted.get("keyPoints"):
            content["keyPoints"] = [{"text": f"Customer raised {t}."} for t in topics]
        if wanted.get("callOutcome"):
            content["callOutcome"] = {"id": "1", "category": "Completed", "name": "Meeting held"}
        return content

    def _interaction(self, row: dict[str, Any], meta: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        duration = float(_num(row.get("duration_s"), 0) or 0)
        ratio = _num(row.get("talk_ratio"))
        out: dict[str, Any] = {}
        if wanted.get("speakers"):
            externals = max(len(_list(row.get("participant_person_ids"))), 1)
            own = duration * (ratio if ratio is not None else 0.5)
            out["speakers"] = [{"id": self._speaker(meta["id"], 0), "userId": meta["primaryUserId"],
                                "talkTime": round(own, 1)}]
            out["speakers"] += [{"id": self._speaker(meta["id"], n), "userId": None,
                                 "talkTime": round((duration - own) / externals, 1)}
                                for n in range(1, externals + 1)]
        if wanted.get("personInteractionStats"):
            stats = [("Talk Ratio", ratio), ("Longest Monologue", _num(row.get("longest_monologue_s"))),
                     ("Interactivity", _num(row.get("interactivity"))), ("Patience", _num(row.get("patience"))),
                     ("Question Rate", _num(row.get("questions_asked")))]
            out["interactionStats"] = [{"name": n, "value": v} for n, v in stats if v is not None]
        if wanted.get("questions"):
            asked = int(_num(row.get("questions_asked"), 0) or 0)
            out["questions"] = {"companyCount": asked, "nonCompanyCount": max(asked // 2, 0)}
        if wanted.get("video"):
            out["video"] = [{"name": "Presentation", "duration": round(duration * 0.2, 1)},
                            {"name": "Webcam", "duration": round(duration * 0.8, 1)}]
        return out

    # --- users -----------------------------------------------------------------------------
    async def list_users(self, request: Request) -> Response:
        self._auth(request)
        fingerprint = "users"
        try:
            offset = self._offset(request.query_params.get("cursor"), fingerprint)
        except GongError as err:
            return self.envelope(err.status, err.message)
        users = self.page(request, self.users, offset, PAGE_SIZE)
        return JSONResponse({"requestId": self.request_id(),
                             "records": self._records(len(self.users), offset, len(users), fingerprint),
                             "users": users})
