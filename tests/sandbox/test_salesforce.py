"""Salesforce simulator over real HTTP: OAuth, SOQL query/queryAll paging, incremental filters, deletes,
errors, limits and conformance to the documented wire shapes (no official OpenAPI description exists, so
the schemas below are written from VENDOR-APIS.md section 1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import httpx
import jsonschema
import pandas as pd

from sophia_lib.sandbox.clock import advance
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN

V = "/services/data/v62.0"
SF_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$"
TOKEN_SCHEMA = {
    "type": "object",
    "required": ["access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"],
    "properties": {"access_token": {"type": "string"}, "instance_url": {"type": "string"},
                   "id": {"type": "string"}, "token_type": {"const": "Bearer"},
                   "issued_at": {"type": "string", "pattern": r"^\d{13}$"}, "signature": {"type": "string"},
                   "scope": {"type": "string"}, "refresh_token": {"type": "string"}},
    "not": {"required": ["expires_in"]},
}
ERROR_SCHEMA = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["message", "errorCode"],
    "properties": {"message": {"type": "string"}, "errorCode": {"type": "string"}}}}
RECORD_SCHEMA = {
    "type": "object", "required": ["attributes", "Id"],
    "properties": {
        "attributes": {"type": "object", "required": ["type", "url"], "properties": {
            "type": {"type": "string"}, "url": {"type": "string", "pattern": r"^/services/"}}},
        "Id": {"type": "string", "pattern": r"^[0-9A-Za-z]{18}$"},
        "SystemModstamp": {"type": "string", "pattern": SF_DATETIME},
        "LastModifiedDate": {"type": "string", "pattern": SF_DATETIME},
        "CreatedDate": {"type": "string", "pattern": SF_DATETIME},
        "CloseDate": {"type": ["string", "null"], "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "IsDeleted": {"type": "boolean"}, "Amount": {"type": ["number", "null"]},
    },
}
QUERY_SCHEMA = {
    "type": "object", "required": ["totalSize", "done", "records"],
    "properties": {
        "totalSize": {"type": "integer"}, "done": {"type": "boolean"},
        "nextRecordsUrl": {"type": "string", "pattern": r"^/services/data/v\d+\.0/query(All)?/01g[^/]+-\d+$"},
        "records": {"type": "array", "items": RECORD_SCHEMA}},
    "if": {"properties": {"done": {"const": False}}}, "then": {"required": ["nextRecordsUrl"]},
}


def _token(base: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": REFRESH_TOKEN} | extra
    return httpx.post(base + "/services/oauth2/token", data=data)


def _auth(base: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(base).json()['access_token']}"}


def _query(base: str, soql: str, auth: dict[str, str], *, all_rows: bool = False, batch: int | None = None
           ) -> httpx.Response:
    headers = auth | ({"Sforce-Query-Options": f"batchSize={batch}"} if batch else {})
    return httpx.get(base + V + ("/queryAll" if all_rows else "/query"), params={"q": soql}, headers=headers)


def _all(base: str, soql: str, auth: dict[str, str], *, all_rows: bool = False, batch: int | None = None
         ) -> tuple[list[dict[str, Any]], list[int]]:
    """Every record of a query, following nextRecordsUrl; also the page sizes."""
    r = _query(base, soql, auth, all_rows=all_rows, batch=batch)
    assert r.status_code == 200, r.text
    records, sizes = [], []
    for _ in range(1000):
        body = r.json()
        jsonschema.validate(body, QUERY_SCHEMA)
        records += body["records"]
        sizes.append(len(body["records"]))
        if body["done"]:
            assert len(records) == body["totalSize"]
            return records, sizes
        r = httpx.get(base + body["nextRecordsUrl"], headers=auth | (
            {"Sforce-Query-Options": f"batchSize={batch}"} if batch else {}))
        assert r.status_code == 200, r.text
    raise AssertionError("paging did not end")


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body[0]["errorCode"] == code, body
    return body[0]["message"]


def test_token_refresh_shape_signature_and_errors(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    r = _token(base)
    assert r.status_code == 200
    body = r.json()
    jsonschema.validate(body, TOKEN_SCHEMA)
    assert body["instance_url"] == base and "refresh_token" not in body
    expected = base64.b64encode(hmac.new(CLIENT_SECRET.encode(), (body["id"] + body["issued_at"]).encode(),
                                         hashlib.sha256).digest()).decode()
    assert body["signature"] == expected
    bad = _token(base, refresh_token="nope")
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    assert _token(base, client_id="other").json()["error"] == "invalid_client_id"
    assert _token(base, client_secret="wrong").json()["error"] == "invalid_client"
    assert _token(base, grant_type="password").json()["error"] == "unsupported_grant_type"
    cc = httpx.post(base + "/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                           "client_secret": CLIENT_SECRET})
    assert cc.status_code == 200 and "refresh_token" not in cc.json()


def test_refresh_token_rotation(small_company: Company, serve) -> None:
    server = serve(small_company, ["salesforce"])
    base = server.url("salesforce")
    server.sandbox.vendors["salesforce"].tokens.rotate_refresh = True
    first = _token(base).json()
    assert first["refresh_token"] != REFRESH_TOKEN
    assert _token(base).json()["error"] == "invalid_grant"  # the old one is dead
    second = _token(base, refresh_token=first["refresh_token"])
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]


def test_query_pages_by_batch_size_and_counts_api_usage(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    auth = _auth(base)
    records, sizes = _all(base, "SELECT Id, Name, Email, AccountId, SystemModstamp FROM Contact", auth, batch=200)
    live = small_company.presence_of("person", "salesforce")
    live = live[live["deleted_at"].isna()]
    live = live[live["entity_id"].isin(small_company.live("people")["person_id"])]
    assert sorted(r["Id"] for r in records) == sorted(live["system_id"])
    assert len(sizes) > 2 and set(sizes[:-1]) == {200} and 0 < sizes[-1] <= 200
    assert list(records[0]) == ["attributes", "Id", "Name", "Email", "AccountId", "SystemModstamp"]
    # batch sizes clamp to 200..2000, default 2000
    assert len(_query(base, "SELECT Id FROM Contact", auth, batch=5).json()["records"]) == 200
    assert len(_query(base, "SELECT Id FROM Contact", auth).json()["records"]) == len(records)
    r1 = _query(base, "SELECT Id FROM User", auth)
    r2 = _query(base, "SELECT Id FROM User", auth)
    used = [int(re.fullmatch(r"api-usage=(\d+)/(\d+)", r.headers["Sforce-Limit-Info"]).group(1)) for r in (r1, r2)]
    assert used[1] == used[0] + 1


def test_incremental_filters_are_exact_at_the_boundary(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    auth = _auth(base)
    everything, _ = _all(base, "SELECT Id, SystemModstamp, LastModifiedDate FROM Opportunity "
                               "ORDER BY SystemModstamp ASC", auth)
    stamps = [r["SystemModstamp"] for r in everything]
    assert stamps == sorted(stamps)
    pivot = stamps[len(stamps) // 2]
    after, _ = _all(base, f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp > {pivot} "
                          "ORDER BY SystemModstamp ASC", auth)
    from_, _ = _all(base, f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {pivot}", auth)
    assert all(r["SystemModstamp"] > pivot for r in after)
    assert len(from_) == len(after) + stamps.count(pivot)
    assert len(after) == sum(s > pivot for s in stamps)
    # ISO with Z, with a colon offset, and LastModifiedDate all mean the same instant
    iso = pd.Timestamp(pivot).strftime("%Y-%m-%dT%H:%M:%SZ")
    plus_two = (pd.Timestamp(pivot) + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    for literal in (iso, plus_two):
        same, _ = _all(base, f"SELECT Id FROM Opportunity WHERE LastModifiedDate > {literal}", auth)
        assert {r["Id"] for r in same} == {r["Id"] for r in after}
    window, _ = _all(base, f"SELECT Id FROM Opportunity WHERE SystemModstamp > {pivot} AND SystemModstamp <= "
                           f"{stamps[-1]} AND IsDeleted = false", auth)
    assert len(window) == len(after)


def test_query_all_returns_deletes_and_query_hides_them(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    auth = _auth(base)
    gone, _ = _all(base, "SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", auth, all_rows=True)
    assert gone and all(r["IsDeleted"] is True for r in gone)
    assert _query(base, "SELECT Id FROM Contact WHERE IsDeleted = true", auth).json()["totalSize"] == 0
    total_all = _query(base, "SELECT COUNT() FROM Contact", auth, all_rows=True).json()["totalSize"]
    total_live = _query(base, "SELECT COUNT() FROM Contact", auth).json()["totalSize"]
    assert total_all == total_live + len(gone)


def test_soql_subset_relationships_order_limit_in_like(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    auth = _auth(base)
    opps = _query(base, "SELECT Id, Name, Amount, StageName, Account.Name, Owner.Email FROM Opportunity "
                        "WHERE StageName IN ('Closed Won', 'Closed Lost') AND Amount > 0 "
                        "ORDER BY Amount DESC NULLS LAST LIMIT 5", auth).json()
    assert opps["totalSize"] == len(opps["records"]) == 5
    amounts = [r["Amount"] for r in opps["records"]]
    assert amounts == sorted(amounts, reverse=True)
    rec = opps["records"][0]
    assert rec["StageName"] in ("Closed Won", "Closed Lost")
    assert rec["Account"]["attributes"]["type"] == "Account" and isinstance(rec["Account"]["Name"], str)
    assert rec["Owner"]["Email"].endswith(".com") or "@" in rec["Owner"]["Email"]
    like = _query(base, "select id, name from account where name like 'a%'", auth).json()  # case-insensitive
    assert like["records"] and all(r["Name"].lower().startswith("a") for r in like["records"])
    paged = _query(base, "SELECT Id FROM Account ORDER BY Id LIMIT 3 OFFSET 2", auth).json()["records"]
    ordered = _query(base, "SELECT Id FROM Account ORDER BY Id", auth).json()["records"]
    assert [r["Id"] for r in paged] == [r["Id"] for r in ordered[2:5]]
    fields_all = _query(base, "SELECT FIELDS(ALL) FROM Opportunity LIMIT 2", auth).json()["records"][0]
    described = httpx.get(base + V + "/sobjects/Opportunity/describe", headers=auth).json()["fields"]
    assert list(fields_all)[1:] == [f["name"] for f in described]
    assert _query(base, "SELECT Id FROM Task WHERE OwnerId != null AND (Status = 'Completed' OR IsClosed = false)",
                  auth).status_code == 200


def test_soql_errors_in_salesforce_envelope(small_company: Company, serve) -> None:
    server = serve(small_company, ["salesforce"])
    base = server.url("salesforce")
    auth = _auth(base)
    msg = _error(_query(base, "SELECT Id, Nope FROM Opportunity", auth), 400, "INVALID_FIELD")
    assert "No such column 'Nope' on entity 'Opportunity'" in msg and "ERROR at Row:1:Column:12" in msg
    _error(_query(base, "SELECT Id FROM Widget__c", auth), 400, "INVALID_TYPE")
    _error(_query(base, "SELECT Id FROM Account WHERE", auth), 400, "MALFORMED_QUERY")
    _error(_query(base, "SELECT Id Name FROM Account", auth), 400, "MALFORMED_QUERY")
    _error(_query(base, "SELECT FIELDS(ALL) FROM Account", auth), 400, "MALFORMED_QUERY")  # needs LIMIT <= 200
    quoted = _error(_query(base, "SELECT Id FROM Account WHERE SystemModstamp > '2025-01-01T00:00:00Z'", auth),
                    400, "INVALID_FIELD")
    assert "should not be enclosed in quotes" in quoted
    _error(_query(base, "SELECT Id FROM Account WHERE Name = 5", auth), 400, "INVALID_FIELD")
    _error(_query(base, "SELECT Id FROM OpportunityHistory WHERE LastModifiedDate > 2025-01-01T00:00:00Z", auth),
           400, "INVALID_FIELD")  # OpportunityHistory has SystemModstamp only
    _error(_query(base, "SELECT Id, IsDeleted FROM User", auth), 400, "INVALID_FIELD")  # users are never deleted
    _error(httpx.get(base + V + "/query", headers=auth), 400, "MALFORMED_QUERY")
    _error(httpx.get(base + "/services/data/v7.0/query", params={"q": "SELECT Id FROM Account"}, headers=auth),
           404, "NOT_FOUND")
    _error(httpx.get(base + V + "/sobjects/Widget__c/describe", headers=auth), 404, "NOT_FOUND")
    # query locators: a made-up one, and a real one after the server forgot it
    _error(httpx.get(base + V + "/query/01gXXXXXXXXXXXXXXX-200", headers=auth), 400, "INVALID_QUERY_LOCATOR")
    first = _query(base, "SELECT Id FROM Contact", auth, batch=200).json()
    server.sandbox.vendors["salesforce"].expire_query_locators()
    _error(httpx.get(base + first["nextRecordsUrl"], headers=auth), 400, "INVALID_QUERY_LOCATOR")


def test_auth_expiry_throttle_limits_and_server_errors(small_company: Company, serve) -> None:
    server = serve(small_company, ["salesforce"])
    base = server.url("salesforce")
    soql = "SELECT Id FROM Account"
    _error(httpx.get(base + V + "/query", params={"q": soql}), 401, "INVALID_SESSION_ID")
    auth = _auth(base)
    server.faults.add("salesforce", "token_expiry", "*/query")
    assert _error(_query(base, soql, auth), 401, "INVALID_SESSION_ID") == "Session expired or invalid"
    _error(_query(base, soql, auth), 401, "INVALID_SESSION_ID")  # the token is really dead
    assert _query(base, soql, _auth(base)).status_code == 200  # a refresh fixes it

    auth = _auth(base)
    server.faults.add("salesforce", "throttle", "*/query")
    throttled = _query(base, soql, auth)
    assert _error(throttled, 403, "REQUEST_LIMIT_EXCEEDED") == "TotalRequests Limit exceeded."
    assert "Retry-After" not in throttled.headers and "Sforce-Limit-Info" in throttled.headers
    server.faults.add("salesforce", "server_error", "*/query", status=503)
    _error(_query(base, soql, auth), 503, "SERVER_UNAVAILABLE")

    vendor = server.sandbox.vendors["salesforce"]
    limits = httpx.get(base + V + "/limits", headers=auth).json()
    assert limits["DailyApiRequests"]["Max"] == vendor.api_limit
    vendor.api_limit = vendor.api_used + 1
    assert _query(base, soql, auth).status_code == 200
    over = _query(base, soql, auth)
    _error(over, 403, "REQUEST_LIMIT_EXCEEDED")
    used, limit = re.fullmatch(r"api-usage=(\d+)/(\d+)", over.headers["Sforce-Limit-Info"]).groups()
    assert int(used) > int(limit)


def test_describe_versions_and_global(small_company: Company, serve) -> None:
    base = serve(small_company, ["salesforce"]).url("salesforce")
    auth = _auth(base)
    versions = httpx.get(base + "/services/data/").json()
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    names = {s["name"] for s in httpx.get(base + V + "/sobjects", headers=auth).json()["sobjects"]}
    assert names == {"Account", "Contact", "Opportunity", "OpportunityHistory", "User", "Task", "Event"}
    desc = httpx.get(base + V + "/sobjects/Contact/describe", headers=auth).json()
    by_name = {f["name"]: f for f in desc["fields"]}
    assert by_name["SystemModstamp"]["type"] == "datetime" and by_name["AccountId"]["referenceTo"] == ["Account"]
    assert by_name["FirstName"]["compoundFieldName"] == "Name" and desc["keyPrefix"] == "003"
    for name in names:  # every described field is queryable and comes back with the documented formats
        fields = [f["name"] for f in httpx.get(base + V + f"/sobjects/{name}/describe", headers=auth).json()["fields"]]
        r = _query(base, f"SELECT {', '.join(fields)} FROM {name} LIMIT 50", auth)
        assert r.status_code == 200, r.text
        jsonschema.validate(r.json(), QUERY_SCHEMA)
        assert all(set(rec) == {"attributes", *fields} for rec in r.json()["records"])


def test_record_faults_duplicate_across_pages(small_company: Company, serve) -> None:
    server = serve(small_company, ["salesforce"])
    base = server.url("salesforce")
    auth = _auth(base)
    first = _query(base, "SELECT Id FROM Contact ORDER BY Id", auth, batch=200).json()
    server.faults.add("salesforce", "duplicate_record", "*/query/*")
    second = httpx.get(base + first["nextRecordsUrl"], headers=auth).json()
    assert second["records"][0]["Id"] == first["records"][-1]["Id"]


def _max_stamp(base: str, obj: str, auth: dict[str, str]) -> str:
    r = _query(base, f"SELECT SystemModstamp FROM {obj} ORDER BY SystemModstamp DESC LIMIT 1", auth, all_rows=True)
    return r.json()["records"][0]["SystemModstamp"]


def test_advance_changes_show_through_incremental_filters(fresh_company: Company, serve) -> None:
    server = serve(fresh_company, ["salesforce"])
    base = server.url("salesforce")
    auth = _auth(base)
    objects = ["Opportunity", "OpportunityHistory", "Task", "Event", "Contact"]
    cursors = {obj: _max_stamp(base, obj, auth) for obj in objects}
    before = fresh_company.now
    server.sandbox.advance(6 * 60)  # a working morning: an hour can pass with no CRM change at all
    opps = fresh_company["opportunities"]
    changed_opps = set(opps.loc[opps["updated_at"] > before, "system_id"])
    hist = fresh_company["opportunity_history"]
    new_hist = set(hist.loc[hist["updated_at"] > before, "system_id"])
    got = {obj: _all(base, f"SELECT Id, IsDeleted FROM {obj} WHERE SystemModstamp > {cursors[obj]}", auth,
                     all_rows=True)[0] for obj in objects}
    assert {r["Id"] for r in got["Opportunity"]} == changed_opps
    assert {r["Id"] for r in got["OpportunityHistory"]} == new_hist
    acts = fresh_company["activities"]
    sf_acts = acts[(acts["system"] == "salesforce") & (acts["updated_at"] > before)]
    assert {r["Id"] for r in got["Task"] + got["Event"]} == set(sf_acts["system_id"])
    assert changed_opps | new_hist | set(sf_acts["system_id"]), "six hours of the company changed nothing here"

    # a longer stretch also deletes contacts: queryAll with IsDeleted = true and the cursor finds them
    cursor = _max_stamp(base, "Contact", auth)
    now = fresh_company.now
    advance(fresh_company, 3 * 24 * 60)
    server.sandbox.vendors["salesforce"].render()
    people, presence = fresh_company["people"], fresh_company.presence_of("person", "salesforce")
    dead_people = set(people.loc[people["deleted_at"] > now, "person_id"])
    dead = set(presence.loc[(presence["deleted_at"] > now) | presence["entity_id"].isin(dead_people), "system_id"])
    born = set(presence.loc[presence["created_at"] > now, "system_id"]) - dead
    deleted, _ = _all(base, f"SELECT Id FROM Contact WHERE IsDeleted = true AND SystemModstamp > {cursor}", auth,
                      all_rows=True)
    created, _ = _all(base, f"SELECT Id FROM Contact WHERE SystemModstamp > {cursor}", auth)
    assert dead and {r["Id"] for r in deleted} == dead
    assert born <= {r["Id"] for r in created}
