"""Gong v2 simulator over real HTTP: date-range calls, cursors, late analysis, auth, throttle, errors, advance."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jsonschema
import pandas as pd

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.gong import Gong

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{Gong.ACCESS_KEY}:{Gong.ACCESS_KEY_SECRET}".encode()).decode()}
FULL = {"context": "Extended", "exposedFields": {
    "parties": True, "media": True,
    "content": {"brief": True, "topics": True, "trackers": True, "outline": True, "keyPoints": True,
                "callOutcome": True},
    "interaction": {"speakers": True, "questions": True, "personInteractionStats": True, "video": True},
    "collaboration": {"publicComments": True}}}

# Shapes from VENDOR-APIS.md section 4 (Gong's OpenAPI file is not openly licensed, so not kept in the repo).
RECORDS = {"type": "object", "required": ["totalRecords", "currentPageSize", "currentPageNumber"],
           "properties": {"totalRecords": {"type": "integer"}, "currentPageSize": {"type": "integer"},
                          "currentPageNumber": {"type": "integer"}, "cursor": {"type": "string"}}}
CALL = {"type": "object", "required": ["id", "url", "title", "scheduled", "started", "duration", "primaryUserId",
                                       "direction", "system", "scope", "media", "language", "workspaceId",
                                       "isPrivate"],
        "properties": {"id": {"type": "string", "pattern": "^[0-9]+$"}, "duration": {"type": "integer"},
                       "started": {"type": "string"}, "direction": {"enum": ["Inbound", "Outbound", "Conference",
                                                                              "Unknown"]}}}
CALLS = {"type": "object", "required": ["requestId", "records", "calls"],
         "properties": {"requestId": {"type": "string"}, "records": RECORDS, "calls": {"type": "array", "items": CALL}}}
EXTENSIVE = {"type": "object", "required": ["requestId", "records", "calls"], "properties": {
    "records": RECORDS, "calls": {"type": "array", "items": {"type": "object", "required": ["metaData"], "properties": {
        "metaData": CALL, "parties": {"type": "array", "items": {"type": "object", "required": ["id", "affiliation"]}},
        "content": {"type": "object"}, "interaction": {"type": "object"}, "context": {"type": "array"}}}}}}
ERROR = {"type": "object", "required": ["requestId", "errors"], "additionalProperties": False,
         "properties": {"requestId": {"type": "string"}, "errors": {"type": "array", "items": {"type": "string"},
                                                                    "minItems": 1}}}


def _all_calls(base: str, since: str, until: str, auth: dict[str, str] = BASIC) -> list[dict[str, Any]]:
    out, cursor, page = [], None, 0
    while True:
        params = {"fromDateTime": since, "toDateTime": until} | ({"cursor": cursor} if cursor else {})
        r = httpx.get(f"{base}/v2/calls", params=params, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        jsonschema.validate(body, CALLS)
        assert body["records"]["currentPageNumber"] == page and body["records"]["currentPageSize"] == len(body["calls"])
        out += body["calls"]
        page += 1
        cursor = body["records"].get("cursor")
        if cursor is None:
            assert len(out) == body["records"]["totalRecords"]
            return out


def _extensive(base: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{base}/v2/calls/extensive", json=body, headers=BASIC, **kwargs)


def test_calls_by_date_range_with_cursor(small_company: Company, serve) -> None:
    base = serve(small_company, ["gong"]).url("gong")
    calls = _all_calls(base, "2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z")
    live = small_company["calls"][small_company["calls"]["deleted_at"].isna()]
    assert len(calls) == len(live) > 100  # more than one page
    assert sorted(c["id"] for c in calls) == sorted(live["system_id"].astype(str))
    started = [pd.Timestamp(c["started"]) for c in calls]
    assert started == sorted(started)
    # [from, to): a call starting exactly at toDateTime is excluded, at fromDateTime included
    edge = calls[len(calls) // 2]["started"]
    assert edge not in {c["started"] for c in _all_calls(base, "2020-01-01T00:00:00Z", edge)}
    assert _all_calls(base, edge, "2030-01-01T00:00:00Z")[0]["started"] == edge
    users = {u["id"] for u in httpx.get(f"{base}/v2/users", headers=BASIC).json()["users"]}
    assert {c["primaryUserId"] for c in calls} <= users


def test_no_calls_is_404_and_bad_requests_are_400(small_company: Company, serve) -> None:
    base = serve(small_company, ["gong"]).url("gong")
    empty = httpx.get(f"{base}/v2/calls", params={"fromDateTime": "2001-01-01T00:00:00Z",
                                                  "toDateTime": "2001-02-01T00:00:00Z"}, headers=BASIC)
    assert empty.status_code == 404
    jsonschema.validate(empty.json(), ERROR)
    assert empty.json()["errors"] == ["No calls found corresponding to the provided filters"]
    bad = [
        httpx.get(f"{base}/v2/calls", params={"fromDateTime": "2024-01-01T00:00:00Z"}, headers=BASIC),
        httpx.get(f"{base}/v2/calls", params={"fromDateTime": "yesterday", "toDateTime": "2025-01-01T00:00:00Z"},
                  headers=BASIC),
        httpx.get(f"{base}/v2/calls", params={"fromDateTime": "2024-01-01T00:00:00Z",
                                              "toDateTime": "2026-01-01T00:00:00Z", "cursor": "garbage!"},
                  headers=BASIC),
        httpx.post(f"{base}/v2/calls/extensive", content=b"{oops", headers=BASIC),
        _extensive(base, {"filter": {"callIds": "123"}}),
    ]
    for r in bad:
        assert r.status_code == 400, r.text
        jsonschema.validate(r.json(), ERROR)
    assert httpx.get(f"{base}/v2/calls/1", headers=BASIC).status_code == 404


def test_extensive_body_cursor_parties_and_late_analysis(small_company: Company, serve) -> None:
    base = serve(small_company, ["gong"]).url("gong")
    window = {"fromDateTime": "2020-01-01T00:00:00Z", "toDateTime": "2030-01-01T00:00:00Z"}
    first = _extensive(base, {"filter": window, "contentSelector": FULL})
    assert first.status_code == 200
    jsonschema.validate(first.json(), EXTENSIVE)
    cursor = first.json()["records"]["cursor"]
    # Gong's pitfall: a cursor in the query string of the POST is ignored, page 1 comes back
    wrong = httpx.post(f"{base}/v2/calls/extensive", params={"cursor": cursor},
                       json={"filter": window, "contentSelector": FULL}, headers=BASIC)
    assert [c["metaData"]["id"] for c in wrong.json()["calls"]] == [c["metaData"]["id"] for c in first.json()["calls"]]
    seen, body = [], first.json()
    while True:
        seen += body["calls"]
        if "cursor" not in body["records"]:
            break
        body = _extensive(base, {"filter": window, "contentSelector": FULL, "cursor": body["records"]["cursor"]}).json()
    calls = small_company["calls"].set_index("system_id")
    live = int(small_company["calls"]["deleted_at"].isna().sum())
    assert len(seen) == len({c["metaData"]["id"] for c in seen}) == live
    for call in seen:
        row = calls.loc[call["metaData"]["id"]]
        ready = row["analysis_ready_at"] <= small_company.now
        assert ("interaction" in call) == ready and ("content" in call) == ready
        external = [p for p in call["parties"] if p["affiliation"] == "External"]
        assert len(external) == len(row["participant_person_ids"])
        if ready:
            stats = {s["name"]: s["value"] for s in call["interaction"]["interactionStats"]}
            assert stats["Talk Ratio"] == row["talk_ratio"]
            assert [t["name"] for t in call["content"]["topics"]] == list(row["topics"])
    assert any("interaction" not in c for c in seen)  # the small company has calls still being analysed
    one = _extensive(base, {"filter": {"callIds": [seen[0]["metaData"]["id"]]},
                            "contentSelector": {"exposedFields": {"parties": True}}}).json()
    assert [c["metaData"]["id"] for c in one["calls"]] == [seen[0]["metaData"]["id"]]
    assert "content" not in one["calls"][0] and "context" not in one["calls"][0]


def test_basic_auth_and_oauth_with_expiry_then_refresh(small_company: Company, serve) -> None:
    server = serve(small_company, ["gong"])
    base = server.url("gong")
    wrong = {"Authorization": "Basic " + base64.b64encode(b"key:nope").decode()}
    for headers in (wrong, {}):
        r = httpx.get(f"{base}/v2/users", headers=headers)
        assert r.status_code == 401
        jsonschema.validate(r.json(), ERROR)
    r = httpx.get(f"{base}/oauth2/authorize", params={"client_id": Gong.CLIENT_ID, "redirect_uri": "http://x/cb"})
    code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
    client = (Gong.CLIENT_ID, Gong.CLIENT_SECRET)
    tok = httpx.post(f"{base}/oauth2/generate-customer-token",
                     params={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://x/cb"},
                     auth=client).json()
    assert tok["api_base_url_for_customer"].rstrip("/") == base and "api:calls:read:extensive" in tok["scope"]
    auth = {"Authorization": f"Bearer {tok['access_token']}"}
    assert httpx.get(f"{base}/v2/users", headers=auth).status_code == 200
    server.faults.add("gong", "token_expiry", "/v2/users")
    assert httpx.get(f"{base}/v2/users", headers=auth).status_code == 401
    assert httpx.get(f"{base}/v2/users", headers=auth).status_code == 401
    new = httpx.post(f"{base}/oauth2/generate-customer-token",
                     params={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, auth=client).json()
    assert httpx.get(f"{base}/v2/users", headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 200
    assert httpx.post(f"{base}/oauth2/generate-customer-token", params={"grant_type": "refresh_token",
                                                                        "refresh_token": "x"},
                      auth=client).status_code == 400


def test_throttle_429_with_retry_after(small_company: Company, serve) -> None:
    server = serve(small_company, ["gong"])
    base = server.url("gong")
    server.faults.add("gong", "throttle", "/v2/calls*", retry_after=3)
    r = httpx.get(f"{base}/v2/calls", params={"fromDateTime": "2020-01-01T00:00:00Z",
                                              "toDateTime": "2030-01-01T00:00:00Z"}, headers=BASIC)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    jsonschema.validate(r.json(), ERROR)
    server.faults.add("gong", "server_error", "/v2/users", status=502)
    err = httpx.get(f"{base}/v2/users", headers=BASIC)
    assert err.status_code == 502
    jsonschema.validate(err.json(), ERROR)


def test_advance_new_calls_and_late_analysis(fresh_company: Company, serve) -> None:
    calls = fresh_company["calls"]
    old_now = fresh_company.now
    pending = calls.loc[calls["analysis_ready_at"] > old_now, "system_id"].astype(str).tolist()
    assert pending
    server = serve(fresh_company, ["gong"])
    base = server.url("gong")
    selector = {"filter": {"callIds": pending}, "contentSelector": FULL}
    assert all("interaction" not in c for c in _extensive(base, selector).json()["calls"])
    until = (old_now + pd.Timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    since = old_now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert httpx.get(f"{base}/v2/calls", params={"fromDateTime": since, "toDateTime": until},
                     headers=BASIC).status_code == 404
    server.sandbox.advance(4 * 1440)
    new = fresh_company["calls"]
    created = new.loc[(new["started_at"] >= old_now) & (new["started_at"] < fresh_company.now), "system_id"]
    assert len(created)
    assert sorted(c["id"] for c in _all_calls(base, since, until)) == sorted(created.astype(str))
    # analysis arrived in the meantime: a 1-day lookback re-read now sees it
    assert all("interaction" in c and "content" in c for c in _extensive(base, selector).json()["calls"])


def test_users_pages(small_company: Company, serve) -> None:
    base = serve(small_company, ["gong"]).url("gong")
    body = httpx.get(f"{base}/v2/users", headers=BASIC).json()
    assert body["records"]["totalRecords"] == len(body["users"]) and "cursor" not in body["records"]
    emails = set(small_company["employees"]["email"])
    assert all(u["emailAddress"] in emails for u in body["users"])
    gong_staff = small_company.presence_of("employee", "gong")
    assert set(gong_staff["system_id"].astype(str)) <= {u["id"] for u in body["users"]}
