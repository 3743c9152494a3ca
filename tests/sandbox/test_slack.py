"""Slack Web API simulator over real HTTP: envelope, cursors, history filters, threads, auth, faults, conformance."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from sophia_lib.sandbox.clock import advance
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.slack import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, ts_micros

SPEC = Path(__file__).parents[2] / "sophia_lib/sandbox/specs/slack/slack_web_openapi_v2.json"
AUTH = {"Authorization": f"Bearer {BOT_TOKEN}"}


def _call(base: str, method: str, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/{method}", params=params, headers=AUTH if headers is None else headers)
    assert r.status_code == 200, r.text
    return r.json()


def _all(base: str, method: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Follow response_metadata.next_cursor until it is empty (never stopping on a short page)."""
    out: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10_000):
        body = _call(base, method, **params, **({"cursor": cursor} if cursor else {}))
        assert body["ok"], body
        out.extend(body[key])
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("pagination did not end")


def _advance_until(company: Company, table: str, kinds: tuple[str, ...], days: int = 14) -> dict[str, list[str]]:
    """Advance a day at a time until ``table`` has changes of every kind in ``kinds``; the merged change lists.

    The small company is quiet and the clock's rates follow its recent history, so an hour may change nothing.
    """
    merged: dict[str, list[str]] = {"create": [], "update": [], "delete": []}
    for _ in range(days):
        for kind, keys in advance(company, 1440).changes.get(table, {}).items():
            merged[kind].extend(keys)
        if all(merged[k] for k in kinds):
            return merged
    raise AssertionError(f"{days} days of clock produced no {kinds} changes to {table}: {merged}")


def _oneof_items(node: Any) -> Any:
    """The spec writes "one of these schemas" as a tuple ``items`` on non-array schemas; make it ``anyOf``."""
    if isinstance(node, list):
        return [_oneof_items(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _oneof_items(v) for k, v in node.items()}
    if isinstance(node.get("items"), list) and node.get("type") != "array":
        node["anyOf"] = node.pop("items")
    return node


@lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    """The Slack spec with its quirks patched (each one documented here).

    1. Tuple ``items`` used as a union on objects (objs_user, objs_conversation, response_metadata, tz, …):
       under JSON Schema that validates nothing, so it becomes ``anyOf`` (what the spec means).
    2. conversations.history's success schema forbids ``response_metadata`` (additionalProperties false)
       although Slack sends ``response_metadata.next_cursor`` on every page: added.
    3. objs_message lacks ``edited`` and ``is_locked``, which real messages carry: added.
    """
    spec = _oneof_items(json.loads(SPEC.read_text()))
    history = spec["paths"]["/conversations.history"]["get"]["responses"]["200"]["schema"]
    history["properties"]["response_metadata"] = {"$ref": "#/definitions/objs_response_metadata"}
    message = spec["definitions"]["objs_message"]["properties"]
    message["edited"] = {"type": "object", "additionalProperties": False, "required": ["user", "ts"],
                         "properties": {"user": {"$ref": "#/definitions/defs_user_id"},
                                        "ts": {"$ref": "#/definitions/defs_ts"}}}
    message["is_locked"] = {"type": "boolean"}
    return spec


def _conforms(method: str, body: dict[str, Any], status: str = "200") -> None:
    spec = _spec()
    schema = copy.deepcopy(spec["paths"][f"/{method}"]["get"]["responses"][status]["schema"])
    schema["definitions"] = spec["definitions"]
    jsonschema.Draft4Validator(schema).validate(body)


def _live_top_level(company: Company, channel_sys: str) -> list[str]:
    ch = company["channels"]
    canon = ch.loc[ch["system_id"] == channel_sys, "channel_id"].iloc[0]
    m = company["messages"]
    m = m[(m["channel_id"] == canon) & m["deleted_at"].isna()]
    top = m[m["thread_ts"].isna() | (m["thread_ts"] == m["ts"])]
    return sorted(top["ts"].astype(str), key=ts_micros, reverse=True)


def _busiest_channel(company: Company) -> str:
    m = company["messages"]
    canon = m["channel_id"].value_counts().index[0]
    ch = company["channels"]
    return str(ch.loc[ch["channel_id"] == canon, "system_id"].iloc[0])


def test_responses_conform_to_the_slack_spec(small_company: Company, serve) -> None:
    base = serve(small_company, ["slack"]).url("slack")
    users = _call(base, "users.list", limit=20)
    _conforms("users.list", users)
    channels = _call(base, "conversations.list", types="public_channel,private_channel")
    _conforms("conversations.list", channels)
    channel = _busiest_channel(small_company)
    history = _call(base, "conversations.history", channel=channel, limit=200)
    assert any("edited" in m for m in history["messages"]) and any(m.get("reply_count") for m in history["messages"])
    _conforms("conversations.history", history)
    _conforms("auth.test", _call(base, "auth.test"))
    # error envelopes against the methods' error schemas
    _conforms("conversations.history", _call(base, "conversations.history", channel="C0NOTACHANNEL"), "default")
    _conforms("users.list", _call(base, "users.list", headers={"Authorization": "Bearer xoxb-wrong"}), "default")
    with pytest.raises(jsonschema.ValidationError):  # the check has teeth
        _conforms("users.list", {**users, "members": [{**users["members"][0], "id": "not-a-user-id"}]})


def test_users_and_channels_page_with_cursors(small_company: Company, serve) -> None:
    base = serve(small_company, ["slack"]).url("slack")
    everyone = _call(base, "users.list")["members"]
    paged = _all(base, "users.list", "members", limit=7)
    assert [u["id"] for u in paged] == [u["id"] for u in everyone]
    slack_people = small_company.presence_of("employee", "slack")
    assert {u["id"] for u in paged if not u["is_bot"]} == set(slack_people["system_id"])
    assert any(u["is_bot"] for u in paged)

    channels = small_company["channels"]
    live = channels[channels["deleted_at"].isna()]
    public = _all(base, "conversations.list", "channels", limit=4)
    assert {c["id"] for c in public} == set(live.loc[~live["is_private"], "system_id"])
    both = _all(base, "conversations.list", "channels", limit=4, types="public_channel,private_channel",
                exclude_archived="true")
    assert {c["id"] for c in both} == set(live.loc[~live["is_archived"], "system_id"])
    assert {c["is_private"] for c in both} == {True, False}
    assert _call(base, "conversations.list", types="public_channel,bogus")["error"] == "invalid_types"
    assert _call(base, "users.list", cursor="!!not-a-cursor")["error"] == "invalid_cursor"


def test_history_pages_newest_first_and_filters_on_ts(small_company: Company, serve) -> None:
    base = serve(small_company, ["slack"]).url("slack")
    channel = _busiest_channel(small_company)
    expected = _live_top_level(small_company, channel)
    first = _call(base, "conversations.history", channel=channel, limit=50)
    assert first["has_more"] and first["response_metadata"]["next_cursor"]
    every = _all(base, "conversations.history", "messages", channel=channel, limit=50)
    assert [m["ts"] for m in every] == expected

    pivot, later = expected[10], expected[:10]
    newer = _all(base, "conversations.history", "messages", channel=channel, oldest=pivot)
    assert [m["ts"] for m in newer] == later  # oldest is exclusive by default
    newer_incl = _all(base, "conversations.history", "messages", channel=channel, oldest=pivot, inclusive="true")
    assert [m["ts"] for m in newer_incl] == [*later, pivot]
    window = _all(base, "conversations.history", "messages", channel=channel, oldest=expected[20],
                  latest=expected[5], inclusive="1")
    assert [m["ts"] for m in window] == expected[5:21]
    short = _call(base, "conversations.history", channel=channel, oldest=expected[3], limit=2)
    assert short["has_more"] and [m["ts"] for m in short["messages"]] == expected[:2]

    assert _call(base, "conversations.history", channel=channel, oldest="yesterday")["error"] == "invalid_ts_oldest"
    assert _call(base, "conversations.history", channel="C0NOTACHANNEL")["error"] == "channel_not_found"
    assert _call(base, "conversations.history", channel=channel, cursor="bm9wZQ==")["error"] == "invalid_cursor"
    bad_limit = _call(base, "conversations.history", channel=channel, limit="many")
    assert bad_limit["ok"] is False and bad_limit["error"] == "invalid_arguments"
    unknown = httpx.get(f"{base}/api/conversations.nope", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json() == {"ok": False, "error": "unknown_method",
                                                             "req_method": "conversations.nope"}
    # POST form-encoded works like GET, as Slack accepts both
    posted = httpx.post(f"{base}/api/conversations.history", headers=AUTH, data={"channel": channel, "limit": "3"})
    assert [m["ts"] for m in posted.json()["messages"]] == expected[:3]


def test_threads_come_back_through_replies(small_company: Company, serve) -> None:
    base = serve(small_company, ["slack"]).url("slack")
    channel = _busiest_channel(small_company)
    every = _all(base, "conversations.history", "messages", channel=channel, limit=200)
    parent = next(m for m in every if m.get("reply_count", 0) >= 1)
    thread = _all(base, "conversations.replies", "messages", channel=channel, ts=parent["ts"], limit=1)
    assert thread[0]["ts"] == parent["ts"]
    replies = thread[1:]
    assert len(replies) == parent["reply_count"]
    assert all(r["thread_ts"] == parent["ts"] and r["parent_user_id"] == parent["user"] for r in replies)
    assert max(r["ts"] for r in replies) == parent["latest_reply"]
    assert not {r["ts"] for r in replies} & {m["ts"] for m in every}  # replies are not in history
    missing = _call(base, "conversations.replies", channel=channel, ts="1000000000.000001")
    assert missing["error"] == "thread_not_found"


def test_auth_errors_are_http_200_envelopes(small_company: Company, serve) -> None:
    base = serve(small_company, ["slack"]).url("slack")
    assert _call(base, "auth.test", headers={}) == {"ok": False, "error": "not_authed"}
    assert _call(base, "auth.test", headers={"Authorization": "Bearer xoxb-nope"})["error"] == "invalid_auth"
    me = _call(base, "auth.test", headers={}, token=BOT_TOKEN)  # token as an argument also works
    assert me["ok"] and me["user_id"].startswith("U") and me["team_id"].startswith("T")


def test_token_rotation_expiry_and_refresh(small_company: Company, serve) -> None:
    server = serve(small_company, ["slack"])
    base = server.url("slack")

    def refresh(token: str) -> dict[str, Any]:
        return httpx.post(f"{base}/api/oauth.v2.access", data={
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
            "refresh_token": token}).json()

    grant = refresh(REFRESH_TOKEN)
    assert grant["ok"] and grant["expires_in"] == 43_200 and grant["token_type"] == "bot"
    assert grant["refresh_token"] != REFRESH_TOKEN  # single-use, rotates
    assert refresh(REFRESH_TOKEN) == {"ok": False, "error": "invalid_refresh_token"}
    auth = {"Authorization": f"Bearer {grant['access_token']}"}
    assert _call(base, "users.list", headers=auth, limit=2)["ok"]

    server.faults.add("slack", "token_expiry", "/api/users.list")
    assert _call(base, "users.list", headers=auth) == {"ok": False, "error": "token_expired"}
    assert _call(base, "auth.test", headers=auth)["error"] == "token_expired"  # really dead now
    again = refresh(grant["refresh_token"])
    assert _call(base, "users.list", headers={"Authorization": f"Bearer {again['access_token']}"})["ok"]
    bad = httpx.post(f"{base}/api/oauth.v2.access", data={"client_id": CLIENT_ID, "client_secret": "x",
                                                          "grant_type": "refresh_token", "refresh_token": "y"})
    assert bad.json() == {"ok": False, "error": "bad_client_secret"}


def test_throttle_and_record_faults(small_company: Company, serve) -> None:
    server = serve(small_company, ["slack"])
    base = server.url("slack")
    channel = _busiest_channel(small_company)
    server.faults.add("slack", "throttle", "/api/conversations.history", retry_after=7)
    r = httpx.get(f"{base}/api/conversations.history", params={"channel": channel}, headers=AUTH)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json() == {"ok": False, "error": "ratelimited"}
    server.faults.add("slack", "throttle", "/api/conversations.history", variant="http200")
    r = httpx.get(f"{base}/api/conversations.history", params={"channel": channel}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"ok": False, "error": "ratelimited"}

    server.faults.add("slack", "server_error", "/api/users.list", status=503)
    r = httpx.get(f"{base}/api/users.list", headers=AUTH)
    assert r.status_code == 503 and r.json()["ok"] is False and r.json()["error"] == "service_unavailable"

    first = _call(base, "conversations.history", channel=channel, limit=5)
    server.faults.add("slack", "duplicate_record", "/api/conversations.history")
    second = _call(base, "conversations.history", channel=channel, limit=5,
                   cursor=first["response_metadata"]["next_cursor"])
    assert second["messages"][0] == first["messages"][-1]


def test_advance_shows_new_edited_and_deleted_messages(fresh_company: Company, serve) -> None:
    cursor_ts = f"{int(fresh_company.now.timestamp())}.000000"  # what a connector synced up to
    changes = _advance_until(fresh_company, "messages", ("create", "update", "delete"))
    base = serve(fresh_company, ["slack"]).url("slack")
    m = fresh_company["messages"].set_index("message_id")
    ch = fresh_company["channels"].set_index("channel_id")["system_id"]
    new_replies = m.loc[changes["create"]]
    threads_with_new_replies = set(new_replies["thread_ts"].dropna())

    def visible(mid: str, **params: Any) -> list[dict[str, Any]]:
        row = m.loc[mid]
        channel, ts = ch[row["channel_id"]], str(row["ts"])
        thread = row["thread_ts"] if isinstance(row["thread_ts"], str) and row["thread_ts"] != ts else None
        if thread is not None:
            seen = _all(base, "conversations.replies", "messages", channel=channel, ts=thread, **params)
        else:
            seen = _all(base, "conversations.history", "messages", channel=channel, **params)
        return [x for x in seen if x["ts"] == ts]

    for mid in changes["create"]:  # new posts: past the ts cursor, found with oldest=<cursor>
        assert visible(mid, oldest=cursor_ts), mid
    edited = [mid for mid in changes["update"] if mid not in changes["delete"]
              and str(m.loc[mid, "ts"]) not in threads_with_new_replies]
    for mid in edited:  # edits keep ts and carry edited.ts past the cursor
        got = visible(mid)
        assert got and ts_micros(got[0]["edited"]["ts"]) > ts_micros(cursor_ts), (mid, got)
    for mid in changes["update"]:
        if str(m.loc[mid, "ts"]) in threads_with_new_replies:  # a reply only moves the parent's latest_reply
            got = visible(mid)
            assert got and ts_micros(got[0]["latest_reply"]) > ts_micros(cursor_ts)
    for mid in changes["delete"]:  # Slack lists no tombstone: the message is simply gone
        row = m.loc[mid]
        full = _all(base, "conversations.history", "messages", channel=ch[row["channel_id"]])
        assert str(row["ts"]) not in {x["ts"] for x in full}
