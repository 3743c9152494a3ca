"""HubSpot connector against the simulator over real HTTP: full sync equals the portal, the search bodies
and list calls HubSpot documents, the 10,000-result search window, incremental changes and archives,
faults, credentials."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors.errors import SourceAuthError, SourceUnavailableError
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors import hubspot as simulator
from tests.support.connectors import ConnectorRun

OBJECTS = ("contacts", "companies", "deals")
OPTIONS = {"search_rate_per_s": 100.0}  # the simulator needs no pacing; the default is HubSpot's 4/s


def sync(server: Any, tmp_path: Path, **options: Any) -> ConnectorRun:
    run = ConnectorRun.against(server, "hubspot", tmp_path, **{**OPTIONS, **options})
    run.sync()
    return run


def live(server: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Unarchived records per object, by id, as the simulated portal holds them."""
    tables = server.sandbox.vendors["hubspot"].tables
    return {kind: {r["id"]: r for r in tables[kind].records if not r["archived"]} for kind in OBJECTS}


def assert_raw_equals_portal(run: ConnectorRun, server: Any, quarantined: set[str] = frozenset()) -> None:
    """CRM objects: same ids (none missing, none repeated, archived ones gone), same updatedAt, same
    values; owners and pipeline stages: the whole lists."""
    for kind, records in live(server).items():
        rows = run.rows(kind, "id, updated_at")
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), f"{kind}: duplicated rows"
        expected = set(records) - quarantined
        assert set(ids) == expected, f"{kind}: missing {sorted(expected - set(ids))[:5]}, " \
                                     f"extra {sorted(set(ids) - expected)[:5]}"
        stale = [i for i, stamp in rows if pd.Timestamp(stamp) != pd.Timestamp(records[i]["updatedAt"])]
        assert not stale, f"{kind}: stale rows {stale[:5]}"
    deals = live(server)["deals"]
    for rid, amount, stage, closed in run.rows("deals", "id, amount, dealstage, hs_is_closed"):
        props = deals[rid]["properties"]
        assert amount == (None if props["amount"] is None else pytest.approx(float(props["amount"])))
        assert (stage, closed) == (props["dealstage"], props["hs_is_closed"] == "true")
    contacts = live(server)["contacts"]
    assert all(email == contacts[rid]["properties"]["email"] for rid, email in run.rows("contacts", "id, email"))
    portal = server.sandbox.vendors["hubspot"]
    assert sorted(run.rows("owners", "id, archived")) == sorted((o["id"], o["archived"]) for o in portal.owners)
    stages = {(p["id"], s["id"]): float(s["metadata"]["probability"]) for p in portal.pipelines for s in p["stages"]}
    assert dict(((p, s), prob) for p, s, prob in run.rows("pipelines", "pipeline_id, stage_id, probability")) == stages


def test_full_sync_equals_the_portal(small_company: Company, serve: Callable[..., Any], tmp_path: Path) -> None:
    server = serve(small_company, ["hubspot"])
    run = sync(server, tmp_path)
    assert_raw_equals_portal(run, server)
    assert run.count("contacts") > 600 and run.count("owners") > 0
    assert not run.last_context.quarantine


def test_requests_are_the_documented_ones(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                          sent: list[requests.PreparedRequest]) -> None:
    server = serve(small_company, ["hubspot"])
    sync(server, tmp_path)
    base = urlparse(server.url("hubspot")).path
    token = server.sandbox.vendors["hubspot"].credentials()["private_app_token"]
    assert all(r.headers["Authorization"] == f"Bearer {token}" for r in sent)

    searches = [(urlparse(r.url).path, json.loads(r.body)) for r in sent if r.method == "POST"]
    for kind in OBJECTS:
        bodies = [body for path, body in searches if path == f"{base}/crm/v3/objects/{kind}/search"]
        prop = simulator.MODIFIED_PROP[kind]
        assert bodies[0] == {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": "946684800000"}]}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": sorted(p[0] for p in simulator.PROPERTIES[kind]), "limit": 200, "after": "0"}
        assert [b["after"] for b in bodies] == [str(200 * i) for i in range(len(bodies))]
    assert len([b for p, b in searches if p.endswith("/contacts/search")]) == 4  # 695 contacts, 200 a page

    gets = [(urlparse(r.url).path, parse_qs(urlparse(r.url).query)) for r in sent if r.method == "GET"]
    for kind in OBJECTS:
        assert (f"{base}/crm/v3/properties/{kind}", {}) in gets
        assert (f"{base}/crm/v3/objects/{kind}", {"archived": ["true"], "limit": ["100"],
                                                   "properties": [simulator.MODIFIED_PROP[kind]]}) in gets
    assert (f"{base}/crm/v3/owners/", {"archived": ["false"], "limit": ["100"]}) in gets
    assert (f"{base}/crm/v3/owners/", {"archived": ["true"], "limit": ["100"]}) in gets
    assert (f"{base}/crm/v3/pipelines/deals", {}) in gets


def test_search_window_moves_before_the_result_cap(small_company: Company, serve: Callable[..., Any],
                                                   tmp_path: Path, sent: list[requests.PreparedRequest],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cap of 400 results per search (HubSpot: 10,000), all 695 contacts still load: before the
    next page would pass the cap, a new search starts at the last modified time seen."""
    monkeypatch.setattr(simulator, "SEARCH_CAP", 400)
    server = serve(small_company, ["hubspot"])
    run = sync(server, tmp_path, search_cap=400)
    assert_raw_equals_portal(run, server)
    bodies = [json.loads(r.body) for r in sent if r.url.endswith("/contacts/search")]
    assert max(int(b["after"]) for b in bodies) + 200 <= 400
    starts = sorted({int(b["filterGroups"][0]["filters"][0]["value"]) for b in bodies})
    assert len(starts) >= 2 and starts[0] == 946684800000


def test_incremental_sync_gets_creates_updates_and_archives(fresh_company: Company, serve: Callable[..., Any],
                                                            tmp_path: Path, sent: list[requests.PreparedRequest]
                                                            ) -> None:
    server = serve(fresh_company, ["hubspot"])
    run = sync(server, tmp_path)
    full_requests, full_rows = len(sent), sum(_loaded(run).values())
    before = live(server)
    server.sandbox.advance(3 * 24 * 60)
    after = live(server)
    assert set(after["contacts"]) - set(before["contacts"]), "the advance created no contact"
    assert set(before["contacts"]) - set(after["contacts"]), "the advance archived no contact"
    assert any(r["updatedAt"] != before["deals"][i]["updatedAt"] for i, r in after["deals"].items()
               if i in before["deals"]), "the advance updated no deal"
    sent.clear()
    run.sync()
    assert_raw_equals_portal(run, server)
    incremental_requests, incremental_rows = len(sent), sum(_loaded(run).values())
    print(f"hubspot small: full sync {full_requests} requests, {full_rows} rows; "
          f"incremental {incremental_requests} requests, {incremental_rows} rows {_loaded(run)}")
    assert incremental_requests < full_requests and incremental_rows < full_rows / 5


def _loaded(run: ConnectorRun) -> dict[str, int]:
    counts = run.pipeline().last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


FAULTS = [
    pytest.param("throttle", 1, {}, {}, id="throttle-429-TEN_SECONDLY_ROLLING"),
    pytest.param("throttle", 2, {"policyName": "SECONDLY"}, {}, id="throttle-429-SECONDLY"),
    pytest.param("server_error", 3, {}, {}, id="server_error-burst"),
    pytest.param("slow", 1, {"delay_s": 3}, {}, id="slow"),
    pytest.param("reset", 1, {}, {}, id="reset"),
    pytest.param("malformed_json", 1, {}, {}, id="malformed_json"),
    pytest.param("truncated_page", 1, {}, {}, id="truncated_page"),
    pytest.param("token_expiry", 1, {}, {"auth": "oauth"}, id="token_expiry-oauth"),
    pytest.param("schema_drift", None, {"change": "new_field", "field": "propertiesWithHistoryCount"}, {},
                 id="drift-new_field"),
    pytest.param("duplicate_record", None, {}, {}, id="duplicate_record"),
]


@pytest.mark.parametrize(("kind", "count", "params", "options"), FAULTS)
def test_faults_in_search_lose_and_repeat_nothing(small_company: Company, serve: Callable[..., Any],
                                                  tmp_path: Path, kind: str, count: int | None,
                                                  params: dict[str, Any], options: dict[str, Any]) -> None:
    server = serve(small_company, ["hubspot"])
    fault = server.faults.add("hubspot", kind, "*/search", count=count, **params)
    run = sync(server, tmp_path, **options)
    assert fault.hits >= 1
    assert_raw_equals_portal(run, server)
    assert not run.last_context.quarantine
    if kind == "schema_drift":
        assert {v for (v,) in run.rows("deals", "properties_with_history_count")} == {"drift"}


@pytest.mark.parametrize(("kind", "endpoint", "count"), [
    ("throttle", "*/crm/v3/owners/", 2),
    ("server_error", "*/crm/v3/objects/contacts", 3),
    ("truncated_page", "*/crm/v3/properties/deals", 1),
])
def test_faults_in_list_calls_lose_nothing(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                           kind: str, endpoint: str, count: int) -> None:
    """The list endpoints go through dlt's RESTClient on the same throttle-aware session."""
    server = serve(small_company, ["hubspot"])
    fault = server.faults.add("hubspot", kind, endpoint, count=count)
    run = sync(server, tmp_path)
    assert fault.hits == count
    assert_raw_equals_portal(run, server)


def test_uncoercible_type_change_is_quarantined_with_its_reason(small_company: Company, serve: Callable[..., Any],
                                                                 tmp_path: Path) -> None:
    server = serve(small_company, ["hubspot"])
    server.faults.add("hubspot", "schema_drift", "*/deals/search", count=None, change="changed_type",
                      field="createdAt")
    run = sync(server, tmp_path)
    quarantine = run.last_context.quarantine
    assert {q["stream"] for q in quarantine} == {"deals"}
    assert all("created_at: expected timestamp, got {'value':" in q["reason"] for q in quarantine)
    keys = {q["record_key"].strip('[]"') for q in quarantine}
    assert keys == set(live(server)["deals"]) and run.count("companies") == len(live(server)["companies"])


def test_daily_quota_stops_the_sync_at_once(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                            source_error: Callable[[BaseException], Any]) -> None:
    server = serve(small_company, ["hubspot"])
    server.faults.add("hubspot", "throttle", "*/search", count=1, policyName="DAILY")
    run = ConnectorRun.against(server, "hubspot", tmp_path, **OPTIONS)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError) and "gave up after 1 attempts" in str(error)
    assert "You have reached your daily limit." in str(error) and "daily API quota spent" in str(error)


def test_persistent_outage_fails_clearly_and_keeps_the_cursor(small_company: Company, serve: Callable[..., Any],
                                                              tmp_path: Path,
                                                              source_error: Callable[[BaseException], Any]) -> None:
    server = serve(small_company, ["hubspot"])
    server.faults.add("hubspot", "server_error", "*/search", count=None, status=502, message="Bad Gateway")
    run = ConnectorRun.against(server, "hubspot", tmp_path, **OPTIONS)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError)
    assert "hubspot: gave up after 6 attempts" in str(error) and "Bad Gateway (INTERNAL_ERROR)" in str(error)
    server.faults.clear()
    run.sync()
    assert_raw_equals_portal(run, server)


@pytest.mark.parametrize(("options", "key", "words"), [
    ({}, "private_app_token", "Authentication credentials not found"),
    ({"auth": "oauth"}, "refresh_token", "BAD_REFRESH_TOKEN"),
])
def test_bad_credentials_fail_fast_naming_the_fix(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                                  source_error: Callable[[BaseException], Any],
                                                  options: dict[str, Any], key: str, words: str) -> None:
    server = serve(small_company, ["hubspot"])
    run = ConnectorRun.against(server, "hubspot", tmp_path, **OPTIONS, **options)
    run.credentials[key] = "pat-na1-revoked"
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError)
    assert "hubspot: authentication failed" in str(error) and words in str(error)
    assert "re-authorize hubspot" in str(error)
