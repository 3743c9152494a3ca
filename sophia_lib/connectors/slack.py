"""Slack (Web API): users, channels and messages (with thread replies).

Wire (VENDOR-APIS.md §6): ``https://slack.com/api/<method>``, ``Authorization: Bearer xoxb-…`` (a bot token
of an *internal* app: since 2025 non-Marketplace distributed apps get 1 request/minute on history).
Lists page with ``cursor`` + ``limit``; ``response_metadata.next_cursor`` is ``""`` on the last page
(short or empty pages do not mean the end).

* users (``users.list``) and channels (``conversations.list``, public and private, **archived included**)
  are read in full each sync and **replaced**; deactivated users stay listed with ``deleted`` true.
* messages: ``conversations.history`` per channel with ``oldest`` = cursor − lookback, then
  ``conversations.replies`` for every message with ``reply_count`` (a thread's replies are fetched
  through its parent, ``reply_workers`` threads at a time, default 4, while history paging goes on).
  The cursor is the message time ``posted_at`` (from ``ts``, exact to the microsecond; ``ts`` itself is
  kept as text and is the key with ``channel_id``).
* Edits keep ``ts`` and new replies only move the parent's ``latest_reply``, so each sync re-reads a
  **lookback window** (``lookback_days``, default 7) of every channel: edits, reactions and replies to
  threads started inside the window land; the merge on (channel_id, ts) removes the overlap.
* Deletes: Slack lists no deleted message (no tombstone; ``message_deleted`` only reaches the Events
  API). Reconciliation choice: every ``reconcile_every_hours`` (default 168, wall clock, remembered in
  the resource's dlt state) one sync re-reads every channel's whole history and **replaces** the
  messages table, so messages deleted (or edited, or replied to) outside the lookback window are
  corrected then. Between reconciliations a message deleted at Slack can remain in the raw table.
* Errors come as HTTP 200 ``{"ok": false, "error": …}``: ``ratelimited`` is a throttle (``Retry-After``),
  ``invalid_auth``/``not_authed``/``token_expired``/``token_revoked``/``account_inactive`` are credential
  failures, ``channel_not_found`` (a channel deleted during the sync) skips that channel, anything else
  stops the sync with Slack's code. HTTP 429 + ``Retry-After`` is the other throttle form.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dlt
import requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth
from sophia_lib.connectors._http import Signal, ThrottlePolicy, Verdict, body_json, retry_after_seconds
from sophia_lib.connectors._streams import Reconciliation, jsonpath, new_fields, snapshot_hints, unique
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, incremental

PAGE_SIZE = 999  # conversations.history's documented maximum (the other list methods take up to 1000)
REPLY_WORKERS = 4  # threads whose replies are fetched at the same time
REPLY_BACKLOG = 64  # threads fetched ahead of the history pages (bounds memory)
LOOKBACK_DAYS = 7.0
RECONCILE_EVERY_HOURS = 168.0
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_expired", "token_revoked", "account_inactive",
                         "no_permission", "org_login_required", "ekm_access_denied"})
SKIPPED = frozenset({"channel_not_found", "thread_not_found", "not_in_channel"})

USERS = Stream(
    "users", ("id",), required=("name",),
    columns={"id": "text", "team_id": "text", "name": "text", "real_name": "text", "display_name": "text",
             "email": "text", "title": "text", "first_name": "text", "last_name": "text", "deleted": "bool",
             "is_admin": "bool", "is_owner": "bool", "is_bot": "bool", "is_restricted": "bool", "tz": "text",
             "updated": "timestamp"},
    description="Workspace members (deactivated ones with deleted = true) and bots")
CHANNELS = Stream(
    "channels", ("id",), required=("name",),
    columns={"id": "text", "name": "text", "is_private": "bool", "is_archived": "bool", "is_general": "bool",
             "created": "timestamp", "creator": "text", "topic": "text", "purpose": "text",
             "num_members": "bigint"},
    description="Public and private channels the bot is in, archived ones included")
MESSAGES = Stream(
    "messages", ("channel_id", "ts"), cursor="posted_at", required=("channel_id",),
    columns={"channel_id": "text", "ts": "text", "posted_at": "timestamp", "thread_ts": "text",
             "is_reply": "bool", "user_id": "text", "bot_id": "text", "username": "text", "subtype": "text",
             "text": "text", "reply_count": "bigint", "reply_users_count": "bigint", "latest_reply": "timestamp",
             "parent_user_id": "text", "edited_at": "timestamp", "edited_by": "text", "reactions": "json"},
    description="Channel messages and thread replies (is_reply), keyed by channel and ts")

_READ = {
    "users": frozenset({"id", "team_id", "name", "real_name", "profile", "deleted", "is_admin", "is_owner",
                        "is_primary_owner", "is_bot", "is_restricted", "is_ultra_restricted", "is_app_user", "tz",
                        "tz_label", "tz_offset", "updated", "color"}),
    "channels": frozenset({"id", "name", "name_normalized", "is_private", "is_archived", "is_general", "created",
                           "creator", "topic", "purpose", "num_members", "is_channel", "is_group", "is_im",
                           "is_mpim", "unlinked", "is_shared", "is_org_shared", "is_pending_ext_shared",
                           "pending_shared", "parent_conversation", "is_ext_shared", "shared_team_ids",
                           "pending_connected_team_ids", "is_member", "previous_names", "context_team_id",
                           "updated"}),
    "messages": frozenset({"type", "ts", "thread_ts", "user", "bot_id", "username", "subtype", "text",
                           "reply_count", "reply_users_count", "latest_reply", "reply_users", "parent_user_id",
                           "edited", "reactions", "team", "is_locked", "subscribed", "blocks", "attachments",
                           "files", "client_msg_id", "bot_profile", "app_id"}),
}


class SlackPolicy(ThrottlePolicy):
    """Slack answers most errors with HTTP 200 and ``ok: false``; 429 + Retry-After is the base class's."""

    def classify(self, response: requests.Response) -> Verdict:
        if response.status_code == 200:
            data = body_json(response)
            if isinstance(data, dict) and data.get("ok") is False:
                error = str(data.get("error"))
                if error == "ratelimited":
                    return Verdict(Signal.THROTTLE, self.message(response), retry_after_seconds(response) or 1.0)
                if error in AUTH_ERRORS:
                    return Verdict(Signal.AUTH_EXPIRED, self.message(response))
                if error in SKIPPED:
                    return Verdict(Signal.OK)  # the reader sees ok: false and skips that channel or thread
                return Verdict(Signal.FATAL, self.message(response))
        return super().classify(response)

    def message(self, response: requests.Response) -> str:
        data = body_json(response)
        if isinstance(data, dict) and data.get("error"):
            detail = [f"Slack error {data['error']}"]
            if data.get("needed"):
                detail.append(f"needed scope {data['needed']} (token has {data.get('provided')})")
            messages = (data.get("response_metadata") or {}).get("messages")
            detail.extend(str(m) for m in messages or [])
            if data.get("warning"):
                detail.append(str(data["warning"]))
            return "; ".join(detail)
        return super().message(response)


def ts_time(ts: Any) -> datetime | None:
    """Slack ``ts`` ("1705314153.000200") → an aware datetime, exact to the microsecond."""
    if not ts:
        return None
    micros = int(Decimal(str(ts)) * 1_000_000)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def flatten_user(u: dict[str, Any]) -> dict[str, Any]:
    profile = u.get("profile") or {}
    return {"id": u.get("id"), "team_id": u.get("team_id"), "name": u.get("name"), "real_name": u.get("real_name"),
            "display_name": profile.get("display_name"), "email": profile.get("email"), "title": profile.get("title"),
            "first_name": profile.get("first_name"), "last_name": profile.get("last_name"),
            "deleted": u.get("deleted"), "is_admin": u.get("is_admin"), "is_owner": u.get("is_owner"),
            "is_bot": u.get("is_bot"), "is_restricted": u.get("is_restricted"), "tz": u.get("tz"),
            "updated": u.get("updated"), **new_fields(u, _READ["users"])}


def flatten_channel(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": c.get("id"), "name": c.get("name"), "is_private": c.get("is_private"),
            "is_archived": c.get("is_archived"), "is_general": c.get("is_general"), "created": c.get("created"),
            "creator": c.get("creator"), "topic": (c.get("topic") or {}).get("value"),
            "purpose": (c.get("purpose") or {}).get("value"), "num_members": c.get("num_members"),
            **new_fields(c, _READ["channels"])}


def flatten_message(m: dict[str, Any], channel: str) -> dict[str, Any]:
    ts, thread_ts = m.get("ts"), m.get("thread_ts")
    edited = m.get("edited") or {}
    return {"channel_id": channel, "ts": ts, "posted_at": ts_time(ts), "thread_ts": thread_ts,
            "is_reply": bool(thread_ts) and thread_ts != ts, "user_id": m.get("user"), "bot_id": m.get("bot_id"),
            "username": m.get("username"), "subtype": m.get("subtype"), "text": m.get("text"),
            "reply_count": m.get("reply_count"), "reply_users_count": m.get("reply_users_count"),
            "latest_reply": ts_time(m.get("latest_reply")), "parent_user_id": m.get("parent_user_id"),
            "edited_at": ts_time(edited.get("ts")), "edited_by": edited.get("user"), "reactions": m.get("reactions"),
            **new_fields(m, _READ["messages"])}


def source(ctx: SourceContext) -> Any:
    """The dlt source of Slack users, channels and messages (see the module docstring)."""
    session = ctx.session(auth=HeaderAuth.bearer(ctx.secret("bot_token")), policy=SlackPolicy(),
                          rate_per_s=ctx.options.get("rate_per_s"))
    client = RESTClient(base_url=ctx.url("api"), session=session)
    limit = int(ctx.options.get("page_size") or PAGE_SIZE)
    lookback_s = float(ctx.options.get("lookback_days", LOOKBACK_DAYS)) * 86_400
    reconcile_s = float(ctx.options.get("reconcile_every_hours", RECONCILE_EVERY_HOURS)) * 3600
    reply_workers = max(1, int(ctx.options.get("reply_workers") or REPLY_WORKERS))

    def pages(method: str, key: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a Slack list method (cursor + limit, until next_cursor is empty)."""
        paginator = JSONResponseCursorPaginator(cursor_path=jsonpath("response_metadata.next_cursor"),
                                                cursor_param="cursor")
        for page in client.paginate(f"/{method}", params={**params, "limit": limit}, paginator=paginator,
                                    data_selector=jsonpath(key), hooks={"response": []}):
            yield list(page)

    wanted = ctx.options.get("channels") or []
    wanted = {c.strip().lstrip("#") for c in (wanted.split(",") if isinstance(wanted, str) else wanted) if c.strip()}

    def channel_list() -> Iterator[list[dict[str, Any]]]:
        """Public and private channels, archived included; only ``options["channels"]`` (names or ids) if set."""
        for page in pages("conversations.list", "channels", types="public_channel,private_channel",
                          exclude_archived="false"):
            yield [c for c in page if not wanted or c.get("id") in wanted or c.get("name") in wanted]

    @dlt.resource(**snapshot_hints(USERS))
    def users() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for page in pages("users.list", "members"):
            yield from ctx.emit(USERS, unique([flatten_user(u) for u in page], USERS.primary_key, seen))

    @dlt.resource(**snapshot_hints(CHANNELS))
    def channels() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for page in channel_list():
            yield from ctx.emit(CHANNELS, unique([flatten_channel(c) for c in page], CHANNELS.primary_key, seen))

    def thread(channel: str, ts: str) -> Iterator[list[dict[str, Any]]]:
        for page in pages("conversations.replies", "messages", channel=channel, ts=ts):
            yield [m for m in page if m.get("ts") != ts]  # the parent comes first on every thread

    @dlt.resource(**MESSAGES.hints())
    def messages(cursor: Any = incremental(MESSAGES, ctx.start_date, lag=lookback_s)) -> Iterator[Any]:
        rec = Reconciliation(cursor, MESSAGES, reconcile_s, ctx.full_refresh)
        for batch in _message_pages(ctx.start_date if rec.due else cursor.start_value):
            yield from rec.tables(ctx.emit(MESSAGES, rec.rows(batch)))
        rec.done()

    def replies_of(channel: str, ts: str) -> list[dict[str, Any]]:
        return [flatten_message(m, channel) for page in thread(channel, ts) for m in page]

    def _message_pages(oldest: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """History pages, then the replies of their threads, fetched by a few workers while paging goes on.

        Thread pages come back in the order their parents were listed; the merge on (channel_id, ts) makes
        the order of batches irrelevant anyway."""
        bound = {"oldest": f"{oldest.timestamp():.6f}"} if oldest is not None else {}
        pending: deque[Future[list[dict[str, Any]]]] = deque()
        replies: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=reply_workers, thread_name_prefix="slack-replies") as pool:
            try:
                for channel_page in channel_list():
                    for channel in channel_page:
                        cid = channel["id"]
                        for page in pages("conversations.history", "messages", channel=cid, **bound):
                            yield [flatten_message(m, cid) for m in page]
                            pending.extend(pool.submit(replies_of, cid, parent["ts"])
                                           for parent in page if parent.get("reply_count"))
                            while pending and (pending[0].done() or len(pending) > REPLY_BACKLOG):
                                replies.extend(pending.popleft().result())
                            if len(replies) >= limit:  # threads are small: load their replies a page at a time
                                yield replies
                                replies = []
                while pending:
                    replies.extend(pending.popleft().result())
                if replies:
                    yield replies
            finally:
                for future in pending:
                    future.cancel()

    @dlt.source(name="slack", max_table_nesting=0)
    def slack() -> list[Any]:
        return [users, channels, messages]

    return slack()


register(Connector(
    name="slack", title="Slack", default_base_url="https://slack.com", credentials=("bot_token",),
    streams=(USERS, CHANNELS, MESSAGES), source=source,
    options={"page_size": PAGE_SIZE, "lookback_days": LOOKBACK_DAYS, "channels": [],
             "reconcile_every_hours": RECONCILE_EVERY_HOURS, "rate_per_s": None, "reply_workers": REPLY_WORKERS},
    docs="A bot token (xoxb-…) of an internal Slack app with channels:read, groups:read, channels:history, "
         "groups:history and users:read (users:read.email for emails), invited to the channels to sync (all, or "
         "those listed in options.channels). Each "
         "sync re-reads lookback_days of history (edits, replies); every reconcile_every_hours one sync "
         "re-reads everything and replaces the messages table, removing messages deleted at Slack.",
))
