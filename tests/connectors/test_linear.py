"""Linear connector against the Linear simulator over real HTTP: full, incremental, faults, credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors._http import VendorSession
from sophia_lib.connectors.errors import SourceAuthError, SourceError, SourceUnavailableError
from sophia_lib.connectors.linear import QUERIES
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from tests.support.connectors import ConnectorRun

ENTITIES = {"issues": "issues", "cycles": "cycles", "projects": "projects", "users": "users", "teams": "teams",
            "workflow_states": "states"}


def truth(server: SandboxServer) -> dict[str, set[str]]:
    """Live ids per stream as the simulator serves them (archived = deleted; disabled users kept)."""
    data = server.sandbox.vendors["linear"].data
    out = {}
    for stream, attr in ENTITIES.items():
        ents = getattr(data, attr)
        out[stream] = {r["id"] for r, archived in zip(ents.records, ents.archived, strict=True) if not archived}
    return out


def assert_equals_truth(run: ConnectorRun, server: SandboxServer) -> None:
    for stream, ids in truth(server).items():
        keys = run.keys(stream)
        assert len(keys) == len(set(keys)), f"{stream}: duplicated rows"
        assert set(keys) == ids, f"{stream}: missing {len(ids - set(keys))}, extra {len(set(keys) - ids)}"


def requests_sent(run: ConnectorRun) -> int:
    return run.requests_sent()


def source_error(exc: BaseException) -> SourceError:
    """The connector error inside dlt's PipelineStepFailed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SourceError):
            return seen
        seen = getattr(seen, "exception", None) or seen.__cause__ or seen.__context__
    raise AssertionError(f"no SourceError in {exc!r}")


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> list[requests.Response]:
    """Every response the connector's sessions receive (with the request that asked)."""
    seen: list[requests.Response] = []
    original = VendorSession.send

    def send(self: VendorSession, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = original(self, request, **kwargs)
        seen.append(response)
        return response

    monkeypatch.setattr(VendorSession, "send", send)
    return seen


def test_full_sync_equals_vendor(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["linear"])
    run = ConnectorRun.against(server, "linear", tmp_path)
    run.sync()
    assert_equals_truth(run, server)
    data = server.sandbox.vendors["linear"].data
    archived = {r["id"] for r, a in zip(data.issues.records, data.issues.archived, strict=True) if a}
    assert archived and not archived & set(run.keys("issues"))
    issue = next(r for r, a in zip(data.issues.records, data.issues.archived, strict=True) if not a)
    rows = {r[0]: r[1:] for r in run.rows("issues", "id, identifier, title, state_id, team_id, priority")}
    meta = issue["__meta"]
    assert rows[issue["id"]] == (issue["identifier"], issue["title"], meta["state"], meta["team"],
                                 int(issue["priority"]))
    users = dict(run.rows("users", "id, active"))
    assert set(users.values()) <= {True, False} and len(users) == len(data.users.records)
    assert run.count("workflow_states") == 6 * run.count("teams")
    assert not run.last_context.quarantine


def test_requests_are_linear_graphql(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path,
                                     capture: list[requests.Response]) -> None:
    server = serve(small_company, ["linear"])
    ConnectorRun.against(server, "linear", tmp_path, page_size=100).sync()
    roots = set()
    for response in capture:
        request = response.request
        assert request.method == "POST" and request.url == server.url("linear") + "/graphql"
        assert request.headers["Authorization"] == server.sandbox.vendors["linear"].API_KEY  # no "Bearer"
        body = json.loads(request.body)
        doc = body["query"]
        root = next(q.root for q in QUERIES if f"{{ {q.root}(" in doc)
        roots.add(root)
        assert "first: 100" in doc and "orderBy: updatedAt" in doc and "includeArchived: true" in doc
        assert "filter: {updatedAt: {gt: $since}}" in doc and "pageInfo { hasNextPage endCursor }" in doc
        assert body["variables"]["since"] == "2024-01-01T00:00:00.000Z"
        assert ("includeDisabled: true" in doc) == (root == "users")
    assert roots == {q.root for q in QUERIES}
    issue_pages = [json.loads(r.request.body)["variables"]["after"] for r in capture
                   if "{ issues(" in json.loads(r.request.body)["query"]]
    assert issue_pages[0] is None and all(issue_pages[1:]) and len(issue_pages) == 3  # 225 issues, 100 a page


def test_incremental_picks_up_changes(fresh_company: Company, serve: Callable[..., SandboxServer],
                                      tmp_path: Path, capture: list[requests.Response]) -> None:
    server = serve(fresh_company, ["linear"])
    run = ConnectorRun.against(server, "linear", tmp_path, page_size=100)  # several pages: fewer read again
    started = time.monotonic()
    run.sync()
    full = (requests_sent(run), sum(1 for _ in capture), time.monotonic() - started)
    full_rows = sum(run.count(s) for s in ENTITIES)
    changes = server.sandbox.advance(3 * 1440)["tasks"]
    assert changes["create"] + changes["update"] and changes["delete"], changes
    capture.clear()
    started = time.monotonic()
    run.sync()
    seconds = time.monotonic() - started
    incremental = requests_sent(run)
    nodes = sum(len(json.loads(r.content)["data"][root]["nodes"]) for r in capture
                for root in [next(q.root for q in QUERIES if f"{{ {q.root}(" in json.loads(r.request.body)["query"])])
    print(f"\nlinear full: {full[0]} requests, {full_rows} rows, {full[2]:.2f}s; "
          f"incremental: {incremental} requests, {nodes} records, {seconds:.2f}s; changes {changes}")
    assert_equals_truth(run, server)
    assert incremental < full[0] and nodes < full_rows
    deleted = set(server.sandbox.vendors["linear"].data.issues.ids[server.sandbox.vendors["linear"].data.issues
                                                                    .archived])
    assert not deleted & set(run.keys("issues"))


FAULTS = [
    ("throttle", {"count": 2, "retry_after": 0}),
    ("server_error", {"count": 3}),
    ("slow", {"count": 1, "delay_s": 3}),
    ("reset", {"count": 2}),
    ("malformed_json", {"count": 2}),
    ("truncated_page", {"count": 2}),
    ("schema_drift", {"count": 2, "change": "new_field", "field": "sophia_new"}),
    ("duplicate_record", {"count": 3}),
]


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_recovers(kind: str, params: dict[str, Any], small_company: Company,
                        serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["linear"])
    server.faults.add("linear", kind, "/graphql", **params)
    run = ConnectorRun.against(server, "linear", tmp_path, page_size=100)  # several pages per stream
    run.sync()
    assert_equals_truth(run, server)
    assert not server.faults.armed()
    if kind in ("throttle", "server_error", "reset", "malformed_json", "truncated_page", "slow"):
        assert run.last_context.sessions[0].retries >= 1


def test_token_expiry_mid_sync_refreshes_oauth(small_company: Company, serve: Callable[..., SandboxServer],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(small_company, ["linear"])
    run = ConnectorRun.against(server, "linear", tmp_path, auth="oauth")
    original, answered = VendorSession.send, []

    def send(self: VendorSession, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        answered.append(request.url)
        if len(answered) == 4:  # the access token dies in the middle of the sync
            server.faults.add("linear", "token_expiry", "/graphql", count=1)
        return original(self, request, **kwargs)

    monkeypatch.setattr(VendorSession, "send", send)
    run.sync()
    assert_equals_truth(run, server)
    assert not server.faults.armed() and run.last_context.sessions[0].requests_sent == len(answered) + 1
    assert run.saved_secrets["refresh_token"] != server.sandbox.vendors["linear"].REFRESH_TOKEN  # rotated, saved


def test_schema_change_stops_with_linear_message(small_company: Company, serve: Callable[..., SandboxServer],
                                                 tmp_path: Path) -> None:
    """A retyped field cannot pass Linear's typed schema: the sync stops with Linear's message, loads nothing
    half-way and the next clean sync still gets everything."""
    server = serve(small_company, ["linear"])
    server.faults.add("linear", "schema_drift", "/graphql", count=1, change="changed_type", field="title")
    run = ConnectorRun.against(server, "linear", tmp_path)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert error.source == "linear" and "String cannot represent value" in str(error)
    run.sync()
    assert_equals_truth(run, server)


def test_persistent_outage_fails_clearly_and_keeps_cursor(fresh_company: Company,
                                                          serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(fresh_company, ["linear"])
    run = ConnectorRun.against(server, "linear", tmp_path)
    run.sync()
    server.sandbox.advance(2 * 1440)
    server.faults.add("linear", "server_error", "/graphql", count=None, message="Linear is down for maintenance")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 30
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError) and "Linear is down for maintenance" in str(error)
    assert str(error).startswith("linear:")
    server.faults.clear()
    run.sync()
    assert_equals_truth(run, server)


@pytest.mark.parametrize("mode", ["api_key", "oauth"])
def test_bad_credentials_fail_fast(mode: str, small_company: Company, serve: Callable[..., SandboxServer],
                                   tmp_path: Path) -> None:
    server = serve(small_company, ["linear"])
    run = ConnectorRun.against(server, "linear", tmp_path, auth=mode)
    run.credentials["api_key" if mode == "api_key" else "refresh_token"] = "lin_wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 10
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and error.source == "linear"
    assert "re-authorize linear" in str(error.fix)
    assert ("AUTHENTICATION_ERROR" if mode == "api_key" else "invalid_grant") in str(error)
