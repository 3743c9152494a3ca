"""Salesforce connector against the simulator over real HTTP: full sync equals the org, the SOQL and
headers Salesforce documents, incremental changes and deletes, faults, credentials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import _auth
from sophia_lib.connectors._http import VendorSession
from sophia_lib.connectors.errors import SourceAuthError, SourceUnavailableError
from sophia_lib.connectors.salesforce import SOBJECTS
from sophia_lib.sandbox.company import Company
from tests.support.connectors import ConnectorRun

DAYS = 3 * 24 * 60
OPTIONS = {"batch_size": 200}  # Salesforce's smallest page, so the small org pages


def sync(server: Any, tmp_path: Path, **options: Any) -> ConnectorRun:
    run = ConnectorRun.against(server, "salesforce", tmp_path, **{**OPTIONS, **options})
    run.sync()
    return run


def truth(server: Any) -> dict[str, pd.DataFrame]:
    """Live records per stream, as the simulated org holds them."""
    objects = server.sandbox.vendors["salesforce"].objects
    return {table: objects[name].frame[~objects[name].frame["_deleted"]] for table, name in SOBJECTS.items()}


def assert_raw_equals_org(run: ConnectorRun, server: Any, quarantined: set[str] = frozenset()) -> None:
    """Every stream: same ids (none missing, none repeated, deleted ones gone), same SystemModstamp
    (so no update was missed), and a few business values."""
    for table, frame in truth(server).items():
        rows = run.rows(table, "id, system_modstamp")
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), f"{table}: duplicated rows"
        expected = set(frame["Id"]) - quarantined
        assert set(ids) == expected, f"{table}: missing {sorted(expected - set(ids))[:5]}, " \
                                     f"extra {sorted(set(ids) - expected)[:5]}"
        stamps = dict(zip(frame["Id"], frame["SystemModstamp"], strict=True))
        stale = [i for i, stamp in rows if pd.Timestamp(stamp) != stamps[i]]
        assert not stale, f"{table}: stale rows {stale[:5]}"
    opps = truth(server)["opportunity"].set_index("Id")
    for rid, amount, stage, close, won in run.rows("opportunity", "id, amount, stage_name, close_date, is_won"):
        want = opps.loc[rid]
        assert (pd.isna(amount) and pd.isna(want["Amount"])) or amount == pytest.approx(want["Amount"])
        assert (stage, str(close), won) == (want["StageName"], want["CloseDate"], bool(want["IsWon"]))
    accounts = truth(server)["account"].set_index("Id")["Name"]
    assert {rid: name for rid, name in run.rows("account", "id, name")} == accounts.to_dict()


def test_full_sync_equals_the_org(small_company: Company, serve: Callable[..., Any], tmp_path: Path) -> None:
    server = serve(small_company, ["salesforce"])
    run = sync(server, tmp_path)
    assert_raw_equals_org(run, server)
    assert run.count("opportunity_history") > 1000 and run.count("user") > 0
    assert not run.last_context.quarantine


def test_requests_are_the_documented_ones(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                          sent: list[requests.PreparedRequest],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tokens: list[dict[str, Any]] = []
    post = _auth.requests.post

    def record(url: str, data: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        tokens.append({"url": url, "data": dict(data), "headers": dict(headers or {})})
        return post(url, data=data, headers=headers, **kwargs)

    monkeypatch.setattr(_auth.requests, "post", record)
    server = serve(small_company, ["salesforce"])
    sync(server, tmp_path)
    base = urlparse(server.url("salesforce")).path

    creds = server.sandbox.vendors["salesforce"].credentials()
    assert [t["url"] for t in tokens] == [server.url("salesforce") + "/services/oauth2/token"]
    assert tokens[0]["data"] == {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"],
                                 "client_id": creds["client_id"], "client_secret": creds["client_secret"]}

    fields = {name: [f.name for f in obj.fields] for name, obj in server.sandbox.vendors["salesforce"].objects.items()}
    for request in sent:
        assert request.headers["Authorization"].startswith("Bearer ")
        assert request.method == "GET"
    described = [urlparse(r.url).path for r in sent if r.url.split("?")[0].endswith("/describe")]
    assert described == [f"{base}/services/data/v62.0/sobjects/{o}/describe" for o in SOBJECTS.values()]
    queries = {}
    for request in sent:
        url = urlparse(request.url)
        if "q" in parse_qs(url.query):
            queries[url.path.rsplit("/", 1)[-1], parse_qs(url.query)["q"][0].split(" FROM ")[1].split()[0]] = (
                parse_qs(url.query)["q"][0], request)
    assert set(queries) == {("query", "User")} | {("queryAll", o) for o in SOBJECTS.values() if o != "User"}
    for (_endpoint, sobject), (soql, request) in queries.items():
        start = "2024-01-01T00:00:00Z" if sobject in ("Task", "Event", "OpportunityHistory") else "2000-01-01T00:00:00Z"
        assert soql == f"SELECT {', '.join(fields[sobject])} FROM {sobject} WHERE SystemModstamp >= {start} " \
                      "ORDER BY SystemModstamp ASC, Id ASC"
        assert request.headers["Sforce-Query-Options"] == "batchSize=200"
    more = [urlparse(r.url) for r in sent if "/queryAll/" in r.url]
    assert more and all(not m.query and m.path.startswith(f"{base}/services/data/v62.0/queryAll/01g") for m in more)


def test_incremental_sync_gets_creates_updates_and_deletes(fresh_company: Company, serve: Callable[..., Any],
                                                           tmp_path: Path, sent: list[requests.PreparedRequest]
                                                           ) -> None:
    server = serve(fresh_company, ["salesforce"])
    run = sync(server, tmp_path)
    full_requests, full_rows = len(sent), sum(_loaded(run).values())
    before = {table: set(frame["Id"]) for table, frame in truth(server).items()}
    stamps_before = dict(zip(truth(server)["opportunity"]["Id"], truth(server)["opportunity"]["SystemModstamp"],
                             strict=True))
    server.sandbox.advance(DAYS)
    after = {table: set(frame["Id"]) for table, frame in truth(server).items()}
    assert any(after[t] - before[t] for t in after), "the advance created nothing"
    assert any(before[t] - after[t] for t in after), "the advance deleted nothing"
    opps = truth(server)["opportunity"]
    assert any(stamps_before.get(i) not in (None, s) for i, s in zip(opps["Id"], opps["SystemModstamp"],
                                                                      strict=True)), "no opportunity was updated"
    sent.clear()
    run.sync()
    assert_raw_equals_org(run, server)
    incremental_requests, incremental_rows = len(sent), sum(_loaded(run).values())
    print(f"salesforce small: full sync {full_requests} requests, {full_rows} rows; "
          f"incremental {incremental_requests} requests, {incremental_rows} rows")
    assert incremental_requests < full_requests and incremental_rows < full_rows / 10


def _loaded(run: ConnectorRun) -> dict[str, int]:
    counts = run.pipeline().last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


FAULTS = [
    pytest.param("throttle", 1, {}, id="throttle-403-REQUEST_LIMIT_EXCEEDED"),
    pytest.param("server_error", 3, {}, id="server_error-burst"),
    pytest.param("slow", 1, {"delay_s": 3}, id="slow"),
    pytest.param("reset", 1, {}, id="reset"),
    pytest.param("malformed_json", 1, {}, id="malformed_json"),
    pytest.param("truncated_page", 1, {}, id="truncated_page"),
    pytest.param("token_expiry", 1, {}, id="token_expiry"),
    pytest.param("schema_drift", 1, {"change": "new_field", "field": "Sophia_New__c"}, id="drift-new_field"),
    pytest.param("schema_drift", 1, {"change": "changed_type", "field": "Amount"}, id="drift-coercible_type"),
    pytest.param("duplicate_record", 2, {}, id="duplicate_record"),
]


@pytest.mark.parametrize(("kind", "count", "params"), FAULTS)
def test_faults_mid_pagination_lose_and_repeat_nothing(small_company: Company, serve: Callable[..., Any],
                                                       tmp_path: Path, kind: str, count: int,
                                                       params: dict[str, Any]) -> None:
    server = serve(small_company, ["salesforce"])
    if kind == "schema_drift":  # every page, so whichever object pages first: a new field / Amount as text
        fault = server.faults.add("salesforce", kind, "*", count=None, **params)
    else:  # a page behind a nextRecordsUrl: the fault lands mid-pagination
        fault = server.faults.add("salesforce", kind, "*/query*/*", count=count, **params)
    run = sync(server, tmp_path)
    assert fault.hits >= 1
    assert_raw_equals_org(run, server)
    assert not run.last_context.quarantine
    if params.get("change") == "new_field":
        assert any(v == "drift" for (v,) in run.rows("contact", "sophia_new_c"))


def test_expired_query_locator_resumes_from_the_last_stamp(small_company: Company, serve: Callable[..., Any],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Salesforce forgets idle query cursors (``INVALID_QUERY_LOCATOR``): the read starts a new query at the
    last SystemModstamp seen instead of failing or starting over."""
    server = serve(small_company, ["salesforce"])
    org = server.sandbox.vendors["salesforce"]
    original, expired, queries = VendorSession.send, [], []

    def send(self: VendorSession, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if "/queryAll/" in request.url and not expired:
            org.expire_query_locators()
            expired.append(request.url)
        if "q=" in request.url:
            queries.append(parse_qs(urlparse(request.url).query)["q"][0])
        return original(self, request, **kwargs)

    monkeypatch.setattr(VendorSession, "send", send)
    run = sync(server, tmp_path)
    assert expired
    assert_raw_equals_org(run, server)
    by_object: dict[str, list[str]] = {}
    for soql in queries:
        by_object.setdefault(soql.split(" FROM ")[1].split()[0], []).append(soql.split(" WHERE ")[1])
    restarted = [wheres for wheres in by_object.values() if len(wheres) > 1]
    assert restarted  # every object whose cursor was open at that moment queried again …
    for wheres in restarted:  # … each time from a later SystemModstamp
        stamps = [w.split(" ORDER BY ")[0] for w in wheres]
        assert stamps == sorted(set(stamps))


def test_uncoercible_type_change_is_quarantined_with_its_reason(small_company: Company, serve: Callable[..., Any],
                                                                 tmp_path: Path) -> None:
    """A declared text column arriving as an object cannot be coerced: the rows go to quarantine with the
    reason (never silently dropped, never loaded half-typed); every other row loads."""
    server = serve(small_company, ["salesforce"])
    server.faults.add("salesforce", "schema_drift", "*/queryAll/*", count=None, change="changed_type", field="Name")
    run = sync(server, tmp_path)
    quarantine = run.last_context.quarantine
    assert {q["stream"] for q in quarantine} == {"contact", "opportunity"}  # the objects with a Name that page
    assert all("name: expected text, got {'value':" in q["reason"] for q in quarantine)
    keys = {q["record_key"].strip('[]"') for q in quarantine}
    assert len(keys) == len(quarantine)
    assert_raw_equals_org(run, server, quarantined=keys)


def test_persistent_outage_fails_clearly_and_keeps_the_cursor(small_company: Company, serve: Callable[..., Any],
                                                              tmp_path: Path,
                                                              source_error: Callable[[BaseException], Any]) -> None:
    server = serve(small_company, ["salesforce"])
    server.faults.add("salesforce", "server_error", "*/queryAll/*", count=None)
    run = ConnectorRun.against(server, "salesforce", tmp_path, **OPTIONS)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError)
    assert "salesforce" in str(failed.value) and "service unavailable (SERVER_UNAVAILABLE)" in str(error)
    server.faults.clear()
    run.sync()
    assert_raw_equals_org(run, server)


def test_bad_refresh_token_fails_fast_naming_the_fix(small_company: Company, serve: Callable[..., Any],
                                                     tmp_path: Path, source_error: Callable[[BaseException], Any]
                                                     ) -> None:
    server = serve(small_company, ["salesforce"])
    run = ConnectorRun.against(server, "salesforce", tmp_path, **OPTIONS)
    run.credentials["refresh_token"] = "5Aep861-revoked"
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError)
    assert "salesforce: authentication failed" in str(error) and "invalid_grant" in str(error)
    assert "re-authorize salesforce" in str(error)


def test_rotated_refresh_token_is_saved_and_used(small_company: Company, serve: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    server = serve(small_company, ["salesforce"])
    server.sandbox.vendors["salesforce"].tokens.rotate_refresh = True
    run = sync(server, tmp_path)
    rotated = run.saved_secrets["refresh_token"]
    assert rotated != run.credentials["refresh_token"]
    run.sync()  # the old token is dead now: this works only with the saved one
    assert run.saved_secrets["refresh_token"] != rotated
    assert_raw_equals_org(run, server)
