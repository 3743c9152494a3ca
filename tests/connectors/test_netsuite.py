"""NetSuite connector against the simulator over real HTTP: full sync equals the account, the SuiteQL
requests NetSuite documents, the 100,000-row cap windows, incremental changes and deletes, faults,
credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sophia_lib.connectors import _auth, connector
from sophia_lib.connectors.errors import SourceAuthError, SourceConfigError, SourceUnavailableError
from sophia_lib.connectors.netsuite import base_url
from sophia_lib.sandbox.company import Company
from tests.support.connectors import ConnectorRun

TZ = "America/Los_Angeles"
OPTIONS = {"page_size": 100}  # so the small account pages (NetSuite's maximum and default is 1000)


def sync(server: Any, tmp_path: Path, **options: Any) -> ConnectorRun:
    run = ConnectorRun.against(server, "netsuite", tmp_path, **{**OPTIONS, **options})
    run.sync()
    return run


def tables(server: Any) -> dict[str, pd.DataFrame]:
    return {name: table.frame for name, table in server.sandbox.vendors["netsuite"].ns_tables.items()}


def utc(series: pd.Series) -> pd.Series:
    """The account's wall-clock datetimes as UTC (what the connector stores)."""
    return series.dt.tz_localize(TZ, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")


def assert_raw_equals_account(run: ConnectorRun, server: Any, quarantined: set[str] = frozenset()) -> None:
    """Same keys (none missing, none repeated, deleted ones gone), same lastmodifieddate, same amounts."""
    truth = tables(server)
    for name in ("customer", "transaction", "budget"):
        frame = truth[name]
        rows = run.rows(name, "id, lastmodifieddate")
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), f"{name}: duplicated rows"
        expected = {str(i) for i in frame["id"]} - quarantined
        assert set(ids) == expected, f"{name}: missing {sorted(expected - set(ids))[:5]}, " \
                                     f"extra {sorted(set(ids) - expected)[:5]}"
        stamps = dict(zip(frame["id"].astype(str), utc(frame["lastmodifieddate"]), strict=True))
        stale = [i for i, stamp in rows if pd.Timestamp(stamp) != stamps[i]]
        assert not stale, f"{name}: stale rows {stale[:5]}"
    lines = truth["transactionline"]
    raw_lines = run.rows("transactionline", "transaction_id, line_id, netamount, mainline")
    keys = [(t, i) for t, i, _, _ in raw_lines]
    assert len(keys) == len(set(keys)), "transactionline: duplicated rows"
    expected_lines = {(str(t), str(i)) for t, i in zip(lines["transaction"], lines["id"], strict=True)
                      if str(t) not in quarantined}
    assert set(keys) == expected_lines, f"transactionline: missing {sorted(expected_lines - set(keys))[:5]}, " \
                                        f"extra {sorted(set(keys) - expected_lines)[:5]}"
    amounts = {(str(t), str(i)): a for t, i, a in zip(lines["transaction"], lines["id"], lines["netamount"],
                                                        strict=True)}
    assert all(a == pytest.approx(amounts[t, i]) for t, i, a, _ in raw_lines)
    invoices = truth["transaction"].set_index(truth["transaction"]["id"].astype(str))
    for rid, tranid, total, trandate, opp in run.rows("transaction", "id, tranid, foreigntotal, trandate, "
                                                                     "custbody_sf_opportunity"):
        want = invoices.loc[rid]
        assert (tranid, trandate) == (want["tranid"], want["trandate"].date())
        assert total == pytest.approx(want["foreigntotal"]) and opp == want["custbody_sf_opportunity"]


def test_full_sync_equals_the_account(small_company: Company, serve: Callable[..., Any], tmp_path: Path) -> None:
    server = serve(small_company, ["netsuite"])
    run = sync(server, tmp_path)
    assert_raw_equals_account(run, server)
    assert run.count("budget") > 1000 and run.count("transactionline") > run.count("transaction")
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
    server = serve(small_company, ["netsuite"])
    sync(server, tmp_path)
    creds = server.sandbox.vendors["netsuite"].credentials()

    assert [t["url"] for t in tokens] == [server.url("netsuite") + "/services/rest/auth/oauth2/v1/token"]
    assert tokens[0]["data"] == {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]}
    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    assert tokens[0]["headers"] == {"Authorization": f"Basic {basic}"}

    queries: dict[str, str] = {}
    for request in sent:
        url = urlparse(request.url)
        assert (request.method, url.path) == ("POST", urlparse(server.url("netsuite")).path
                                              + "/services/rest/query/v1/suiteql")
        assert request.headers["Prefer"] == "transient" and request.headers["Content-Type"] == "application/json"
        assert request.headers["Authorization"].startswith("Bearer ")
        params = parse_qs(url.query)
        assert params["limit"] == ["100"] and int(params["offset"][0]) % 100 == 0
        query = json.loads(request.body)["q"]
        table = query.split(" FROM ")[1].split()[0]
        if table == "deletedrecord":
            table += ":" + query.split("recordtype = '")[1].split("'")[0]
        queries.setdefault(table, query)
    lookups = {"department", "account", "accountingperiod"}
    assert set(queries) == {"customer", "transaction", "transactionline", "budget", "deletedrecord:customer",
                            "deletedrecord:invoice", "deletedrecord:budget",
                            *lookups, *(f"deletedrecord:{name}" for name in lookups)}
    since = "TO_DATE('1999-12-31 16:00:00', 'YYYY-MM-DD HH24:MI:SS')"  # 2000-01-01 UTC, Pacific time
    dt = "'YYYY-MM-DD HH24:MI:SS'"
    assert queries["customer"] == (
        "SELECT id, entityid, companyname, email, phone, url, isperson, isinactive, "
        "TO_CHAR(firstsaledate, 'YYYY-MM-DD') AS firstsaledate, currency, subsidiary, terms, "
        f"TO_CHAR(datecreated, {dt}) AS datecreated, TO_CHAR(lastmodifieddate, {dt}) AS lastmodifieddate "
        f"FROM customer WHERE lastmodifieddate >= {since} ORDER BY lastmodifieddate, id")
    assert queries["transaction"].endswith(
        ", custbody_sf_opportunity FROM transaction WHERE type IN ('CustInvc') AND lastmodifieddate >= "
        "TO_DATE('2023-12-31 16:00:00', 'YYYY-MM-DD HH24:MI:SS') ORDER BY lastmodifieddate, id")
    assert queries["deletedrecord:customer"] == (
        f"SELECT recordid AS id, TO_CHAR(deleteddate, {dt}) AS lastmodifieddate FROM deletedrecord "
        f"WHERE recordtype = 'customer' AND deleteddate >= {since} ORDER BY deleteddate, recordid")
    assert " FROM transactionline WHERE transaction IN (" in queries["transactionline"]
    assert queries["transactionline"].endswith(") ORDER BY transaction, id")


def test_result_cap_is_windowed_by_keyset(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                          sent: list[requests.PreparedRequest]) -> None:
    """With a cap of 250 rows per query (NetSuite: 100,000), every table still loads whole: before the
    offset passes the cap, a new query starts after the last (lastmodifieddate, id) seen."""
    server = serve(small_company, ["netsuite"])
    server.sandbox.vendors["netsuite"].max_results = 250
    run = sync(server, tmp_path, max_results=250)
    assert_raw_equals_account(run, server)
    offsets = [int(parse_qs(urlparse(r.url).query)["offset"][0]) for r in sent]
    assert max(offsets) < 250
    windows = [json.loads(r.body)["q"] for r in sent if "OR (lastmodifieddate = TO_DATE(" in r.body.decode()]
    assert sum("FROM budget" in q for q in windows) >= 4  # 1015 budgets / 200 rows per window


def _change_the_account(company: Company) -> dict[str, str]:
    """Deletes a customer, an invoice, an invoice line and a budget; adds an invoice with two lines. Stamped
    an hour after ``now``; returns the NetSuite ids touched."""
    at = company.now + pd.Timedelta(hours=1)
    presence = company["presence"]
    customer = presence[(presence["entity"] == "account") & (presence["system"] == "netsuite")
                        & presence["deleted_at"].isna()].index[-1]
    invoices, lines, budgets = company["invoices"], company["invoice_lines"], company["budgets"]
    dead_invoice, edited_invoice, template = invoices.index[-1], invoices.index[-2], invoices.index[-3]
    dead_line = lines[lines["invoice_id"] == invoices.loc[edited_invoice, "invoice_id"]].index[-1]
    dead_budget = budgets.index[0]
    for frame, row in ((presence, customer), (invoices, dead_invoice), (lines, dead_line), (budgets, dead_budget)):
        frame.loc[row, ["updated_at", "deleted_at"]] = at
    new = invoices.loc[[template]].copy()
    new_id = str(max(int(s) for s in invoices["system_id"]) + 1)
    new[["invoice_id", "system_id", "tran_id"]] = ["inv_new", new_id, "INV-NEW"]
    new[["created_at", "updated_at"]] = at
    company.tables["invoices"] = pd.concat([invoices, new])
    new_lines = lines[lines["invoice_id"] == invoices.loc[template, "invoice_id"]].head(2).copy()
    new_lines["invoice_id"], new_lines["line_id"] = "inv_new", ["inl_new1", "inl_new2"]
    new_lines[["created_at", "updated_at"]] = at
    company.tables["invoice_lines"] = pd.concat([lines, new_lines])
    return {"customer": presence.loc[customer, "system_id"], "invoice": invoices.loc[dead_invoice, "system_id"],
            "edited": invoices.loc[edited_invoice, "system_id"], "budget": budgets.loc[dead_budget, "system_id"],
            "new": new_id}


def test_incremental_sync_gets_creates_updates_and_deletes(fresh_company: Company, serve: Callable[..., Any],
                                                           tmp_path: Path, sent: list[requests.PreparedRequest]
                                                           ) -> None:
    server = serve(fresh_company, ["netsuite"])
    run = sync(server, tmp_path)
    full_requests, full_rows = len(sent), sum(_loaded(run).values())
    lines_before = run.count("transactionline")
    touched = _change_the_account(fresh_company)
    server.sandbox.advance(3 * 24 * 60)  # re-renders, and the simulator's own invoice updates
    sent.clear()
    run.sync()
    assert_raw_equals_account(run, server)
    assert not run.last_context.quarantine
    ids = {name: set(run.keys(name)) for name in ("customer", "transaction", "budget")}
    assert touched["customer"] not in ids["customer"] and touched["budget"] not in ids["budget"]
    assert touched["invoice"] not in ids["transaction"] and touched["new"] in ids["transaction"]
    raw_lines = run.rows("transactionline", "transaction_id")
    assert not [t for (t,) in raw_lines if t == touched["invoice"]]
    assert sum(t == touched["new"] for (t,) in raw_lines) == 3  # the header line and two item lines
    assert run.count("transactionline") != lines_before
    incremental_requests, incremental_rows = len(sent), sum(_loaded(run).values())
    print(f"netsuite small: full sync {full_requests} requests, {full_rows} rows; "
          f"incremental {incremental_requests} requests, {incremental_rows} rows {_loaded(run)}")
    assert incremental_requests < full_requests and incremental_rows < full_rows / 10


def _loaded(run: ConnectorRun) -> dict[str, int]:
    counts = run.pipeline().last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


FAULTS = [
    pytest.param("throttle", 1, {}, id="throttle-429-CONCURRENCY_LIMIT_EXCEEDED"),
    pytest.param("server_error", 3, {}, id="server_error-burst"),
    pytest.param("slow", 1, {"delay_s": 3}, id="slow"),
    pytest.param("reset", 1, {}, id="reset"),
    pytest.param("malformed_json", 1, {}, id="malformed_json"),
    pytest.param("truncated_page", 1, {}, id="truncated_page"),
    pytest.param("token_expiry", 1, {}, id="token_expiry"),
    pytest.param("schema_drift", None, {"change": "new_field", "field": "custentity_new"}, id="drift-new_field"),
    pytest.param("duplicate_record", None, {}, id="duplicate_record"),
]


@pytest.mark.parametrize(("kind", "count", "params"), FAULTS)
def test_faults_lose_and_repeat_nothing(small_company: Company, serve: Callable[..., Any], tmp_path: Path,
                                        kind: str, count: int | None, params: dict[str, Any]) -> None:
    server = serve(small_company, ["netsuite"])
    fault = server.faults.add("netsuite", kind, "*/suiteql", count=count, **params)
    run = sync(server, tmp_path)
    assert fault.hits >= 1
    assert_raw_equals_account(run, server)
    assert not run.last_context.quarantine
    if kind == "schema_drift":
        assert {v for (v,) in run.rows("budget", "custentity_new")} == {"drift"}


def test_uncoercible_type_change_is_quarantined_with_its_reason(small_company: Company, serve: Callable[..., Any],
                                                                 tmp_path: Path) -> None:
    server = serve(small_company, ["netsuite"])
    server.faults.add("netsuite", "schema_drift", "*/suiteql", count=None, change="changed_type",
                      field="foreigntotal")
    run = sync(server, tmp_path)
    quarantine = run.last_context.quarantine
    assert {q["stream"] for q in quarantine} == {"transaction"}
    assert all("foreigntotal: expected double, got {'value':" in q["reason"] for q in quarantine)
    keys = {q["record_key"].strip('[]"') for q in quarantine}
    assert len(keys) == len(quarantine) == len(tables(server)["transaction"])
    assert run.count("customer") == len(tables(server)["customer"])


def test_persistent_outage_fails_clearly_and_keeps_the_cursor(small_company: Company, serve: Callable[..., Any],
                                                              tmp_path: Path,
                                                              source_error: Callable[[BaseException], Any]) -> None:
    server = serve(small_company, ["netsuite"])
    server.faults.add("netsuite", "server_error", "*/suiteql", count=None, status=500, message="database busy")
    run = ConnectorRun.against(server, "netsuite", tmp_path, **OPTIONS)
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceUnavailableError)
    assert "netsuite: gave up after 6 attempts" in str(error)
    assert "An unexpected error occurred: database busy (UNEXPECTED_ERROR)" in str(failed.value)
    server.faults.clear()
    run.sync()
    assert_raw_equals_account(run, server)


def test_bad_refresh_token_fails_fast_naming_the_fix(small_company: Company, serve: Callable[..., Any],
                                                     tmp_path: Path, source_error: Callable[[BaseException], Any]
                                                     ) -> None:
    server = serve(small_company, ["netsuite"])
    run = ConnectorRun.against(server, "netsuite", tmp_path, **OPTIONS)
    run.credentials["refresh_token"] = "expired-after-seven-days"
    with pytest.raises(PipelineStepFailed) as failed:
        run.sync()
    error = source_error(failed.value)
    assert isinstance(error, SourceAuthError)
    assert "netsuite: authentication failed" in str(error) and "invalid_grant" in str(error)
    assert "re-authorize netsuite" in str(error)


def test_account_id_fills_the_real_host() -> None:
    real = connector("netsuite").default_base_url
    assert base_url(real, "1234567_SB1") == "https://1234567-sb1.suitetalk.api.netsuite.com"
    with pytest.raises(SourceConfigError, match="account_id"):
        base_url(real, "")
