"""Notion connector against the Notion simulator over real HTTP: full, incremental, deletes, faults, credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import connector, notion
from sophia_lib.connectors.errors import SourceAuthError, SourceUnavailableError
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from tests.connectors.test_linear import capture, requests_sent, source_error  # noqa: F401 - shared fixture
from tests.support.connectors import ConnectorRun

FAST = {"rate_per_s": 1000.0}


def truth(server: SandboxServer) -> dict[str, set[str]]:
    """Live (not trashed) ids per stream, as the simulator holds them."""
    vendor = server.sandbox.vendors["notion"]
    tables = vendor.tables
    return {**{stream: {r["id"] for r, gone in zip(tables[stream].records, tables[stream].deleted, strict=True)
                        if not gone} for stream in ("databases", "pages")},
            "users": {u["id"] for u in vendor.users}}


def assert_equals_truth(run: ConnectorRun, server: SandboxServer) -> None:
    for stream, ids in truth(server).items():
        keys = run.keys(stream)
        assert len(keys) == len(set(keys)), f"{stream}: duplicated rows"
        assert set(keys) == ids, f"{stream}: missing {len(ids - set(keys))}, extra {len(set(keys) - ids)}"


def test_full_sync_equals_vendor(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    assert_equals_truth(run, server)
    pages = server.sandbox.vendors["notion"].tables["pages"]
    row = next(r for r, gone in zip(pages.records, pages.deleted, strict=True)
               if not gone and r["parent"]["type"] == "database_id")
    got = {r[0]: r[1:] for r in run.rows("pages", "id, title, database_id, parent_type, properties")}[row["id"]]
    assert got[:3] == (row["properties"]["Name"]["title"][0]["plain_text"], row["parent"]["database_id"],
                       "database_id")
    assert json.loads(got[3])["Words"] == row["properties"]["Words"]["number"]
    assert run.rows("pages", "count(*) filter (where parent_type = 'workspace')")[0][0] > 0
    assert not run.last_context.quarantine
    users = {r[0]: r[1:] for r in run.rows("users", "id, type, name, email")}
    for user in server.sandbox.vendors["notion"].users:
        assert users[user["id"]] == (user["type"], user["name"], (user.get("person") or {}).get("email"))
    authors = {a for (a,) in run.rows("pages", "distinct created_by_id")}
    assert authors <= set(users)  # page authors resolve to users with names and e-mails


def test_users_are_replaced_each_sync(fresh_company: Company, serve: Callable[..., SandboxServer],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capture: list[requests.Response]) -> None:  # noqa: F811
    """Users page through start_cursor; a member removed from the workspace drops out of /v1/users and out of
    the table on the next sync."""
    monkeypatch.setattr(notion, "PAGE_SIZE", 10)
    server = serve(fresh_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    listed = [r for r in capture if r.request.method == "GET"]
    assert len(listed) > 1 and "start_cursor" not in listed[0].request.url
    for before, after in zip(listed[:-1], listed[1:], strict=True):
        assert f"start_cursor={before.json()['next_cursor']}" in after.request.url
    vendor = server.sandbox.vendors["notion"]
    assert len(run.keys("users")) == len(vendor.users) > 10
    gone = vendor.users[0]["id"]
    presence = fresh_company.tables["presence"]
    presence.loc[(presence["system"] == "notion") & (presence["system_id"] == gone), "deleted_at"] = fresh_company.now
    vendor.render()
    assert gone not in truth(server)["users"]
    run.sync()
    assert_equals_truth(run, server)
    assert gone not in run.keys("users")


def test_requests_are_notions(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path,
                              capture: list[requests.Response]) -> None:  # noqa: F811
    server = serve(small_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    base = server.url("notion")
    kinds = set()
    for response in capture:
        request = response.request
        assert request.headers["Notion-Version"] == "2022-06-28"
        assert request.headers["Authorization"] == "Bearer " + run.credentials["integration_token"]
        if request.method == "GET":  # GET /v1/users: paged with query parameters, no body
            url = urlparse(request.url)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            assert request.url.split("?")[0] == base + "/v1/users" and query["page_size"] == "100"
            assert request.body is None
            kinds.add("users")
            continue
        assert request.method == "POST"
        body = json.loads(request.body)
        assert body["page_size"] == 100
        if request.url == base + "/v1/search":
            kinds.add("search:" + body["filter"]["value"])
            assert body["sort"] == {"timestamp": "last_edited_time", "direction": "descending"}
        else:
            assert request.url.startswith(base + "/v1/databases/") and request.url.endswith("/query")
            kinds.add("query")
            assert body["sorts"] == [{"timestamp": "last_edited_time", "direction": "ascending"}]
            assert "filter" not in body  # the first sync reads everything
    assert kinds == {"search:page", "search:database", "query", "users"}
    paged = [(json.loads(r.request.body), r.json()) for r in capture if r.request.url == base + "/v1/search"
             and json.loads(r.request.body)["filter"]["value"] == "page"]
    assert len(paged) == 2 and "start_cursor" not in paged[0][0]  # 150 pages, 100 a page
    assert paged[1][0]["start_cursor"] == paged[0][1]["next_cursor"] and not paged[1][1]["has_more"]


def test_incremental_reads_only_changes(fresh_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path,
                                        capture: list[requests.Response]) -> None:  # noqa: F811
    server = serve(fresh_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    started = time.monotonic()
    run.sync()
    full = (requests_sent(run), run.count("pages") + run.count("databases"), time.monotonic() - started)
    changes = server.sandbox.advance(3 * 1440)
    assert changes["pages"]["update"] > 0, changes
    capture.clear()
    started = time.monotonic()
    run.sync()
    seconds = time.monotonic() - started
    records = sum(len(r.json()["results"]) for r in capture if r.request.method == "POST")  # users: a snapshot
    print(f"\nnotion full: {full[0]} requests, {full[1]} rows, {full[2]:.2f}s; incremental: "
          f"{requests_sent(run)} requests, {records} records, {seconds:.2f}s; changes {changes['pages']}")
    assert_equals_truth(run, server)
    assert requests_sent(run) < full[0] and records < full[1]
    queries = [json.loads(r.request.body) for r in capture if r.request.url.endswith("/query")]
    assert queries and all(q["filter"]["timestamp"] == "last_edited_time" for q in queries)
    since = pd.Timestamp(queries[0]["filter"]["last_edited_time"]["on_or_after"])
    assert since < fresh_company.now  # the cursor, minus the overlap
    edited = dict(run.rows("pages", "id, last_edited_time"))
    pages = server.sandbox.vendors["notion"].tables["pages"]
    assert all(pd.Timestamp(edited[r["id"]]) == pd.Timestamp(r["last_edited_time"])
               for r, gone in zip(pages.records, pages.deleted, strict=True) if not gone)


def _trash(server: SandboxServer, n_rows: int = 2, n_workspace: int = 1) -> set[str]:
    company = server.sandbox.company
    pages = company["pages"]
    live = pages["deleted_at"].isna() & ~pages["archived"]
    rows = pages[live & pages["database_id"].notna()].index[:n_rows].tolist()
    workspace = pages[live & pages["database_id"].isna()].index[:n_workspace].tolist()
    chosen = rows + workspace
    company.tables["pages"].loc[chosen, "archived"] = True
    company.tables["pages"].loc[chosen, "last_edited_at"] = company.now
    server.sandbox.vendors["notion"].render()
    return set(company.tables["pages"].loc[chosen, "system_id"])


def test_trashed_pages_are_deleted_by_reconciliation(fresh_company: Company, serve: Callable[..., SandboxServer],
                                                     tmp_path: Path) -> None:
    server = serve(fresh_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    trashed = _trash(server)
    assert trashed <= set(run.keys("pages"))
    run.sync()  # incremental, reconciliation not due: trashed pages are invisible to search and queries
    assert trashed <= set(run.keys("pages"))
    run.options["reconcile_every_hours"] = 0
    run.sync()
    assert not trashed & set(run.keys("pages"))
    assert_equals_truth(run, server)


FAULTS = [
    ("throttle", "/v1/*", {"count": 2, "retry_after": 0}),
    ("server_error", "/v1/*", {"count": 3}),
    ("slow", "/v1/databases/*/query", {"count": 1, "delay_s": 3}),
    ("reset", "/v1/*", {"count": 2}),
    ("malformed_json", "/v1/*", {"count": 2}),
    ("truncated_page", "/v1/search", {"count": 2}),
    ("schema_drift", "/v1/*", {"count": 3, "change": "new_field", "field": "sophia_new"}),
    ("duplicate_record", "/v1/search", {"count": 4}),
]


@pytest.mark.parametrize(("kind", "endpoint", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_recovers(kind: str, endpoint: str, params: dict[str, Any], small_company: Company,
                        serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["notion"])
    server.faults.add("notion", kind, endpoint, **params)
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    assert_equals_truth(run, server)
    assert not server.faults.armed()
    assert not run.last_context.quarantine
    if kind not in ("schema_drift", "duplicate_record"):
        assert run.last_context.sessions[0].retries >= 1


def test_retyped_value_is_quarantined_with_reason(small_company: Company, serve: Callable[..., SandboxServer],
                                                  tmp_path: Path) -> None:
    """A declared column that cannot be coerced quarantines the row (with the reason); nothing is lost."""
    server = serve(small_company, ["notion"])
    server.faults.add("notion", "schema_drift", "/v1/databases/*/query", count=1, change="changed_type",
                      field="created_time")
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    quarantined = {json.loads(q["record_key"])[0] for q in run.last_context.quarantine}
    assert quarantined and all("created_time: expected timestamp" in q["reason"] for q in run.last_context.quarantine)
    assert not quarantined & set(run.keys("pages"))
    assert quarantined | set(run.keys("pages")) == truth(server)["pages"]


def test_token_expiry_fails_clearly(small_company: Company, serve: Callable[..., SandboxServer],
                                    tmp_path: Path) -> None:
    """An integration token never expires: a 401 mid-sync means it was revoked — stop, say so, lose nothing."""
    server = serve(small_company, ["notion"])
    server.faults.add("notion", "token_expiry", "/v1/databases/*/query", count=1)
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and "API token is invalid. (unauthorized)" in str(error)
    run.sync()
    assert_equals_truth(run, server)


def test_persistent_outage_fails_clearly_and_keeps_cursor(fresh_company: Company,
                                                          serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(fresh_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.sync()
    server.sandbox.advance(2 * 1440)
    server.faults.add("notion", "server_error", "/v1/*", count=None, status=503, message="Notion is unavailable")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 30
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError) and "Notion is unavailable (service_unavailable)" in str(error)
    server.faults.clear()
    run.sync()
    assert_equals_truth(run, server)


def test_bad_token_fails_fast(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path, **FAST)
    run.credentials["integration_token"] = "secret_wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 10
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and error.source == "notion" and "re-authorize notion" in str(error.fix)


def test_paced_at_notions_rate_by_default(small_company: Company, serve: Callable[..., SandboxServer],
                                          tmp_path: Path) -> None:
    server = serve(small_company, ["notion"])
    run = ConnectorRun.against(server, "notion", tmp_path)
    run.options.pop("rate_per_s", None)
    connector("notion").source(run.context())
    (session,) = run.last_context.sessions
    assert session.pacer is not None and session.pacer.interval == pytest.approx(1 / 3.0)
