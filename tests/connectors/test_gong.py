"""Gong connector against the sandbox simulator over real HTTP: truth, wire, late analysis, faults."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import connector
from sophia_lib.connectors.errors import SourceAuthError
from tests.support.connectors import FAULT_MATRIX, ConnectorRun
from tests.support.connectors import error_in_chain as cause

FAST = {"rate_per_s": 1000}  # the 3 requests/s pacing is for the real Gong


def truth(server: Any) -> dict[str, set[str]]:
    sim = server.sandbox.vendors["gong"]
    calls = {c["id"] for c in sim.calls}
    return {"users": {u["id"] for u in sim.users}, "calls": calls, "calls_extensive": calls}


def analysed(server: Any) -> set[str]:
    """Calls whose analysis Gong has finished by now."""
    sim = server.sandbox.vendors["gong"]
    return {c["id"] for c, row in zip(sim.calls, sim.call_rows, strict=True)
            if row["analysis_ready_at"] is not None and not pd.isna(row["analysis_ready_at"])
            and row["analysis_ready_at"] <= sim.now}


def assert_matches(run: ConnectorRun, server: Any) -> None:
    for table, keys in truth(server).items():
        loaded = run.keys(table)
        assert len(loaded) == len(set(loaded)), f"{table}: duplicated rows"
        assert set(loaded) == keys, f"{table}: missing {keys - set(loaded)}, extra {set(loaded) - keys}"
    assert {r[0] for r in run.rows("calls_extensive", "id, analysis_ready") if r[1]} == analysed(server)




def test_full_sync_equals_what_gong_serves(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    run.sync()
    assert_matches(run, server)
    sim = server.sandbox.vendors["gong"]
    rows = {r[0]: r[1:] for r in run.rows("calls", "id, title, duration, primary_user_id")}
    assert all(rows[c["id"]] == (c["title"], c["duration"], c["primaryUserId"]) for c in sim.calls)
    ready = next(iter(analysed(server)))
    row = run.rows("calls_extensive", "id, topics, talk_ratio, party_count")
    topics, ratio, parties = next(r[1:] for r in row if r[0] == ready)
    assert json.loads(topics) is not None and ratio is not None and parties >= 1
    assert run.last_context is not None and run.last_context.quarantine == []


def test_requests_are_what_gong_documents(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    ctx = run.context()
    source = connector("gong").source(ctx)
    seen: list[requests.PreparedRequest] = []
    ctx.sessions[0].hooks["response"].append(lambda r, *a, **k: seen.append(r.request))
    run.pipeline().run(source)
    creds = server.sandbox.vendors["gong"].credentials()
    basic = base64.b64encode(f"{creds['access_key']}:{creds['access_key_secret']}".encode()).decode()
    assert all(r.headers["Authorization"] == f"Basic {basic}" for r in seen)
    gets = [parse_qs(urlparse(r.url).query) for r in seen if urlparse(r.url).path.endswith("/v2/calls")]
    assert gets and all(q["fromDateTime"] == ["2024-01-01T00:00:00Z"] and "toDateTime" in q for q in gets)
    assert any("cursor" in q for q in gets), "GET pages carry the cursor as a query parameter"
    posts = [r for r in seen if r.url.endswith("/v2/calls/extensive")]
    assert len(posts) == 4 and all(r.method == "POST" and "?" not in r.url for r in posts)
    bodies = [json.loads(r.body) for r in posts]
    assert all(b["filter"]["fromDateTime"] == "2024-01-01T00:00:00Z" and b["contentSelector"]["context"] == "Extended"
               for b in bodies)
    assert "cursor" not in bodies[0] and all(b.get("cursor") for b in bodies[1:]), "POST pages: cursor in the body"


def test_incremental_rereads_the_window_so_late_analysis_lands(fresh_company: Any, serve: Any,
                                                               tmp_path: Path) -> None:
    server = serve(fresh_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    started = time.monotonic()
    run.sync()
    full = (run.requests_sent(), run.count("calls"), time.monotonic() - started)
    pending = truth(server)["calls"] - analysed(server)
    window_start = pd.Timestamp(max(r[0] for r in run.rows("calls", "started"))) - pd.Timedelta(hours=72)
    assert pending, "some calls are still waiting for their analysis"
    changes = server.sandbox.advance(3 * 1440)["calls"]
    assert changes["create"] and pending <= analysed(server)

    started = time.monotonic()
    run.sync()
    incremental = (run.requests_sent(), time.monotonic() - started)
    print(f"gong full: {full[0]} requests, {full[1]} calls, {full[2]:.2f}s; incremental: {incremental[0]} "
          f"requests, {incremental[1]:.2f}s; changes {changes}")
    assert incremental[0] < full[0]
    sim = server.sandbox.vendors["gong"]
    late = {c["id"] for c in sim.calls if pd.Timestamp(c["started"]) < window_start} & pending
    assert late, "one call's analysis came later than the lag"
    ready = {r[0] for r in run.rows("calls_extensive", "id, analysis_ready") if r[1]}
    assert ready == analysed(server) - late  # new calls in; late analysis inside the window landed

    run.options["analysis_lag_hours"] = 24 * 14  # a longer re-read picks up the latest analysis too
    run.sync()
    assert_matches(run, server)


FAULTS = FAULT_MATRIX


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_on_extensive_calls_still_load_everything(small_company: Any, serve: Any, tmp_path: Path, kind: str,
                                                         params: dict[str, Any]) -> None:
    server = serve(small_company, ["gong"])
    params = dict(params)
    count = params.pop("count", 1)
    server.faults.add("gong", kind, "/v2/calls/extensive", count=count, probability=0.5, **params)
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    run.sync()
    assert not server.faults.armed(), "the fault was not hit"
    assert_matches(run, server)
    if kind == "schema_drift":
        assert run.rows("calls_extensive", "count(sophia_drift_new_field)")[0][0] > 0


def test_a_retyped_declared_column_is_quarantined_with_the_reason(small_company: Any, serve: Any,
                                                                  tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    server.faults.add("gong", "schema_drift", "/v2/calls", change="changed_type", field="title")
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    run.sync()
    assert run.last_context is not None
    bad = run.last_context.quarantine
    assert bad and all(q["stream"] == "calls" and q["reason"].startswith("title: expected text") for q in bad)
    keys = set(run.keys("calls")) | {json.loads(q["record_key"])[0] for q in bad}
    assert keys == truth(server)["calls"]


def test_an_expired_key_fails_cleanly_and_the_next_sync_recovers(small_company: Any, serve: Any,
                                                                 tmp_path: Path) -> None:
    """Basic access keys cannot be refreshed: a 401 is an auth failure, nothing is half-loaded."""
    server = serve(small_company, ["gong"])
    server.faults.add("gong", "token_expiry", "/v2/calls/extensive")
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert isinstance(cause(failure.value, SourceAuthError), SourceAuthError)
    run.sync()
    assert_matches(run, server)


def test_a_persistent_outage_ends_with_the_vendor_message_and_loses_nothing(small_company: Any, serve: Any,
                                                                            tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    server.faults.add("gong", "server_error", "/v2/calls/extensive", count=None, message="Gong is down")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 30
    assert "gong" in str(failure.value) and "Gong is down" in str(failure.value)
    server.faults.clear("gong")
    run.sync()
    assert_matches(run, server)


def test_requests_are_paced_under_gongs_limit(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, rate_per_s=20)
    run.sync()
    assert run.last_context is not None
    pacer = run.last_context.sessions[0].pacer
    assert pacer is not None and pacer.interval == pytest.approx(1 / 20)
    assert connector("gong").options["rate_per_s"] == 3.0


def test_a_wrong_key_fails_fast_naming_the_source_and_the_fix(small_company: Any, serve: Any,
                                                              tmp_path: Path) -> None:
    server = serve(small_company, ["gong"])
    run = ConnectorRun.against(server, "gong", tmp_path, **FAST)
    run.credentials["access_key_secret"] = "wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 10
    error = cause(failure.value, SourceAuthError)
    assert isinstance(error, SourceAuthError) and error.source == "gong" and error.fix
    assert "Invalid access key or secret" in str(error)
