"""Slack connector against the sandbox simulator over real HTTP: truth, wire, lookback + reconcile, faults."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import connector
from sophia_lib.connectors.errors import SourceAuthError
from sophia_lib.connectors.slack import ts_time
from tests.support.connectors import FAULT_MATRIX, ConnectorRun
from tests.support.connectors import error_in_chain as cause


def truth(server: Any, channels: set[str] | None = None) -> dict[str, set[Any]]:
    """What Slack serves now: members, live channels, their messages and the replies of their threads.

    Replies whose parent is gone from history (an orphan thread) are not reachable through the Web API
    without knowing the thread's ts, so they are not part of what a connector can load."""
    sim = server.sandbox.vendors["slack"]
    wanted = {c["id"] for c in sim.channels if channels is None or c["id"] in channels}
    messages = {(cid, m["ts"]) for cid in wanted for m in sim.messages[cid].asc}
    messages |= {(cid, m["ts"]) for cid in wanted for parent, thread in sim.messages[cid].threads.items()
                 if parent in sim.messages[cid].by_ts for m in thread}
    return {"users": {u["id"] for u in sim.users}, "channels": wanted, "messages": messages}


def loaded(run: ConnectorRun) -> dict[str, list[Any]]:
    return {"users": run.keys("users"), "channels": run.keys("channels"),
            "messages": run.rows("messages", "channel_id, ts")}


def assert_matches(run: ConnectorRun, server: Any, channels: set[str] | None = None) -> None:
    have = loaded(run)
    for table, keys in truth(server, channels).items():
        rows = have[table]
        assert len(rows) == len(set(rows)), f"{table}: duplicated rows"
        assert set(rows) == keys, f"{table}: missing {len(keys - set(rows))}, extra {len(set(rows) - keys)}"




def quiet_channels(server: Any, n: int = 3) -> set[str]:
    """The ``n`` smallest channels that still need several history pages of 20 (keeps fault tests quick)."""
    sim = server.sandbox.vendors["slack"]
    sizes = sorted((len(box.asc), cid) for cid, box in sim.messages.items() if len(box.asc) > 45)
    return {cid for _, cid in sizes[:n]}


def test_full_sync_equals_what_slack_serves(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    run = ConnectorRun.against(server, "slack", tmp_path)
    run.sync()
    assert_matches(run, server)
    sim = server.sandbox.vendors["slack"]
    rows = {(r[0], r[1]): r[2:] for r in run.rows("messages", "channel_id, ts, text, reply_count, is_reply, posted_at")}
    for cid, box in list(sim.messages.items())[:5]:
        for m in box.asc[:20]:
            text, replies, is_reply, posted = rows[(cid, m["ts"])]
            assert (text, replies or 0, is_reply) == (m["text"], m.get("reply_count", 0), False)
            assert posted == ts_time(m["ts"])  # exact to the microsecond
    archived = {c["id"] for c in sim.channels if c["is_archived"]}
    assert archived and {r[0] for r in run.rows("channels", "id, is_archived") if r[1]} == archived
    assert {r[0] for r in run.rows("users", "id, deleted") if r[1]} == {u["id"] for u in sim.users if u["deleted"]}
    assert run.last_context is not None and run.last_context.quarantine == []


def test_requests_are_what_slack_documents(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    channels = quiet_channels(server, 2)
    run = ConnectorRun.against(server, "slack", tmp_path, channels=sorted(channels), page_size=20)
    ctx = run.context()
    source = connector("slack").source(ctx)
    seen: list[requests.PreparedRequest] = []
    ctx.sessions[0].hooks["response"].append(lambda r, *a, **k: seen.append(r.request))
    run.pipeline().run(source)
    assert all(r.headers["Authorization"] == "Bearer xoxb-sandbox-demo" and r.method == "GET" for r in seen)
    calls = [(urlparse(r.url).path.rsplit("/", 1)[1], parse_qs(urlparse(r.url).query)) for r in seen]
    methods = {m for m, _ in calls}
    assert {"users.list", "conversations.list", "conversations.history", "conversations.replies"} == methods
    listing = [q for m, q in calls if m == "conversations.list"]
    assert all(q["types"] == ["public_channel,private_channel"] and q["exclude_archived"] == ["false"]
               for q in listing)
    history = [q for m, q in calls if m == "conversations.history"]
    assert {q["channel"][0] for q in history} == channels and all(q["limit"] == ["20"] for q in history)
    assert any("cursor" in q for q in history), "history pages are followed with next_cursor"
    assert all("ts" in q and "channel" in q for m, q in calls if m == "conversations.replies")


def test_incremental_lookback_then_reconcile(fresh_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(fresh_company, ["slack"])
    run = ConnectorRun.against(server, "slack", tmp_path)
    started = time.monotonic()
    run.sync()
    full = (run.requests_sent(), run.count("messages"), time.monotonic() - started)
    window_start = max(r[0] for r in run.rows("messages", "posted_at")) - timedelta(days=7)
    changes = server.sandbox.advance(2 * 1440)["messages"]

    started = time.monotonic()
    run.sync()
    incremental = (run.requests_sent(), time.monotonic() - started)
    print(f"slack full: {full[0]} requests, {full[1]} messages, {full[2]:.2f}s; "
          f"incremental: {incremental[0]} requests, {incremental[1]:.2f}s; changes {changes}")
    # a window of history per channel plus its threads, against every page and thread (~8 % of messages start
    # one, as in a real workspace)
    assert incremental[0] < full[0] / 5
    sim = server.sandbox.vendors["slack"]
    want = truth(server)["messages"]
    have = {(r[0], r[1]): r[2:] for r in run.rows("messages", "channel_id, ts, text, reply_count, thread_ts")}
    # inside the window (thread started after its start): creates, replies and edits landed exactly
    for cid, box in sim.messages.items():
        for m in box.asc:
            if ts_time(m["ts"]) >= window_start:
                assert have[(cid, m["ts"])] == (m["text"], m.get("reply_count"), m.get("thread_ts"))
                for reply in box.threads.get(m["ts"], [])[1:]:
                    assert have[(cid, reply["ts"])][0] == reply["text"]
    # outside it, a message deleted at Slack may remain until the next reconciliation; nothing else differs
    extra = set(have) - want
    assert len(extra) <= changes["delete"]

    run.options["reconcile_every_hours"] = 0
    run.sync()
    assert_matches(run, server)
    texts = {(r[0], r[1]): r[2] for r in run.rows("messages", "channel_id, ts, text")}
    assert all(texts[(cid, m["ts"])] == m["text"] for cid, box in sim.messages.items() for m in box.asc)


FAULTS = [FAULT_MATRIX[0], ("throttle", {"retry_after": 0, "variant": "http200"}), *FAULT_MATRIX[1:]]


@pytest.mark.parametrize(("kind", "params"), FAULTS,
                         ids=[f[0] + ("-" + f[1]["variant"] if "variant" in f[1] else "") for f in FAULTS])
def test_faults_on_history_still_load_everything(small_company: Any, serve: Any, tmp_path: Path, kind: str,
                                                 params: dict[str, Any]) -> None:
    server = serve(small_company, ["slack"])
    channels = quiet_channels(server)
    params = dict(params)
    count = params.pop("count", 1)
    # skip the first page of the first channel so a duplicate repeats a record across pages
    server.faults.add("slack", kind, "/api/conversations.history", count=count, probability=0.5, **params)
    run = ConnectorRun.against(server, "slack", tmp_path, channels=sorted(channels), page_size=20)
    run.sync()
    assert not server.faults.armed(), "the fault was not hit"
    assert_matches(run, server, channels)
    if kind == "schema_drift":
        assert run.rows("messages", "count(sophia_drift_new_field)")[0][0] > 0


def test_an_unknown_slack_error_stops_the_sync_in_slacks_words(small_company: Any, serve: Any,
                                                               tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    run = ConnectorRun.against(server, "slack", tmp_path, page_size=-5)  # HTTP 200 {"ok":false,"error":"invalid_limit"}
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert "invalid_limit" in str(failure.value)


def test_an_expired_token_fails_cleanly_and_the_next_sync_recovers(small_company: Any, serve: Any,
                                                                   tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    channels = quiet_channels(server)
    server.faults.add("slack", "token_expiry", "/api/conversations.history")
    run = ConnectorRun.against(server, "slack", tmp_path, channels=sorted(channels), page_size=20)
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert isinstance(cause(failure.value, SourceAuthError), SourceAuthError)
    assert "token_expired" in str(failure.value)
    run.sync()
    assert_matches(run, server, channels)


def test_a_persistent_outage_ends_with_the_vendor_message_and_loses_nothing(small_company: Any, serve: Any,
                                                                            tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    channels = quiet_channels(server)
    run = ConnectorRun.against(server, "slack", tmp_path, channels=sorted(channels), page_size=20)
    server.faults.add("slack", "server_error", "/api/conversations.history", count=None, status=503)
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 30
    assert "slack" in str(failure.value) and "service_unavailable" in str(failure.value)
    server.faults.clear("slack")
    run.sync()
    assert_matches(run, server, channels)


def test_a_wrong_token_fails_fast_naming_the_source_and_the_fix(small_company: Any, serve: Any,
                                                                tmp_path: Path) -> None:
    server = serve(small_company, ["slack"])
    run = ConnectorRun.against(server, "slack", tmp_path)
    run.credentials["bot_token"] = "xoxb-wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 10
    error = cause(failure.value, SourceAuthError)
    assert isinstance(error, SourceAuthError) and error.source == "slack" and error.fix
    assert "invalid_auth" in str(error)
