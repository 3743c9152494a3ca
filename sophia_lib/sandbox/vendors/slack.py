"""Slack Web API simulator: ``/api/<method>`` with Slack's HTTP-200 ``ok`` envelope.

Served methods (BI reads): ``auth.test``, ``users.list``, ``conversations.list``,
``conversations.history``, ``conversations.replies`` and ``oauth.v2.access`` (token rotation).
Arguments come as query parameters, form fields or a JSON body, as Slack accepts them all.

Wire behaviour reproduced:

* Auth: a non-expiring bot token (``xoxb-sandbox-demo``) or, with token rotation, 12-hour
  access tokens refreshed through ``oauth.v2.access`` (``grant_type=refresh_token``; the refresh
  token is single-use and rotates). A missing token answers ``not_authed``, an unknown one
  ``invalid_auth``, an expired rotating token ``token_expired``, all with HTTP 200.
* Paging: ``cursor`` + ``limit``; ``response_metadata.next_cursor`` is ``""`` on the last page.
  Cursors are base64 of ``user:<id>``, ``channel:<id>`` or ``next_ts:<microseconds>`` as Slack's
  look; an undecodable one answers ``invalid_cursor``.
* Incremental: ``conversations.history`` filters on ``ts`` with ``oldest``/``latest`` (exclusive
  unless ``inclusive=true``), newest first, with ``has_more``. Edited messages keep their ``ts`` and
  carry ``edited: {user, ts}``; thread replies move only the parent's ``latest_reply``.
* Deletes: Slack does not list deleted messages (no tombstone, no ``message_deleted`` event in
  history: that subtype only reaches the Events API). A connector notices a delete only by
  reconciling: re-reading a lookback window of ``ts`` and dropping the ``ts`` values that are gone.
  Deleted channels vanish from ``conversations.list`` and answer ``channel_not_found``.
* Throttle: HTTP 429 with ``Retry-After`` and ``{"ok":false,"error":"ratelimited"}``; a fault with
  ``variant="http200"`` gives the HTTP-200 ``ok:false`` form some methods use.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import InvalidGrant, TokenStore, bearer
from sophia_lib.sandbox.simulator.base import Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register

BOT_TOKEN = "xoxb-sandbox-demo"
CLIENT_ID = "sandbox-slack-client"
CLIENT_SECRET = "sandbox-slack-secret"  # noqa: S105 - demo credential of the simulator
REFRESH_TOKEN = "xoxe-1-sandbox-demo-refresh"  # noqa: S105
TEAM_ID = "T0SANDBOX1"
BOT_USER_ID = "U0SANDBOT1"
BOT_ID = "B0SANDBOT1"
APP_ID = "A0SANDAPP1"
CHANNEL_TYPES = ("public_channel", "private_channel", "mpim", "im")
HISTORY_MAX = 999


def ts_micros(ts: str) -> int:
    """Slack ``ts`` ("1700000000.000100") → integer microseconds (exact, unlike float)."""
    seconds, _, frac = ts.partition(".")
    return int(seconds) * 1_000_000 + int((frac + "000000")[:6])


def micros_ts(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _ts_param(value: str) -> int:
    """An ``oldest``/``latest`` argument ("1700000000", "1700000000.5") → microseconds; ValueError if bad."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(value) from None
    if not number.is_finite() or number < 0:
        raise ValueError(value)
    return int(number * 1_000_000)


def _epoch_s(series: pd.Series) -> np.ndarray:
    """Aware timestamps → int epoch seconds (NaT → 0)."""
    stamps = pd.to_datetime(series, utc=True)
    out = stamps.astype("int64").to_numpy() // 10**9
    return np.where(stamps.isna().to_numpy(), 0, out)


def _micros(series: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(series, utc=True)
    out = stamps.astype("int64").to_numpy() // 1000
    return np.where(stamps.isna().to_numpy(), 0, out)


def _text(value: Any) -> str:
    """A text cell as str ("" for NA: pandas' string dtype gives NaN, not None)."""
    return value if isinstance(value, str) else ""


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(cursor: str, kind: str) -> str:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(cursor) from None
    prefix, sep, value = raw.partition(":")
    if prefix != kind or not sep or not value:
        raise ValueError(cursor)
    return value


@dataclass
class ChannelMessages:
    """Top-level messages of one channel (ascending ``ts``) and its threads."""

    asc: list[dict[str, Any]] = field(default_factory=list)
    asc_us: list[int] = field(default_factory=list)
    desc: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # thread_ts → [parent, replies…]
    by_ts: dict[str, dict[str, Any]] = field(default_factory=dict)


@register
class Slack(SimulatedVendor):
    """Slack Web API (``https://slack.com/api``) over the company's channels and messages."""

    name = "slack"

    # --- credentials -------------------------------------------------------------------
    def setup_credentials(self) -> None:
        # With token rotation on, access tokens live 12 h and the refresh token is single-use.
        self.tokens = TokenStore("xoxe.xoxb-1", access_ttl_s=43_200.0, rotate_refresh=True)
        self.tokens.add_static(BOT_TOKEN, CLIENT_ID, ("channels:read", "groups:read", "channels:history",
                                                       "groups:history", "users:read", "users:read.email"))
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID)

    def credentials(self) -> dict[str, str]:
        return {"bot_token": BOT_TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN}

    # --- rendering ---------------------------------------------------------------------
    def render(self) -> None:
        company = self.company
        employees = company["employees"]
        slack_people = company.presence_of("employee", "slack")
        emp = employees.set_index("employee_id")
        domain = str(employees["email"].dropna().iloc[0]).split("@")[-1] if len(employees) else "example.com"
        self.team_name = domain.split(".")[0].capitalize()
        self.team_domain = domain.split(".")[0].lower()

        # users: one per Slack appearance of an employee (duplicates included), plus our bot
        joined = slack_people.join(emp, on="entity_id", suffixes=("", "_emp"))
        self.user_of: dict[str, str] = (
            joined[~joined["is_duplicate"].fillna(False).astype(bool)]
            .drop_duplicates("entity_id").set_index("entity_id")["system_id"].to_dict()
        )
        self.users = self._render_users(joined)
        self.owner_id = next((u["id"] for u in self.users if u.get("is_primary_owner")), BOT_USER_ID)

        channels = company["channels"]
        live_channels = channels[channels["deleted_at"].isna()].copy()
        live_channels["created_s"] = _epoch_s(live_channels["created_at"])
        self.channels: list[dict[str, Any]] = [self._channel(row) for row in live_channels.to_dict("records")]
        self.channels.sort(key=lambda c: (c["created"], c["id"]))
        self.channel_ids = {c["id"] for c in self.channels}
        channel_sys = channels.set_index("channel_id")["system_id"].to_dict()
        self.messages = self._render_messages(company["messages"], channel_sys)

    def _render_users(self, joined: pd.DataFrame) -> list[dict[str, Any]]:
        frame = joined.copy()
        first = frame["first_name"].fillna("").astype(str)
        last = frame["last_name"].fillna("").astype(str)
        full = (first + " " + last).str.strip()
        frame["real_name"] = frame["name"].where(frame["name"].notna() & (frame["name"] != ""), full).astype(str)
        frame["handle"] = frame["email"].fillna(frame["email_emp"]).astype(str).str.strip().str.lower()
        frame["handle"] = frame["handle"].str.split("@").str[0]
        frame["mail"] = frame["email"].where(frame["email"].notna(), frame["email_emp"])
        frame["is_deleted"] = (frame["deleted_at"].notna() | frame["deleted_at_emp"].notna()
                               | ~frame["is_active"].fillna(True).astype(bool))
        frame["updated_s"] = _epoch_s(frame[["updated_at", "updated_at_emp"]].max(axis=1))
        frame["tz"] = frame["region"].map({"NA": "America/New_York", "EMEA": "Europe/London",
                                           "APAC": "Asia/Singapore"}).fillna("America/New_York")
        frame["tz_offset"] = frame["region"].map({"NA": -18000, "EMEA": 0, "APAC": 28800}).fillna(-18000)
        frame = frame.sort_values(["hired_at", "system_id"], kind="stable")
        users: list[dict[str, Any]] = []
        for row in frame[["system_id", "handle", "real_name", "mail", "title", "is_deleted", "updated_s",
                          "first_name", "last_name", "tz", "tz_offset"]].to_dict("records"):
            uid = row["system_id"]
            real = row["real_name"]
            users.append({
                "id": uid, "team_id": TEAM_ID, "name": row["handle"], "deleted": bool(row["is_deleted"]),
                "color": "9f69e7", "real_name": real, "tz": row["tz"], "tz_label": row["tz"],
                "tz_offset": int(row["tz_offset"]),
                "profile": {
                    "title": _text(row["title"]), "phone": "", "skype": "", "real_name": real,
                    "real_name_normalized": real, "display_name": row["handle"],
                    "display_name_normalized": row["handle"], "fields": None, "status_text": "",
                    "status_emoji": "", "status_expiration": 0, "avatar_hash": "g" + uid[1:12].lower(),
                    "email": None if pd.isna(row["mail"]) else str(row["mail"]),
                    "first_name": _text(row["first_name"]), "last_name": _text(row["last_name"]),
                    "team": TEAM_ID,
                },
                "is_admin": False, "is_owner": False, "is_primary_owner": False, "is_restricted": False,
                "is_ultra_restricted": False, "is_bot": False, "is_app_user": False,
                "updated": int(row["updated_s"]),
            })
        if users:  # the earliest-hired person owns the workspace
            users[0].update(is_admin=True, is_owner=True, is_primary_owner=True)
        users.append({
            "id": BOT_USER_ID, "team_id": TEAM_ID, "name": "sophia", "deleted": False, "color": "3c989f",
            "real_name": "Sophia", "tz": "America/Los_Angeles", "tz_label": "Pacific Standard Time",
            "tz_offset": -28800,
            "profile": {"title": "", "phone": "", "skype": "", "real_name": "Sophia",
                        "real_name_normalized": "Sophia", "display_name": "", "display_name_normalized": "",
                        "fields": None, "status_text": "", "status_emoji": "", "status_expiration": 0,
                        "avatar_hash": "sophiabot01", "bot_id": BOT_ID, "always_active": True,
                        "first_name": "Sophia", "last_name": "", "team": TEAM_ID},
            "is_admin": False, "is_owner": False, "is_primary_owner": False, "is_restricted": False,
            "is_ultra_restricted": False, "is_bot": True, "is_app_user": False, "updated": 1_600_000_000,
        })
        users.sort(key=lambda u: u["id"])
        self.user_ids = [u["id"] for u in users]
        return users

    def _channel(self, row: dict[str, Any]) -> dict[str, Any]:
        name = str(row["name"]).lstrip("#").lower()
        private = bool(row["is_private"])
        topic = "" if pd.isna(row["topic"]) else str(row["topic"])
        return {
            "id": row["system_id"], "name": name, "is_channel": not private, "is_group": private,
            "is_im": False, "is_mpim": False, "is_private": private, "created": int(row["created_s"]),
            "is_archived": bool(row["is_archived"]), "is_general": name == "general", "unlinked": 0,
            "name_normalized": name, "is_shared": False, "is_org_shared": False, "is_pending_ext_shared": False,
            "pending_shared": [], "parent_conversation": None, "creator": self.owner_id, "is_ext_shared": False,
            "shared_team_ids": [TEAM_ID], "pending_connected_team_ids": [], "is_member": True,
            "topic": {"value": topic, "creator": self.owner_id if topic else "",
                      "last_set": int(row["created_s"]) if topic else 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [], "num_members": len(self.users),
        }

    def _render_messages(self, messages: pd.DataFrame, channel_sys: dict[str, str]) -> dict[str, ChannelMessages]:
        live = messages[messages["deleted_at"].isna()]
        frame = pd.DataFrame({
            "channel": live["channel_id"].map(channel_sys),
            "user": live["employee_id"].map(self.user_of),
            "ts": live["ts"].astype(str),
            "thread_ts": np.array([t if isinstance(t, str) else None for t in live["thread_ts"]], dtype=object),
            "text": live["text"].fillna("").astype(str),
        })
        frame = frame[frame["channel"].isin(self.channel_ids)]
        live = live.loc[frame.index]
        frame["us"] = [ts_micros(t) for t in frame["ts"]]
        frame["is_reply"] = frame["thread_ts"].notna() & (frame["thread_ts"] != frame["ts"])
        replies = frame[frame["is_reply"]]
        stats = replies.groupby(["channel", "thread_ts"]).agg(reply_count=("ts", "size"), latest_us=("us", "max"))
        repliers = replies[replies["user"].notna()].drop_duplicates(["channel", "thread_ts", "user"])
        reply_users: dict[tuple[str, str], list[str]] = {}
        for key_c, key_t, user in zip(repliers["channel"].tolist(), repliers["thread_ts"].tolist(),
                                      repliers["user"].tolist(), strict=True):
            reply_users.setdefault((key_c, key_t), []).append(user)
        frame = frame.join(stats, on=["channel", "ts"])
        # An edit moves updated_at but not ts. A new reply also touches its parent's updated_at (the contract
        # has one updated_at), so a parent counts as edited only when it changed after its latest reply.
        created_us = np.maximum(_micros(live["created_at"]), frame["us"].to_numpy())
        updated_us = _micros(live["updated_at"])
        latest_us = frame["latest_us"].fillna(0).to_numpy(dtype="int64")
        edited = (updated_us > created_us + 1_000_000) & (updated_us > latest_us + 1_000_000)
        frame["edited_ts"] = [micros_ts(int(u)) if e else "" for u, e in zip(updated_us, edited, strict=True)]
        frame["latest_reply"] = [micros_ts(int(u)) if u else "" for u in latest_us]
        frame = frame.sort_values(["channel", "us"], kind="stable")
        tops = frame[~frame["is_reply"]]
        parent_user = dict(zip(zip(tops["channel"].tolist(), tops["ts"].tolist(), strict=True),
                               tops["user"].tolist(), strict=True))

        out: dict[str, ChannelMessages] = {cid: ChannelMessages() for cid in self.channel_ids}
        columns = ["channel", "user", "ts", "thread_ts", "text", "edited_ts", "is_reply", "reply_count",
                   "latest_reply", "us"]
        # plain lists, not DataFrame.to_dict: iterating arrow-backed strings row by row is the slow part
        for values in zip(*(frame[c].to_numpy(dtype=object).tolist() for c in columns), strict=True):
            rec = dict(zip(columns, values, strict=True))
            msg: dict[str, Any] = {"type": "message", "text": rec["text"], "ts": rec["ts"], "team": TEAM_ID}
            if isinstance(rec["user"], str):
                msg["user"] = rec["user"]
            else:  # author not (or no longer) in Slack: Slack shows such posts as from a bot integration
                msg["bot_id"] = BOT_ID
                msg["username"] = "former member"
            if rec["edited_ts"]:
                msg["edited"] = {"user": msg.get("user", BOT_USER_ID), "ts": rec["edited_ts"]}
            box = out[rec["channel"]]
            if rec["is_reply"]:
                msg["thread_ts"] = rec["thread_ts"]
                parent = parent_user.get((rec["channel"], rec["thread_ts"]))
                if isinstance(parent, str):
                    msg["parent_user_id"] = parent
                box.threads.setdefault(rec["thread_ts"], []).append(msg)
                continue
            count = rec["reply_count"]
            if count == count and count:  # not NaN, > 0
                users = reply_users.get((rec["channel"], rec["ts"]), [])
                msg.update(thread_ts=rec["ts"], reply_count=int(count), reply_users_count=len(users),
                           latest_reply=rec["latest_reply"], reply_users=users, is_locked=False,
                           subscribed=False)
            box.asc.append(msg)
            box.asc_us.append(rec["us"])
            box.by_ts[rec["ts"]] = msg
        for box in out.values():
            box.desc = box.asc[::-1]
            for thread_ts, replies_of in list(box.threads.items()):
                parent = box.by_ts.get(thread_ts)
                box.threads[thread_ts] = ([parent] if parent is not None else []) + replies_of
        return out

    # --- vendor answers ----------------------------------------------------------------
    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [("/api/{method}", self.api, ["GET", "POST"])]

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        retry = str(fault.params.get("retry_after", 1))
        if fault.params.get("variant") == "http200":
            return JSONResponse({"ok": False, "error": "ratelimited"}, headers={"Retry-After": retry})
        return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": retry})

    def error_response(self, request: Request, status: int, message: str) -> Response:
        code = {500: "fatal_error", 503: "service_unavailable"}.get(status, "internal_error")
        return JSONResponse({"ok": False, "error": code, "warning": message}, status_code=status)

    def expired_token_response(self, request: Request) -> Response:
        return self._fail("token_expired")

    @staticmethod
    def _fail(error: str, status: int = 200, **extra: Any) -> JSONResponse:
        return JSONResponse({"ok": False, "error": error, **extra}, status_code=status)

    async def _args(self, request: Request) -> dict[str, str]:
        args = dict(request.query_params)
        if request.method == "POST":
            body = await request.body()
            ctype = request.headers.get("content-type", "")
            if body and "json" in ctype:
                try:
                    parsed = json.loads(body)
                except json.JSONDecodeError:
                    raise Reply(self._fail("invalid_json")) from None
                if not isinstance(parsed, dict):
                    raise Reply(self._fail("json_not_object"))
                args.update({k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list)
                             else str(v).lower() if isinstance(v, bool) else str(v) for k, v in parsed.items()})
            elif body:
                args.update(dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True)))
        return args

    def _auth(self, request: Request, args: dict[str, str]) -> str:
        token = bearer(request.headers.get("authorization")) or args.get("token")
        if not token:
            raise Reply(self._fail("not_authed"))
        if self.tokens.check(token) is None:
            # rotating tokens (xoxe.xox…) that we issued and that lapsed say so; anything else is unknown
            raise Reply(self._fail("token_expired" if token.startswith("xoxe.") else "invalid_auth"))
        return token

    @staticmethod
    def _limit(args: dict[str, str], default: int, maximum: int) -> int:
        raw = args.get("limit")
        if raw in (None, ""):
            return default
        try:
            limit = int(raw)
        except ValueError:
            raise Reply(Slack._fail("invalid_arguments", response_metadata={
                "messages": ["[ERROR] must be an integer [json-pointer:/limit]"]})) from None
        if limit < 0:
            raise Reply(Slack._fail("invalid_limit"))
        return default if limit == 0 else min(limit, maximum)

    @staticmethod
    def _bool(args: dict[str, str], name: str) -> bool:
        return args.get(name, "").strip().lower() in ("1", "true", "yes")

    async def api(self, request: Request) -> Response:
        method = request.path_params["method"]
        handler = {
            "auth.test": self.auth_test, "users.list": self.users_list,
            "conversations.list": self.conversations_list, "conversations.history": self.conversations_history,
            "conversations.replies": self.conversations_replies, "oauth.v2.access": self.oauth_access,
        }.get(method)
        if handler is None:
            return self._fail("unknown_method", 404, req_method=method)
        args = await self._args(request)
        if method != "oauth.v2.access":
            self._auth(request, args)
        return handler(request, args)

    def oauth_access(self, request: Request, args: dict[str, str]) -> Response:
        client_id, secret = args.get("client_id"), args.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return self._fail("invalid_client_id")
        if client_id != CLIENT_ID:
            return self._fail("invalid_client_id")
        if secret != CLIENT_SECRET:
            return self._fail("bad_client_secret")
        if args.get("grant_type") == "refresh_token":
            try:
                access, refresh = self.tokens.refresh(args.get("refresh_token", ""), CLIENT_ID)
            except InvalidGrant:
                return self._fail("invalid_refresh_token")
        elif args.get("code"):
            access, refresh = self.tokens.issue(CLIENT_ID)
            assert refresh is not None
        else:
            return self._fail("invalid_grant_type" if args.get("grant_type") else "invalid_code")
        return JSONResponse({
            "ok": True, "app_id": APP_ID, "authed_user": {"id": self.owner_id}, "scope": ",".join(access.scopes)
            or "channels:read,groups:read,channels:history,groups:history,users:read",
            "token_type": "bot", "access_token": access.value, "bot_user_id": BOT_USER_ID,
            "refresh_token": refresh.value, "expires_in": 43_200,
            "team": {"id": TEAM_ID, "name": self.team_name}, "enterprise": None, "is_enterprise_install": False,
        })

    def auth_test(self, request: Request, args: dict[str, str]) -> Response:
        return JSONResponse({"ok": True, "url": f"https://{self.team_domain}.slack.com/", "team": self.team_name,
                             "user": "sophia", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                             "is_enterprise_install": False})

    def users_list(self, request: Request, args: dict[str, str]) -> Response:
        items = self.users  # sorted by id, so a "user:<id>" cursor is a bisect
        limit = self._limit(args, default=len(items) or 1, maximum=1000)
        start = 0
        if args.get("cursor"):
            try:
                start = bisect_left(self.user_ids, _uncursor(args["cursor"], "user"))
            except ValueError:
                return self._fail("invalid_cursor")
        page = self.page(request, items, start, limit)
        nxt = start + limit
        return JSONResponse({
            "ok": True, "members": page, "cache_ts": int(self.company.now.timestamp()),
            "response_metadata": {"next_cursor": _cursor("user", items[nxt]["id"]) if nxt < len(items) else ""},
        })

    def conversations_list(self, request: Request, args: dict[str, str]) -> Response:
        types = [t.strip() for t in args.get("types", "public_channel").split(",") if t.strip()]
        bad = [t for t in types if t not in CHANNEL_TYPES]
        if bad or not types:
            return self._fail("invalid_types")
        exclude_archived = self._bool(args, "exclude_archived")
        items = [c for c in self.channels
                 if (("private_channel" in types) if c["is_private"] else ("public_channel" in types))
                 and not (exclude_archived and c["is_archived"])]
        limit = self._limit(args, default=100, maximum=1000)
        start = 0
        if args.get("cursor"):
            try:
                wanted = _uncursor(args["cursor"], "channel")
            except ValueError:
                return self._fail("invalid_cursor")
            start = next((i for i, c in enumerate(items) if c["id"] == wanted), len(items))
        page = self.page(request, items, start, limit)
        nxt = start + limit
        return JSONResponse({
            "ok": True, "channels": page,
            "response_metadata": {"next_cursor": _cursor("channel", items[nxt]["id"]) if nxt < len(items) else ""},
        })

    def _box(self, args: dict[str, str]) -> ChannelMessages:
        channel = args.get("channel", "")
        box = self.messages.get(channel)
        if box is None:
            raise Reply(self._fail("channel_not_found"))
        return box

    def _bounds(self, args: dict[str, str]) -> tuple[int | None, int | None]:
        try:
            oldest = _ts_param(args["oldest"]) if args.get("oldest") else None
        except ValueError:
            raise Reply(self._fail("invalid_ts_oldest")) from None
        try:
            latest = _ts_param(args["latest"]) if args.get("latest") else None
        except ValueError:
            raise Reply(self._fail("invalid_ts_latest")) from None
        return oldest, latest

    def conversations_history(self, request: Request, args: dict[str, str]) -> Response:
        box = self._box(args)
        oldest, latest = self._bounds(args)
        inclusive = self._bool(args, "inclusive")
        limit = self._limit(args, default=100, maximum=HISTORY_MAX)
        us = box.asc_us
        lo = 0 if oldest is None else (bisect_left if inclusive else bisect_right)(us, oldest)
        hi = len(us) if latest is None else (bisect_right if inclusive else bisect_left)(us, latest)
        if args.get("cursor"):
            try:
                at = int(_uncursor(args["cursor"], "next_ts"))
            except ValueError:
                return self._fail("invalid_cursor")
            hi = min(hi, bisect_right(us, at))
        hi = max(hi, lo)
        take = min(limit, hi - lo)
        start = len(us) - hi  # newest first: index into box.desc
        page = self.page(request, box.desc, start, take)
        more = hi - take > lo
        return JSONResponse({
            "ok": True, "messages": page, "has_more": more, "pin_count": 0,
            "channel_actions_ts": None, "channel_actions_count": 0,
            "response_metadata": {"next_cursor": _cursor("next_ts", str(us[hi - take - 1])) if more else ""},
        })

    def conversations_replies(self, request: Request, args: dict[str, str]) -> Response:
        box = self._box(args)
        ts = args.get("ts", "")
        if not ts:
            return self._fail("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required "
                                                                                   "field: ts"]})
        thread = box.threads.get(ts)
        if thread is None:
            single = box.by_ts.get(ts)
            if single is None:
                return self._fail("thread_not_found")
            thread = [single]
        oldest, latest = self._bounds(args)
        inclusive = self._bool(args, "inclusive")
        limit = self._limit(args, default=1000, maximum=1000)
        us = [ts_micros(m["ts"]) for m in thread]
        lo = 0 if oldest is None else (bisect_left if inclusive else bisect_right)(us, oldest)
        hi = len(us) if latest is None else (bisect_right if inclusive else bisect_left)(us, latest)
        if args.get("cursor"):
            try:
                lo = max(lo, bisect_left(us, int(_uncursor(args["cursor"], "next_ts"))))
            except ValueError:
                return self._fail("invalid_cursor")
        hi = max(hi, lo)
        take = min(limit, hi - lo)
        page = self.page(request, thread, lo, take)
        more = lo + take < hi
        return JSONResponse({
            "ok": True, "messages": page, "has_more": more,
            "response_metadata": {"next_cursor": _cursor("next_ts", str(us[lo + take])) if more else ""},
        })
