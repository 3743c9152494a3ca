"""Looker connector against the Looker simulator over real HTTP: Looks, Look results, faults, credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors.errors import SourceAuthError, SourceUnavailableError
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from tests.connectors.test_linear import capture, requests_sent, source_error  # noqa: F401 - shared fixture
from tests.support.connectors import ConnectorRun


def truth(server: SandboxServer) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
    """Live Look ids, and each live Look's result rows as Looker runs them (limit 5000)."""
    vendor = server.sandbox.vendors["looker"]
    live = {i: look for i, look in vendor.looks.items() if not look["deleted"]}
    return set(live), {i: vendor.model.run(look["query"], 5000)[1] for i, look in live.items()}


def assert_equals_truth(run: ConnectorRun, server: SandboxServer, values: bool = True) -> None:
    looks, results = truth(server)
    keys = run.keys("looks")
    assert len(keys) == len(set(keys)) and set(keys) == looks
    users = run.keys("users")
    assert len(users) == len(set(users)) and set(users) == set(server.sandbox.vendors["looker"].users)
    got = run.rows("look_results", "look_id, row_number, data")
    assert len({(r[0], r[1]) for r in got}) == len(got), "duplicated result rows"
    assert {(r[0], r[1]) for r in got} == {(i, n) for i, rows in results.items() for n in range(len(rows))}
    if values:
        by_key = {(r[0], r[1]): json.loads(r[2]) for r in got}
        for look_id, rows in results.items():
            assert [by_key[(look_id, n)] for n in range(len(rows))] == json.loads(json.dumps(rows, default=str))


def test_full_sync_equals_vendor(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path)
    run.sync()
    assert_equals_truth(run, server)
    vendor = server.sandbox.vendors["looker"]
    look = next(look for look in vendor.looks.values() if not look["deleted"])
    rows = {r[0]: r[1:] for r in run.rows("looks", "id, title, model, query_id")}
    assert rows[look["id"]] == (look["title"], look["model"]["id"], look["query_id"])
    assert run.count("look_results") > 0 and not run.last_context.quarantine
    users = {r[0]: r[1:] for r in run.rows("users", "id, first_name, last_name, display_name, email, is_disabled")}
    for user in vendor.users.values():
        assert users[user["id"]] == (user["first_name"], user["last_name"], user["display_name"], user["email"],
                                     user["is_disabled"])
    assert {owner for (owner,) in run.rows("looks", "distinct user_id")} <= set(users)  # owners are users


def test_requests_are_lookers(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path,
                              capture: list[requests.Response]) -> None:  # noqa: F811
    server = serve(small_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path)
    run.sync()
    base = server.url("looker") + "/api/4.0"
    paths = set()
    for response in capture:
        request = response.request
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert request.method == "GET" and request.url.startswith(base)
        assert request.headers["Authorization"].startswith("token ")  # Looker's literal scheme
        path = url.path.removeprefix(urlparse(base).path)
        if path == "/looks/search":
            paths.add(f"search deleted={query['deleted']}")
            assert query["sorts"] == "id" and query["limit"] == "100" and "offset" in query
            assert "title" in query["fields"].split(",")
        elif path == "/users":
            paths.add("users")
            assert query == {"sorts": "id", "limit": "100", "offset": query["offset"],
                             "fields": "id,first_name,last_name,display_name,email,is_disabled"}
        else:
            assert path.startswith("/looks/") and path.endswith("/run/json")
            paths.add("run")
            assert query == {"limit": "5000", "apply_formatting": "false"}
    assert paths == {"search deleted=false", "search deleted=true", "run", "users"}
    runs = [r for r in capture if r.request.url.split("?")[0].endswith("/run/json")]
    assert len(runs) == len(truth(server)[0])


def test_later_sync_replaces_results_and_removes_deleted_looks(fresh_company: Company,
                                                               serve: Callable[..., SandboxServer],
                                                               tmp_path: Path) -> None:
    """Looker has no cursor for Look results: every sync replaces them (the same requests as the first)."""
    server = serve(fresh_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path)
    started = time.monotonic()
    run.sync()
    first = (requests_sent(run), run.count("look_results"), time.monotonic() - started)
    server.sandbox.advance(3 * 1440)
    looks = server.sandbox.company.tables["looks"]
    gone = looks.index[0]
    looks.loc[gone, "deleted_at"] = server.sandbox.company.now
    looks.loc[gone, "updated_at"] = server.sandbox.company.now
    server.sandbox.vendors["looker"].render()
    started = time.monotonic()
    run.sync()
    print(f"\nlooker first: {first[0]} requests, {first[1]} result rows, {first[2]:.2f}s; second (replace): "
          f"{requests_sent(run)} requests, {run.count('look_results')} result rows, {time.monotonic() - started:.2f}s")
    assert_equals_truth(run, server)
    assert str(looks.loc[gone, "system_id"]) not in run.keys("looks")


def test_users_page_and_are_replaced(fresh_company: Company, serve: Callable[..., SandboxServer],
                                     tmp_path: Path) -> None:
    """Users page through limit/offset; a deleted user leaves the table, a deactivated one stays disabled."""
    server = serve(fresh_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path, page_size=4)
    run.sync()
    assert_equals_truth(run, server)
    presence = fresh_company.tables["presence"]
    mine = presence.index[(presence["entity"] == "employee") & (presence["system"] == "looker")]
    removed, left = mine[-1], mine[-2]
    presence.loc[removed, "deleted_at"] = fresh_company.now
    staff = fresh_company.tables["employees"]
    staff.loc[staff["employee_id"] == presence.loc[left, "entity_id"], "is_active"] = False
    server.sandbox.vendors["looker"].render()
    run.sync()
    assert_equals_truth(run, server)
    assert presence.loc[removed, "system_id"] not in run.keys("users")
    disabled = dict(run.rows("users", "id, is_disabled"))
    assert disabled[presence.loc[left, "system_id"]] is True and sum(disabled.values()) == 1


FAULTS = [
    ("throttle", "/api/4.0/looks/*", {"count": 2}),
    ("server_error", "/api/4.0/looks/*", {"count": 3}),
    ("slow", "/api/4.0/looks/*/run/json", {"count": 1, "delay_s": 3}),
    ("reset", "/api/4.0/looks/*", {"count": 2}),
    ("malformed_json", "/api/4.0/looks/*", {"count": 2}),
    ("truncated_page", "/api/4.0/looks/*/run/json", {"count": 2}),
    ("token_expiry", "/api/4.0/looks/*/run/json", {"count": 1}),
    ("schema_drift", "/api/4.0/looks/*/run/json", {"count": 2, "change": "new_field", "field": "sophia_new"}),
    ("duplicate_record", "/api/4.0/looks/search", {"count": 3}),
    ("duplicate_record", "/api/4.0/users", {"count": 3}),
    ("server_error", "/api/4.0/users", {"count": 2}),
]


@pytest.mark.parametrize(("kind", "endpoint", "params"), FAULTS,
                         ids=[f[0] + ("-users" if f[1].endswith("/users") else "") for f in FAULTS])
def test_fault_recovers(kind: str, endpoint: str, params: dict[str, Any], small_company: Company,
                        serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["looker"])
    server.faults.add("looker", kind, endpoint, **params)
    run = ConnectorRun.against(server, "looker", tmp_path, page_size=3)  # pages of Looks, so faults hit page 2+
    run.sync()
    assert_equals_truth(run, server, values=kind != "schema_drift")
    assert not server.faults.armed() and not run.last_context.quarantine
    if kind not in ("schema_drift", "duplicate_record"):
        assert run.last_context.sessions[0].retries >= 1 or kind == "token_expiry"
    if kind == "schema_drift":  # a new field in a Look's rows is kept in the row's JSON
        assert any(json.loads(data).get("sophia_new") == "drift" for (data,) in run.rows("look_results", "data"))


def test_retyped_look_field_is_quarantined(small_company: Company, serve: Callable[..., SandboxServer],
                                                      tmp_path: Path) -> None:
    """A title turned into an object quarantines those Looks with the reason; the rest load, nothing is lost."""
    server = serve(small_company, ["looker"])
    server.faults.add("looker", "schema_drift", "/api/4.0/looks/search", count=2, change="changed_type",
                      field="title")
    run = ConnectorRun.against(server, "looker", tmp_path, page_size=3)
    run.sync()
    quarantine = run.last_context.quarantine
    assert quarantine and all("title: expected text" in q["reason"] for q in quarantine)
    looks, _ = truth(server)
    quarantined = {json.loads(q["record_key"])[0] for q in quarantine}
    assert quarantined | set(run.keys("looks")) == looks and not quarantined & set(run.keys("looks"))


def test_persistent_outage_fails_clearly(small_company: Company, serve: Callable[..., SandboxServer],
                                         tmp_path: Path) -> None:
    server = serve(small_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path)
    run.sync()
    server.faults.add("looker", "server_error", "/api/4.0/looks/*/run/json", count=None, status=502,
                      message="Looker instance is restarting")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 30
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError) and "Looker instance is restarting" in str(error)
    assert_equals_truth(run, server)  # the failed sync replaced nothing: the last good results stay
    server.faults.clear()
    run.sync()
    assert_equals_truth(run, server)


def test_bad_client_secret_fails_fast(small_company: Company, serve: Callable[..., SandboxServer],
                                      tmp_path: Path) -> None:
    server = serve(small_company, ["looker"])
    run = ConnectorRun.against(server, "looker", tmp_path)
    run.credentials["client_secret"] = "wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 10
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and error.source == "looker" and "re-authorize looker" in str(error.fix)
