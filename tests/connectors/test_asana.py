"""Asana connector against the sandbox simulator over real HTTP: truth, wire, incremental + events, faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import connector
from sophia_lib.connectors.errors import SourceAuthError
from tests.support.connectors import FAULT_MATRIX, ConnectorRun
from tests.support.connectors import error_in_chain as cause

PAGED = {"page_size": 5}  # small pages so every paginated fault lands mid-list


def truth(server: Any) -> dict[str, set[str]]:
    """What Asana serves now: live users and projects, and the live tasks of live projects."""
    sim = server.sandbox.vendors["asana"]
    projects = {p["gid"] for p in sim.tables["projects"].select()}
    tasks = {r["gid"] for r in sim.tables["tasks"].select() if sim.task_project.get(r["gid"]) in projects}
    return {"workspaces": {sim.workspace["gid"]}, "users": {u["gid"] for u in sim.users}, "projects": projects,
            "tasks": tasks}


def assert_matches(run: ConnectorRun, server: Any) -> None:
    for table, keys in truth(server).items():
        loaded = run.keys(table, "gid")
        assert len(loaded) == len(set(loaded)), f"{table}: duplicated rows"
        assert set(loaded) == keys, f"{table}: missing {keys - set(loaded)}, extra {set(loaded) - keys}"




def sync_capturing(run: ConnectorRun) -> list[requests.PreparedRequest]:
    """One sync, recording every request the connector sent (a response hook on its session)."""
    ctx = run.context()
    source = connector("asana").source(ctx)
    seen: list[requests.PreparedRequest] = []
    for session in ctx.sessions:
        session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request))
    run.pipeline().run(source)
    return seen


def test_full_sync_equals_what_asana_serves(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path)
    run.sync()
    assert_matches(run, server)
    sim = server.sandbox.vendors["asana"]
    loaded = {r[0]: r[1:] for r in run.rows("tasks", "gid, name, assignee_gid, completed, project_gid")}
    for task in sim.tables["tasks"].select()[:20]:
        assert loaded[task["gid"]] == (task["name"], (task["assignee"] or {}).get("gid"), task["completed"],
                                       task["projects"][0]["gid"])
    archived = {p["gid"] for p in sim.tables["projects"].select() if p["archived"]}
    assert {r[0] for r in run.rows("projects", "gid, archived") if r[1]} == archived
    assert run.last_context is not None and run.last_context.quarantine == []


def test_requests_are_what_asana_documents(fresh_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(fresh_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path)
    first = sync_capturing(run)
    token = server.sandbox.vendors["asana"].credentials()["personal_access_token"]
    assert all(r.headers["Authorization"] == f"Bearer {token}" for r in first)
    paths = {requests.utils.urlparse(r.url).path.split("/api/1.0")[1] for r in first}
    assert {"/workspaces", "/users", "/projects", "/events", "/tasks"} <= paths
    lists = [r for r in first if "/events" not in r.url]
    assert all("limit=100" in r.url and "opt_fields=" in r.url for r in lists)
    tasks = [r for r in first if "/tasks?" in r.url]
    assert tasks and all("project=" in r.url and "modified_since" not in r.url for r in tasks)
    assert all("sync=" not in r.url for r in first if "/events" in r.url)  # first call: 412 + a token

    server.sandbox.advance(1440)
    second = sync_capturing(run)
    events = [r for r in second if "/events" in r.url]
    assert events and all("sync=" in r.url for r in events)
    assert all("modified_since=" in r.url for r in second if "/tasks?" in r.url)


def test_incremental_picks_up_creates_updates_and_deletes(fresh_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(fresh_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path)
    started = time.monotonic()
    run.sync()
    full = (run.requests_sent(), run.count("tasks"), time.monotonic() - started)
    before = {gid: mod for gid, mod in run.rows("tasks", "gid, modified_at")}

    changes = server.sandbox.advance(1440)["tasks"]  # within Asana's one-day sync-token life
    sim = server.sandbox.vendors["asana"]
    started = time.monotonic()
    run.sync()
    incremental = (run.requests_sent(), time.monotonic() - started)
    print(f"asana full: {full[0]} requests, {full[1]} tasks, {full[2]:.2f}s; "
          f"incremental: {incremental[0]} requests, {incremental[1]:.2f}s; changes {changes}")
    assert_matches(run, server)
    assert incremental[0] < full[0]
    after = {gid: pd.Timestamp(mod) for gid, mod in run.rows("tasks", "gid, modified_at")}
    assert after == {r["gid"]: pd.Timestamp(r["modified_at"]) for r in sim.tables["tasks"].select()
                     if r["gid"] in after}, "updated tasks carry their new modified_at"
    gone = set(before) - set(after)
    assert gone and all(pd.notna(sim.task_deleted_at.get(g)) for g in gone), "deleted tasks were removed"


def test_deleted_tasks_come_from_the_events_api(fresh_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(fresh_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path)
    run.sync()
    sim = server.sandbox.vendors["asana"]
    live = [r["gid"] for r in sim.tables["tasks"].select()]
    victim = live[len(live) // 2]
    tasks = fresh_company["tasks"]
    when = fresh_company.now + pd.Timedelta(minutes=30)  # deleted during the next hour, as Asana stamps it
    tasks.loc[tasks["system_id"].astype(str) == victim, ["deleted_at", "updated_at"]] = when
    server.sandbox.advance(60)
    assert victim in run.keys("tasks", "gid")
    run.sync()
    assert victim not in run.keys("tasks", "gid")
    assert_matches(run, server)


FAULTS = FAULT_MATRIX


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_on_the_task_list_still_load_everything(small_company: Any, serve: Any, tmp_path: Path, kind: str,
                                                       params: dict[str, Any]) -> None:
    server = serve(small_company, ["asana"])
    params = dict(params)
    count = params.pop("count", 1)
    server.faults.add("asana", kind, "/api/1.0/tasks", count=count, **params)
    run = ConnectorRun.against(server, "asana", tmp_path, **PAGED)
    run.sync()
    assert not server.faults.armed(), "the fault was not hit"
    assert_matches(run, server)
    if kind == "schema_drift":  # a field Asana adds becomes a new column
        assert run.rows("tasks", "count(sophia_drift_new_field)")[0][0] > 0


def test_a_retyped_declared_column_is_quarantined_with_the_reason(small_company: Any, serve: Any,
                                                                  tmp_path: Path) -> None:
    server = serve(small_company, ["asana"])
    server.faults.add("asana", "schema_drift", "/api/1.0/tasks", change="changed_type", field="created_at")
    run = ConnectorRun.against(server, "asana", tmp_path, **PAGED)
    run.sync()
    assert run.last_context is not None
    bad = run.last_context.quarantine
    assert bad and all("created_at" in q["reason"] for q in bad)
    # nothing lost: every task is either loaded or quarantined with its key
    keys = set(run.keys("tasks", "gid")) | {q["record_key"].strip('[]"') for q in bad}
    assert keys == truth(server)["tasks"]


def test_an_expired_token_fails_cleanly_and_the_next_sync_recovers(small_company: Any, serve: Any,
                                                                   tmp_path: Path) -> None:
    """A personal access token cannot be refreshed: a 401 mid-sync is an auth failure, nothing half-loaded."""
    server = serve(small_company, ["asana"])
    server.faults.add("asana", "token_expiry", "/api/1.0/tasks")
    run = ConnectorRun.against(server, "asana", tmp_path, **PAGED)
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert isinstance(cause(failure.value, SourceAuthError), SourceAuthError)
    assert "Not Authorized" in str(failure.value)
    run.sync()
    assert_matches(run, server)


def test_a_persistent_outage_ends_with_the_vendor_message_and_loses_nothing(small_company: Any, serve: Any,
                                                                            tmp_path: Path) -> None:
    server = serve(small_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path, **PAGED)
    server.faults.add("asana", "server_error", "/api/1.0/tasks", count=None, status=500)
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 30
    assert "asana" in str(failure.value) and "Server Error" in str(failure.value)
    server.faults.clear("asana")
    run.sync()
    assert_matches(run, server)


def test_a_wrong_token_fails_fast_naming_the_source_and_the_fix(small_company: Any, serve: Any,
                                                                tmp_path: Path) -> None:
    server = serve(small_company, ["asana"])
    run = ConnectorRun.against(server, "asana", tmp_path)
    run.credentials["personal_access_token"] = "2/0/0:wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 10
    error = cause(failure.value, SourceAuthError)
    assert isinstance(error, SourceAuthError) and error.source == "asana" and error.fix
    assert "Not Authorized" in str(error)
