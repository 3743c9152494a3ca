"""Factors.ai connector against the Factors simulator over real HTTP: journeys per domain, faults, credentials."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors.errors import SourceAuthError, SourceConfigError, SourceUnavailableError
from sophia_lib.connectors.factors import domains
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from tests.connectors.test_linear import capture, requests_sent, source_error  # noqa: F401 - shared fixture
from tests.support.connectors import ConnectorRun

START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def configured(company: Company) -> list[str]:
    """The account domains Factors knows, as a marketing team would list them (some with www./scheme)."""
    names = company.presence_of("account", "factors")["system_id"].astype(str).tolist()
    return [f"https://www.{d}/" if i % 7 == 0 else d for i, d in enumerate(names)]


def against(server: SandboxServer, folder: Path, **options: Any) -> ConnectorRun:
    return ConnectorRun.against(server, "factors", folder, domains=configured(server.sandbox.company), **options)


def truth(server: SandboxServer) -> dict[str, str]:
    """event_id → account domain of every activity since the sync's start date."""
    journeys = server.sandbox.vendors["factors"].journeys
    out = {}
    for domain in domains({"domains": configured(server.sandbox.company)}):
        for activity in journeys[domain].activities:
            if activity["timestamp"] >= START:
                out[activity["event_id"]] = domain
    return out


def assert_equals_truth(run: ConnectorRun, server: SandboxServer) -> None:
    expected = truth(server)
    got = run.rows("journey_events", "event_id, account_domain")
    assert len(got) == len({r[0] for r in got}), "duplicated rows"
    assert dict(got) == expected


def test_full_sync_equals_vendor(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    run = against(server, tmp_path)
    run.sync()
    assert_equals_truth(run, server)
    journey = server.sandbox.vendors["factors"].journeys[domains({"domains": configured(small_company)})[0]]
    activity = journey.activities[-1]
    row = dict((r[0], r[1:]) for r in run.rows("journey_events", "event_id, event_name, page_url, "
                                                                 "engagement_score, epoch(timestamp)"))
    assert row[activity["event_id"]] == (activity["event_name"], activity["properties"]["$page_url"],
                                         activity["properties"]["$engagement_score"], activity["timestamp"])
    assert not run.last_context.quarantine


def test_requests_are_factors(small_company: Company, serve: Callable[..., SandboxServer], tmp_path: Path,
                              capture: list[requests.Response]) -> None:  # noqa: F811
    server = serve(small_company, ["factors"])
    run = against(server, tmp_path)
    run.sync()
    wanted = domains({"domains": configured(small_company)})
    assert len(capture) == len(wanted)  # one call per domain, no paging (a few domains at a time, any order)
    paths = {urlparse(r.request.url).path.rsplit("/open/v1/account/", 1)[-1]: r for r in capture}
    assert set(paths) == {f"{domain}/journey" for domain in wanted}
    for response in capture:
        request = response.request
        url = urlparse(request.url)
        assert request.method == "GET"
        assert request.headers["Authorization"] == "Bearer " + run.credentials["private_token"]
        assert parse_qs(url.query) == {"from": ["2024-01-01 00:00:00.000000"]}  # `to` left to Factors' now


def test_incremental_reads_only_new_activity(fresh_company: Company, serve: Callable[..., SandboxServer],
                                             tmp_path: Path, capture: list[requests.Response]) -> None:  # noqa: F811
    server = serve(fresh_company, ["factors"])
    run = against(server, tmp_path)
    started = time.monotonic()
    run.sync()
    full = (requests_sent(run), run.count("journey_events"), time.monotonic() - started)
    changes = server.sandbox.advance(3 * 1440)["touchpoints"]
    assert changes["create"] > 0
    capture.clear()
    started = time.monotonic()
    run.sync()
    records = sum(len(a["user_activities"]) for r in capture for a in r.json()["account_timeline"])
    print(f"\nfactors full: {full[0]} requests, {full[1]} rows, {full[2]:.2f}s; incremental: {requests_sent(run)} "
          f"requests, {records} records, {time.monotonic() - started:.2f}s; new touchpoints {changes['create']}")
    assert_equals_truth(run, server)
    assert records < full[1]
    froms = {parse_qs(urlparse(r.request.url).query)["from"][0] for r in capture}
    assert len(froms) > 1 and min(froms) > "2024-01-01"  # each domain from its own cursor minus the lag


def test_domain_added_later_gets_its_history(small_company: Company, serve: Callable[..., SandboxServer],
                                             tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    run = against(server, tmp_path)
    everything = run.options["domains"]
    run.options["domains"] = everything[:10]
    run.sync()
    run.options["domains"] = everything
    run.sync()
    assert_equals_truth(run, server)


FAULTS = [
    ("throttle", {"count": 2}),
    ("server_error", {"count": 3}),
    ("slow", {"count": 1, "delay_s": 3}),
    ("reset", {"count": 2}),
    ("malformed_json", {"count": 2}),
    ("truncated_page", {"count": 2}),
    ("schema_drift", {"count": 3, "change": "new_field", "field": "sophia_new"}),
    ("duplicate_record", {"count": 3}),
]


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_recovers(kind: str, params: dict[str, Any], small_company: Company,
                        serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    server.faults.add("factors", kind, "/open/v1/account/*/journey", **params)
    run = against(server, tmp_path)
    run.sync()
    assert_equals_truth(run, server)
    assert not server.faults.armed() and not run.last_context.quarantine
    if kind not in ("schema_drift", "duplicate_record"):
        assert run.last_context.sessions[0].retries >= 1


def test_retyped_timestamp_is_quarantined(small_company: Company, serve: Callable[..., SandboxServer],
                                          tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    server.faults.add("factors", "schema_drift", "/open/v1/account/*/journey", count=1, change="changed_type",
                      field="event_type")
    server.faults.add("factors", "schema_drift", "/open/v1/account/*/journey", count=1, change="changed_type",
                      field="timestamp")
    run = against(server, tmp_path)
    run.sync()
    quarantine = run.last_context.quarantine
    assert quarantine and all("expected" in q["reason"] for q in quarantine)
    kept = {r[0] for r in run.rows("journey_events", "event_id")}
    assert {q["record_key"].strip('[]"') for q in quarantine} | kept == set(truth(server))


def test_token_expiry_fails_clearly(small_company: Company, serve: Callable[..., SandboxServer],
                                    tmp_path: Path) -> None:
    """The private token is static: a 401 means it was revoked — stop with Factors' words, lose nothing."""
    server = serve(small_company, ["factors"])
    server.faults.add("factors", "token_expiry", "/open/v1/account/*/journey", count=1)
    run = against(server, tmp_path)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and "Invalid token" in str(error)
    run.sync()
    assert_equals_truth(run, server)


def test_persistent_outage_fails_clearly_and_keeps_cursor(fresh_company: Company,
                                                          serve: Callable[..., SandboxServer], tmp_path: Path) -> None:
    server = serve(fresh_company, ["factors"])
    run = against(server, tmp_path)
    run.sync()
    server.sandbox.advance(2 * 1440)
    server.faults.add("factors", "server_error", "/open/v1/account/*/journey", count=None, status=500,
                      message="factors backend error")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 30
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError) and "factors backend error" in str(error)
    server.faults.clear()
    run.sync()
    assert_equals_truth(run, server)


def test_unknown_domain_is_skipped(small_company: Company, serve: Callable[..., SandboxServer],
                                   tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    run = against(server, tmp_path)
    run.options["domains"] = ["no-such-account.example", *run.options["domains"]]
    run.sync()
    assert_equals_truth(run, server)


def test_bad_token_and_missing_domains_fail_fast(small_company: Company, serve: Callable[..., SandboxServer],
                                                 tmp_path: Path) -> None:
    server = serve(small_company, ["factors"])
    run = against(server, tmp_path / "a")
    run.credentials["private_token"] = "wrong"
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    assert time.monotonic() - started < 10
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError) and error.source == "factors" and "re-authorize factors" in str(error.fix)
    empty = ConnectorRun.against(server, "factors", tmp_path / "b")
    with pytest.raises(SourceConfigError, match="sources.factors.options.domains"):
        empty.sync()
