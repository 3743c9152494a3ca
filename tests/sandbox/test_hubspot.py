"""HubSpot CRM v3 simulator over real HTTP: pages, search, archives, OAuth, throttle, errors, advance."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jsonschema
import pandas as pd

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.hubspot import HubSpot

AUTH = {"Authorization": f"Bearer {HubSpot.PRIVATE_APP_TOKEN}"}

# Shapes from HubSpot's docs (the OpenAPI files are not openly licensed, so not kept in the repo).
RECORD = {
    "type": "object", "required": ["id", "properties", "createdAt", "updatedAt", "archived"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "properties": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "createdAt": {"type": "string", "format": "date-time"}, "updatedAt": {"type": "string"},
        "archived": {"type": "boolean"}, "archivedAt": {"type": "string"},
    },
}
PAGING = {"type": "object", "required": ["next"], "properties": {"next": {
    "type": "object", "required": ["after"], "properties": {"after": {"type": "string"}, "link": {"type": "string"}}}}}
LIST = {"type": "object", "required": ["results"], "additionalProperties": False,
        "properties": {"results": {"type": "array", "items": RECORD}, "paging": PAGING}}
SEARCH = {"type": "object", "required": ["total", "results"], "additionalProperties": False,
          "properties": {"total": {"type": "integer"}, "results": {"type": "array", "items": RECORD}, "paging": PAGING}}
ERROR = {"type": "object", "required": ["status", "message", "correlationId", "category"],
         "properties": {"status": {"const": "error"}, "message": {"type": "string"},
                        "correlationId": {"type": "string"}, "category": {"type": "string"}}}


def _live_presence(company: Company, entity: str) -> pd.DataFrame:
    pres = company.presence_of(entity, "hubspot")
    canon = company["people"] if entity == "person" else company["accounts"]
    key = "person_id" if entity == "person" else "account_id"
    live = set(canon.loc[canon["deleted_at"].isna(), key])
    return pres[pres["deleted_at"].isna() & pres["entity_id"].isin(live)]


def _list_all(base: str, kind: str, **params: Any) -> list[dict[str, Any]]:
    out, after, pages = [], None, 0
    while True:
        query = {"limit": 100, **params} | ({"after": after} if after else {})
        r = httpx.get(f"{base}/crm/v3/objects/{kind}", params=query, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        jsonschema.validate(body, LIST)
        out += body["results"]
        pages += 1
        if "paging" not in body:
            return out
        after = body["paging"]["next"]["after"]
        assert parse_qs(urlparse(body["paging"]["next"]["link"]).query)["after"] == [after]


def _search_all(base: str, kind: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    out, after, total = [], None, -1
    while True:
        r = httpx.post(f"{base}/crm/v3/objects/{kind}/search", json=body | ({"after": after} if after else {}),
                       headers=AUTH)
        assert r.status_code == 200, r.text
        page = r.json()
        jsonschema.validate(page, SEARCH)
        assert "X-HubSpot-RateLimit-Max" not in r.headers  # search answers carry no rate-limit headers
        out += page["results"]
        total = page["total"]
        if "paging" not in page:
            return out, total
        after = page["paging"]["next"]["after"]


def test_list_pages_by_id_with_string_properties(small_company: Company, serve) -> None:
    base = serve(small_company, ["hubspot"]).url("hubspot")
    contacts = _list_all(base, "contacts", properties="email,firstname,associatedcompanyid,nosuchprop")
    expected = _live_presence(small_company, "person")
    assert sorted(c["id"] for c in contacts) == sorted(expected["system_id"].astype(str))
    assert [int(c["id"]) for c in contacts] == sorted(int(c["id"]) for c in contacts)
    assert all(set(c["properties"]) == {"email", "firstname", "associatedcompanyid"} for c in contacts)
    by_id = dict(zip(expected["system_id"].astype(str), expected["email"], strict=True))
    assert all(c["properties"]["email"] == by_id[c["id"]] for c in contacts if isinstance(by_id[c["id"]], str))
    dupes = expected[expected["is_duplicate"].astype(bool)]
    assert len(dupes) and set(dupes["system_id"].astype(str)) <= {c["id"] for c in contacts}
    companies = _list_all(base, "companies", associations="contacts")
    assert len(companies) == len(_live_presence(small_company, "account"))
    deals = _list_all(base, "0-3", properties="amount,dealstage,hs_lastmodifieddate,closedate")
    assert deals and all(isinstance(d["properties"]["amount"], str) for d in deals if d["properties"]["amount"])
    r = httpx.get(f"{base}/crm/v3/objects/contacts", params={"limit": 1}, headers=AUTH)
    assert int(r.headers["X-HubSpot-RateLimit-Max"]) == 100 and "X-HubSpot-RateLimit-Remaining" in r.headers


def test_search_incremental_filter_sort_total_and_cap(small_company: Company, serve) -> None:
    base = serve(small_company, ["hubspot"]).url("hubspot")
    contacts = _live_presence(small_company, "person").merge(
        small_company["people"][["person_id", "updated_at"]], left_on="entity_id", right_on="person_id",
        suffixes=("", "_p"))
    modified = contacts[["updated_at", "updated_at_p"]].max(axis=1)
    cut = modified.quantile(0.6)
    cut_ms = int(cut.value // 10**6)
    body = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                           "value": str(cut_ms)}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email", "lastmodifieddate"], "limit": 50}
    results, total = _search_all(base, "contacts", body)
    assert total == len(results) == int((modified >= cut).sum())
    stamps = [pd.Timestamp(r["properties"]["lastmodifieddate"]) for r in results]
    assert stamps == sorted(stamps) and min(stamps) >= cut
    # OR of two groups, ISO values accepted, companies use hs_lastmodifieddate
    groups = {"filterGroups": [
        {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": "2025-01-01T00:00:00Z"}]},
        {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(cut_ms)}]}],
        "limit": 200}
    companies, total = _search_all(base, "companies", groups)
    assert total == len(companies) > 0
    # paging past 10,000 results is refused with HubSpot's 400
    r = httpx.post(f"{base}/crm/v3/objects/contacts/search", json={"after": "10000", "limit": 100}, headers=AUTH)
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert httpx.post(f"{base}/crm/v3/objects/deals/search", json={"limit": 201}, headers=AUTH).status_code == 400


def test_errors_in_hubspot_envelope(small_company: Company, serve) -> None:
    base = serve(small_company, ["hubspot"]).url("hubspot")
    bad_prop = {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                               "value": "1"}]}]}
    answers = [
        httpx.post(f"{base}/crm/v3/objects/contacts/search", json=bad_prop, headers=AUTH),  # contacts: lastmodifieddate
        httpx.post(f"{base}/crm/v3/objects/deals/search", json={"sorts": [{"propertyName": "nope"}]}, headers=AUTH),
        httpx.post(f"{base}/crm/v3/objects/deals/search", content=b"{not json", headers=AUTH),
        httpx.post(f"{base}/crm/v3/objects/deals/search", json={"filterGroups": [{"filters": [
            {"propertyName": "amount", "operator": "ROUGHLY", "value": "1"}]}]}, headers=AUTH),
        httpx.get(f"{base}/crm/v3/objects/widgets", headers=AUTH),
        httpx.get(f"{base}/crm/v3/objects/contacts", params={"after": "xyz"}, headers=AUTH),
    ]
    for r in answers:
        assert r.status_code == 400, r.text
        jsonschema.validate(r.json(), ERROR)
        assert "Traceback" not in r.text
    assert answers[0].json()["category"] == "VALIDATION_ERROR" and "hs_lastmodifieddate" in answers[0].json()["message"]
    missing = httpx.get(f"{base}/crm/v3/objects/contacts/999999999999", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    noauth = httpx.get(f"{base}/crm/v3/objects/contacts")
    assert noauth.status_code == 401 and noauth.json()["category"] == "INVALID_AUTHENTICATION"


def test_archived_records_only_with_archived_true(fresh_company: Company, serve) -> None:
    pres = fresh_company["presence"]
    row = pres.index[(pres["system"] == "hubspot") & (pres["entity"] == "person") & pres["deleted_at"].isna()][0]
    gone_id = str(pres.at[row, "system_id"])
    when = fresh_company.now - pd.Timedelta(minutes=5)
    pres.loc[row, ["deleted_at", "updated_at"]] = when
    base = serve(fresh_company, ["hubspot"]).url("hubspot")
    assert gone_id not in {c["id"] for c in _list_all(base, "contacts")}
    archived = _list_all(base, "contacts", archived="true")
    assert gone_id in {c["id"] for c in archived} and all(c["archived"] and c["archivedAt"] for c in archived)
    results, _ = _search_all(base, "contacts", {"limit": 200})
    assert gone_id not in {c["id"] for c in results}
    assert httpx.get(f"{base}/crm/v3/objects/contacts/{gone_id}", headers=AUTH).status_code == 404
    got = httpx.get(f"{base}/crm/v3/objects/contacts/{gone_id}", params={"archived": "true"}, headers=AUTH)
    assert got.status_code == 200 and got.json()["archived"] is True


def test_oauth_code_expiry_and_refresh(small_company: Company, serve) -> None:
    server = serve(small_company, ["hubspot"])
    base = server.url("hubspot")
    redirect = "http://localhost/cb"
    r = httpx.get(f"{base}/oauth/authorize", params={"client_id": HubSpot.CLIENT_ID, "redirect_uri": redirect,
                                                     "state": "s1"})
    assert r.status_code == 302
    code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
    creds = {"client_id": HubSpot.CLIENT_ID, "client_secret": HubSpot.CLIENT_SECRET, "redirect_uri": redirect}
    tok = httpx.post(f"{base}/oauth/v1/token", data=creds | {"grant_type": "authorization_code", "code": code}).json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 1800
    again = httpx.post(f"{base}/oauth/v1/token", data=creds | {"grant_type": "authorization_code", "code": code})
    assert again.status_code == 400 and again.json()["status"] == "BAD_AUTH_CODE"
    auth = {"Authorization": f"Bearer {tok['access_token']}"}
    assert httpx.get(f"{base}/crm/v3/owners/", headers=auth).status_code == 200
    server.faults.add("hubspot", "token_expiry", "/crm/v3/owners*")
    for _ in range(2):
        dead = httpx.get(f"{base}/crm/v3/owners/", headers=auth)
        assert dead.status_code == 401 and dead.json()["category"] == "EXPIRED_AUTHENTICATION"
    refreshed = httpx.post(f"{base}/oauth/v1/token", data=creds | {"grant_type": "refresh_token",
                                                                   "refresh_token": tok["refresh_token"]}).json()
    assert refreshed["refresh_token"] == tok["refresh_token"] and refreshed["access_token"] != tok["access_token"]
    ok = httpx.get(f"{base}/crm/v3/owners/", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert ok.status_code == 200
    bad = httpx.post(f"{base}/oauth/v1/token", data=creds | {"grant_type": "refresh_token", "refresh_token": "x"})
    assert bad.status_code == 400 and bad.json()["status"] == "BAD_REFRESH_TOKEN"


def test_throttle_in_hubspot_format(small_company: Company, serve) -> None:
    server = serve(small_company, ["hubspot"])
    base = server.url("hubspot")
    server.faults.add("hubspot", "throttle", "/crm/v3/objects/*")
    server.faults.add("hubspot", "throttle", "/crm/v3/objects/*", policyName="DAILY")
    first = httpx.get(f"{base}/crm/v3/objects/contacts", headers=AUTH)
    assert first.status_code == 429
    body = first.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit." and body["correlationId"]
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    daily = httpx.get(f"{base}/crm/v3/objects/contacts", headers=AUTH)
    assert daily.status_code == 429 and daily.json()["policyName"] == "DAILY"
    assert httpx.get(f"{base}/crm/v3/objects/contacts", headers=AUTH).status_code == 200


def test_metadata_owners_pipelines_properties_batch(small_company: Company, serve) -> None:
    base = serve(small_company, ["hubspot"]).url("hubspot")
    owners = httpx.get(f"{base}/crm/v3/owners/", params={"limit": 500}, headers=AUTH).json()["results"]
    emails = set(small_company["employees"]["email"])
    assert owners and all(o["email"] in emails and o["archived"] is False for o in owners)
    deal_owners = {d["properties"]["hubspot_owner_id"] for d in _list_all(base, "deals", properties="hubspot_owner_id")}
    all_owners = {o["id"] for o in owners} | {o["id"] for o in httpx.get(
        f"{base}/crm/v3/owners/", params={"archived": "true"}, headers=AUTH).json()["results"]}
    assert deal_owners - {None} <= all_owners
    stages = httpx.get(f"{base}/crm/v3/pipelines/deals", headers=AUTH).json()["results"][0]["stages"]
    assert {"closedwon", "closedlost"} <= {s["id"] for s in stages}
    assert all(s["metadata"]["isClosed"] in ("true", "false") for s in stages)
    props = {p["name"]: p for p in httpx.get(f"{base}/crm/v3/properties/contacts", headers=AUTH).json()["results"]}
    assert props["lastmodifieddate"]["type"] == "datetime"
    some = [c["id"] for c in _list_all(base, "companies")[:3]]
    batch = httpx.post(f"{base}/crm/v3/objects/companies/batch/read",
                       json={"inputs": [{"id": i} for i in some], "properties": ["name", "domain"]}, headers=AUTH)
    assert batch.status_code == 200 and sorted(r["id"] for r in batch.json()["results"]) == sorted(some)
    partial = httpx.post(f"{base}/crm/v3/objects/companies/batch/read",
                         json={"inputs": [{"id": some[0]}, {"id": "1"}], "properties": ["name"]}, headers=AUTH)
    assert partial.status_code == 207 and partial.json()["errors"][0]["context"]["ids"] == ["1"]


def test_advance_shows_creates_updates_and_archives(fresh_company: Company, serve) -> None:
    server = serve(fresh_company, ["hubspot"])
    base = server.url("hubspot")
    since = str(int(fresh_company.now.value // 10**6))
    before = {c["id"] for c in _list_all(base, "contacts")}
    server.sandbox.advance(4 * 1440)
    incr = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], "limit": 100}
    changed, _ = _search_all(base, "contacts", incr)
    pres = fresh_company.presence_of("person", "hubspot")
    new_ids = set(pres.loc[pres["created_at"] >= fresh_company.now - pd.Timedelta(days=4), "system_id"].astype(str))
    new_live = new_ids - set(pres.loc[pres["deleted_at"].notna(), "system_id"].astype(str))
    assert new_live and new_live <= {c["id"] for c in changed} and not new_live & before
    gone = set(pres.loc[pres["deleted_at"] >= fresh_company.now - pd.Timedelta(days=4), "system_id"].astype(str))
    assert gone and gone <= {c["id"] for c in _list_all(base, "contacts", archived="true")}
    opps = fresh_company["opportunities"]
    in_hubspot = set(fresh_company.presence_of("account", "hubspot")["entity_id"])
    moved = opps[(opps["updated_at"] >= fresh_company.now - pd.Timedelta(days=4)) & opps["account_id"].isin(in_hubspot)]
    deals, _ = _search_all(base, "deals", {"filterGroups": [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since}]}],
        "properties": ["hs_salesforceopportunityid", "dealstage"], "limit": 100})
    assert len(moved) and set(moved["system_id"]) <= {d["properties"]["hs_salesforceopportunityid"] for d in deals}
