"""Intercom connector against the sandbox simulator over real HTTP: truth, wire, incremental + reconcile, faults."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import connector
from sophia_lib.connectors.errors import SourceAuthError
from tests.support.connectors import FAULT_MATRIX, ConnectorRun
from tests.support.connectors import error_in_chain as cause

PAGED = {"page_size": 50, "max_throttle_wait_s": 0.2}


def truth(server: Any) -> dict[str, set[str]]:
    """What Intercom serves now (deleted records vanish from its lists and search)."""
    sim = server.sandbox.vendors["intercom"]
    return {"admins": {a["id"] for a in sim.admins}, "companies": {c["id"] for c in sim.companies},
            "contacts": {c["id"] for c in sim.tables["contacts"].select()},
            "conversations": {c["id"] for c in sim.tables["conversations"].select()}}


def assert_matches(run: ConnectorRun, server: Any) -> None:
    for table, keys in truth(server).items():
        loaded = run.keys(table)
        assert len(loaded) == len(set(loaded)), f"{table}: duplicated rows"
        assert set(loaded) == keys, f"{table}: missing {keys - set(loaded)}, extra {set(loaded) - keys}"




def sync_capturing(run: ConnectorRun) -> list[requests.PreparedRequest]:
    ctx = run.context()
    source = connector("intercom").source(ctx)
    seen: list[requests.PreparedRequest] = []
    ctx.sessions[0].hooks["response"].append(lambda r, *a, **k: seen.append(r.request))
    run.pipeline().run(source)
    return seen


def test_full_sync_equals_what_intercom_serves(small_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(small_company, ["intercom"])
    run = ConnectorRun.against(server, "intercom", tmp_path)
    run.sync()
    assert_matches(run, server)
    sim = server.sandbox.vendors["intercom"]
    rows = {r[0]: r[1:] for r in run.rows("conversations", "id, state, admin_assignee_id, epoch(updated_at)")}
    for conv in sim.tables["conversations"].select()[:50]:
        admin = conv["admin_assignee_id"]
        assert rows[conv["id"]] == (conv["state"], None if admin is None else str(admin), conv["updated_at"])
    emails = {r[0]: r[1] for r in run.rows("contacts", "id, email")}
    assert all(emails[c["id"]] == (c["email"] or None) for c in sim.tables["contacts"].select())
    assert run.last_context is not None and run.last_context.quarantine == []


def test_requests_are_what_intercom_documents(fresh_company: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(fresh_company, ["intercom"])
    run = ConnectorRun.against(server, "intercom", tmp_path, page_size=150)
    first = sync_capturing(run)
    token = server.sandbox.vendors["intercom"].credentials()["access_token"]
    assert all(r.headers["Authorization"] == f"Bearer {token}" and r.headers["Intercom-Version"] == "2.11"
               for r in first)
    searches = [json.loads(r.body) for r in first if r.url.endswith("/search")]
    assert {r.url.rsplit("/", 2)[1] for r in first if r.url.endswith("/search")} == {"contacts", "conversations"}
    assert all(b["query"] == {"field": "updated_at", "operator": ">", "value": 0} for b in searches)
    assert all(b["sort"] == {"field": "updated_at", "order": "ascending"} for b in searches)
    assert all(b["pagination"]["per_page"] == 150 for b in searches)
    assert any("starting_after" in b["pagination"] for b in searches), "later pages carry the cursor in the body"
    assert any("/companies/scroll" in r.url for r in first) and any(r.url.endswith("/admins") for r in first)

    newest = max(c["updated_at"] for c in server.sandbox.vendors["intercom"].tables["contacts"].select())
    server.sandbox.advance(1440)
    second = [json.loads(r.body) for r in sync_capturing(run) if r.url.endswith("/search")]
    values = {b["query"]["value"] for b in second}
    assert min(values) > 0 and newest - 300 in values  # updated_at > cursor - 5 minutes (Unix seconds)


def test_incremental_then_reconcile_removes_deleted_contacts(fresh_company: Any, serve: Any,
                                                             tmp_path: Path) -> None:
    server = serve(fresh_company, ["intercom"])
    run = ConnectorRun.against(server, "intercom", tmp_path)
    started = time.monotonic()
    run.sync()
    full = (run.requests_sent(), run.count("contacts") + run.count("conversations"), time.monotonic() - started)
    sim = server.sandbox.vendors["intercom"]
    before = truth(server)
    changes = server.sandbox.advance(2 * 1440)
    after = truth(server)
    assert before["contacts"] - after["contacts"], "the advance deleted an Intercom contact"

    started = time.monotonic()
    run.sync()
    incremental = (run.requests_sent(), time.monotonic() - started)
    print(f"intercom full: {full[0]} requests, {full[1]} contacts+conversations, {full[2]:.2f}s; incremental: "
          f"{incremental[0]} requests, {incremental[1]:.2f}s; changes {changes.get('conversations')}")
    assert incremental[0] < full[0]
    updated = {c["id"]: c["updated_at"] for c in sim.tables["conversations"].select()}
    assert {r[0]: r[1] for r in run.rows("conversations", "id, epoch(updated_at)")} == updated
    assert set(run.keys("contacts")) == after["contacts"] | before["contacts"]  # deletes wait for a reconcile

    run.options["reconcile_every_hours"] = 0
    run.sync()
    assert_matches(run, server)


FAULTS = [("throttle", {}), *FAULT_MATRIX[1:]]  # Intercom waits for X-RateLimit-Reset


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_on_contact_search_still_load_everything(small_company: Any, serve: Any, tmp_path: Path, kind: str,
                                                        params: dict[str, Any]) -> None:
    server = serve(small_company, ["intercom"])
    params = dict(params)
    count = params.pop("count", 1)
    server.faults.add("intercom", kind, "/contacts/search", count=count, probability=0.6, **params)
    run = ConnectorRun.against(server, "intercom", tmp_path, **PAGED)
    run.sync()
    assert not server.faults.armed(), "the fault was not hit"
    assert_matches(run, server)
    if kind == "schema_drift":
        assert run.rows("contacts", "count(sophia_drift_new_field)")[0][0] > 0


def test_a_retyped_declared_column_is_quarantined_with_the_reason(small_company: Any, serve: Any,
                                                                  tmp_path: Path) -> None:
    server = serve(small_company, ["intercom"])
    server.faults.add("intercom", "schema_drift", "/contacts/search", change="changed_type", field="email")
    run = ConnectorRun.against(server, "intercom", tmp_path, **PAGED)
    run.sync()
    assert run.last_context is not None
    bad = run.last_context.quarantine
    assert bad and all(q["stream"] == "contacts" and q["reason"].startswith("email: expected text") for q in bad)
    keys = set(run.keys("contacts")) | {json.loads(q["record_key"])[0] for q in bad}
    assert keys == truth(server)["contacts"]


def test_an_expired_token_fails_cleanly_and_the_next_sync_recovers(small_company: Any, serve: Any,
                                                                   tmp_path: Path) -> None:
    """Intercom tokens never expire, so a 401 means it was revoked: an auth failure, nothing half-loaded."""
    server = serve(small_company, ["intercom"])
    server.faults.add("intercom", "token_expiry", "/contacts/search")
    run = ConnectorRun.against(server, "intercom", tmp_path, **PAGED)
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert isinstance(cause(failure.value, SourceAuthError), SourceAuthError)
    assert "Access Token Invalid" in str(failure.value)
    run.sync()
    assert_matches(run, server)


def test_a_persistent_outage_ends_with_the_vendor_message_and_loses_nothing(small_company: Any, serve: Any,
                                                                            tmp_path: Path) -> None:
    server = serve(small_company, ["intercom"])
    run = ConnectorRun.against(server, "intercom", tmp_path, **PAGED)
    server.faults.add("intercom", "server_error", "/contacts/search", count=None, message="upstream down")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 30
    assert "intercom" in str(failure.value) and "upstream down" in str(failure.value)
    server.faults.clear("intercom")
    run.sync()
    assert_matches(run, server)


def test_a_wrong_token_fails_fast_naming_the_source_and_the_fix(small_company: Any, serve: Any,
                                                                tmp_path: Path) -> None:
    server = serve(small_company, ["intercom"])
    run = ConnectorRun.against(server, "intercom", tmp_path)
    run.credentials["access_token"] = "wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failure:
        run.sync()
    assert time.monotonic() - started < 10
    error = cause(failure.value, SourceAuthError)
    assert isinstance(error, SourceAuthError) and error.source == "intercom" and error.fix
    assert "Access Token Invalid" in str(error)
