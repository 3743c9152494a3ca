"""Notion simulator over real HTTP: version header, search, database/data-source query, trash, auth, faults.

Conformance: Notion publishes no complete OpenAPI. ``specs/notion/notion-openapi.json`` (2025-09-03, from
Notion's MCP server) types requests and the 400 error body but leaves 200 bodies as ``{type: object}``. So
the requests these tests send are validated against it, the error bodies against its 400 schema, and the
200 bodies against the shapes documented in VENDOR-APIS.md §9 (list envelope, page object), written below.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pandas as pd
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import InvalidRequestBody

from sophia_lib.sandbox.clock import advance
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.notion import (
    AUTH_CODE,
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_TOKEN,
    REFRESH_TOKEN,
    data_source_id,
)

SPEC = Path(__file__).parents[2] / "sophia_lib/sandbox/specs/notion/notion-openapi.json"
OLD = "2022-06-28"
NEW = "2025-09-03"
UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$"}  # minute granularity
USER_REF = {"type": "object", "required": ["object", "id"], "properties": {"object": {"const": "user"}, "id": UUID}}
RICH = {"type": "array", "items": {"type": "object", "required": ["type", "plain_text", "annotations", "text"]}}
PAGE = {
    "type": "object",
    "required": ["object", "id", "created_time", "last_edited_time", "created_by", "last_edited_by", "parent",
                 "archived", "in_trash", "properties", "url"],
    "properties": {
        "object": {"const": "page"}, "id": UUID, "created_time": TIME, "last_edited_time": TIME,
        "created_by": USER_REF, "last_edited_by": USER_REF, "archived": {"type": "boolean"},
        "in_trash": {"type": "boolean"}, "url": {"type": "string", "pattern": "^https://www.notion.so/"},
        "parent": {"oneOf": [
            {"type": "object", "required": ["type", "database_id"], "properties": {
                "type": {"const": "database_id"}, "database_id": UUID}},
            {"type": "object", "required": ["type", "data_source_id", "database_id"], "properties": {
                "type": {"const": "data_source_id"}, "data_source_id": UUID, "database_id": UUID}},
            {"type": "object", "required": ["type", "workspace"], "properties": {
                "type": {"const": "workspace"}, "workspace": {"const": True}}},
        ]},
        "properties": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "required": ["id", "type"]}},
    },
}
DATABASE = {"type": "object", "required": ["object", "id", "title", "last_edited_time"],
            "properties": {"object": {"enum": ["database", "data_source"]}, "id": UUID, "title": RICH,
                           "last_edited_time": TIME}}
USER = {  # the user object (developers.notion.com/reference/user): a person carries person.email, a bot its owner
    "type": "object", "required": ["object", "id", "type", "name", "avatar_url"],
    "properties": {"object": {"const": "user"}, "id": UUID, "name": {"type": "string"}},
    "oneOf": [
        {"properties": {"type": {"const": "person"}, "person": {
            "type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}},
         "required": ["person"]},
        {"properties": {"type": {"const": "bot"}, "bot": {"type": "object", "required": ["owner"]}},
         "required": ["bot"]},
    ],
}
LIST = {
    "type": "object", "required": ["object", "results", "next_cursor", "has_more", "type"],
    "properties": {"object": {"const": "list"}, "has_more": {"type": "boolean"},
                   "next_cursor": {"oneOf": [UUID, {"type": "null"}]},
                   "type": {"enum": ["page_or_database", "user"]},
                   "results": {"type": "array", "maxItems": 100}},
}


@lru_cache(maxsize=1)
def _openapi() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC.read_text()), config=Config(spec_validator_cls=None))


def _client(base: str, version: str | None = OLD, token: str = INTEGRATION_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    if version:
        headers["Notion-Version"] = version
    return httpx.Client(base_url=base, headers=headers)


def _checked(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None,
             spec_path: str | None = None, **params: Any) -> httpx.Response:
    """Send a request; validate it (2025-09-03 operations) and any 400 answer against Notion's spec."""
    r = client.request(method, path, json=body, params=params or None)
    if spec_path is not None:
        request = MockRequest("https://api.notion.com", method.lower(), spec_path, args=params,
                              data=json.dumps(body).encode() if body is not None else None,
                              headers={"Notion-Version": NEW, "Authorization": "Bearer x"},
                              content_type="application/json")
        _openapi().validate_request(request)
        if r.status_code in (200, 400):
            _openapi().validate_response(request, MockResponse(r.content, status_code=r.status_code,
                                                               content_type="application/json"))
    if r.status_code == 200 and r.json().get("object") == "list":
        jsonschema.validate(r.json(), LIST)
        for item in r.json()["results"]:
            jsonschema.validate(item, PAGE if item["object"] == "page" else
                                DATABASE if item["object"] in ("database", "data_source") else
                                USER if item["object"] == "user" else {})
    return r


def _error_conforms(method: str, spec_path: str, r: httpx.Response) -> None:
    """An error body against the spec's 400 schema (the object/status/code/message envelope)."""
    request = MockRequest("https://api.notion.com", method, spec_path, headers={"Notion-Version": NEW})
    _openapi().validate_response(request, MockResponse(r.content, status_code=400, content_type="application/json"))
    assert set(r.json()) >= {"object", "status", "code", "message", "request_id"}
    assert r.json()["object"] == "error" and r.json()["status"] == r.status_code


def _all(client: httpx.Client, path: str, body: dict[str, Any], spec_path: str | None = None) -> list[dict]:
    out: list[dict] = []
    cursor = None
    for _ in range(1000):
        page_body = {**body, **({"start_cursor": cursor} if cursor else {})}
        r = _checked(client, "POST", path, page_body, spec_path)
        assert r.status_code == 200, r.text
        out.extend(r.json()["results"])
        if not r.json()["has_more"]:
            assert r.json()["next_cursor"] is None
            return out
        cursor = r.json()["next_cursor"]
    raise AssertionError("pagination did not end")


def _advance_until(company: Company, table: str, kinds: tuple[str, ...], days: int = 14) -> dict[str, list[str]]:
    """Advance a day at a time until ``table`` has changes of every kind in ``kinds``; the merged change lists.

    The small company is quiet and the clock's rates follow its recent history, so an hour may change nothing.
    """
    merged: dict[str, list[str]] = {"create": [], "update": [], "delete": []}
    for _ in range(days):
        for kind, keys in advance(company, 1440).changes.get(table, {}).items():
            merged[kind].extend(keys)
        if all(merged[k] for k in kinds):
            return merged
    raise AssertionError(f"{days} days of clock produced no {kinds} changes to {table}: {merged}")


def _minute(ts: pd.Timestamp) -> str:
    return ts.floor("min").strftime("%Y-%m-%dT%H:%M:00.000Z")


def _live_pages(company: Company) -> pd.DataFrame:
    p = company["pages"]
    return p[p["deleted_at"].isna() & ~p["archived"]]


def _edited(pages: pd.DataFrame) -> pd.Series:
    return pages[["updated_at", "last_edited_at"]].max(axis=1)


def _biggest_db(company: Company) -> tuple[str, str]:
    canon = _live_pages(company)["database_id"].value_counts().index[0]
    dbs = company["notion_databases"]
    return canon, str(dbs.loc[dbs["database_id"] == canon, "system_id"].iloc[0])


def test_search_pages_sorted_by_last_edited_time(small_company: Company, serve) -> None:
    base = serve(small_company, ["notion"]).url("notion")
    with _client(base, NEW) as c:
        body = {"query": "", "filter": {"property": "object", "value": "page"},
                "sort": {"direction": "ascending", "timestamp": "last_edited_time"}, "page_size": 9}
        pages = _all(c, "/v1/search", body, "/v1/search")
        live = _live_pages(small_company)
        assert sorted(p["id"] for p in pages) == sorted(live["system_id"])
        stamps = [p["last_edited_time"] for p in pages]
        assert stamps == sorted(stamps)
        assert set(stamps) == {_minute(t) for t in _edited(live)}
        sources = _all(c, "/v1/search", {"filter": {"property": "object", "value": "data_source"}}, "/v1/search")
        assert {s["object"] for s in sources} == {"data_source"}
        assert len(sources) == small_company["notion_databases"]["deleted_at"].isna().sum()
        title = str(live["title"].iloc[0])
        hits = _all(c, "/v1/search", {"query": title.upper()}, "/v1/search")
        assert live["system_id"].iloc[0] in {h["id"] for h in hits}
        newest_first = _checked(c, "POST", "/v1/search", {"page_size": 5}, "/v1/search").json()["results"]
        assert [r["last_edited_time"] for r in newest_first] == sorted(
            (r["last_edited_time"] for r in newest_first), reverse=True)
        wrong = {"filter": {"property": "object", "value": "database"}}  # the 2022-06-28 value
        with pytest.raises(InvalidRequestBody):  # the spec agrees the request is invalid under 2025-09-03
            _checked(c, "POST", "/v1/search", wrong, "/v1/search")
        bad = c.post("/v1/search", json=wrong)
        assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
        _error_conforms("post", "/v1/search", bad)
    with _client(base, OLD) as c:
        dbs = _all(c, "/v1/search", {"filter": {"property": "object", "value": "database"}})
        assert {d["object"] for d in dbs} == {"database"}


def test_database_query_filters_on_last_edited_time(small_company: Company, serve) -> None:
    base = serve(small_company, ["notion"]).url("notion")
    canon, db = _biggest_db(small_company)
    live = _live_pages(small_company)
    rows = live[live["database_id"] == canon]
    edited = _edited(rows).dt.floor("min")
    pivot = edited.sort_values().iloc[len(edited) // 2]
    sorts = [{"timestamp": "last_edited_time", "direction": "ascending"}]
    with _client(base, OLD) as c:
        everything = _all(c, f"/v1/databases/{db}/query", {"page_size": 4})
        assert sorted(p["id"] for p in everything) == sorted(rows["system_id"])
        assert all(p["parent"] == {"type": "database_id", "database_id": db} for p in everything)
        on_or_after = _all(c, f"/v1/databases/{db}/query", {"filter": {
            "timestamp": "last_edited_time", "last_edited_time": {"on_or_after": pivot.isoformat()}},
            "sorts": sorts, "page_size": 3})
        assert {p["id"] for p in on_or_after} == set(rows.loc[edited >= pivot, "system_id"])
        assert [p["last_edited_time"] for p in on_or_after] == sorted(p["last_edited_time"] for p in on_or_after)
        after = _all(c, f"/v1/databases/{db}/query", {"filter": {"and": [
            {"timestamp": "last_edited_time", "last_edited_time": {"after": _minute(pivot)}},
            {"property": "Name", "title": {"contains": ""}}]}})
        assert {p["id"] for p in after} == set(rows.loc[edited > pivot, "system_id"])
        before = _all(c, f"/v1/databases/{db}/query", {"filter": {
            "timestamp": "last_edited_time", "last_edited_time": {"before": pivot.isoformat()}}})
        assert len(before) + len(on_or_after) == len(rows)

        def error(body: Any, raw: bytes | None = None) -> dict[str, Any]:
            r = c.post(f"/v1/databases/{db}/query", content=raw if raw is not None else json.dumps(body))
            assert r.status_code == 400, r.text
            return r.json()

        assert error({"page_size": 101})["code"] == "validation_error"
        assert error({"start_cursor": "not-a-cursor"})["code"] == "validation_error"
        assert error({"filter": {"timestamp": "last_edited_time", "last_edited_time": {"soonish": "x"}}})[
            "code"] == "validation_error"
        assert "Could not find property" in error({"filter": {"property": "Mood", "select": {"equals": "x"}}})[
            "message"]
        assert error(None, raw=b"{nope")["code"] == "invalid_json"
        missing = c.post(f"/v1/databases/{'0' * 32}/query", json={})
        assert missing.status_code == 404 and missing.json()["code"] == "object_not_found"
        assert c.post("/v1/databases/xyz/query", json={}).json()["code"] == "validation_error"
        assert c.get("/v1/nothing/here").json()["code"] == "invalid_request_url"


def test_version_header_is_required_and_picks_the_model(small_company: Company, serve) -> None:
    base = serve(small_company, ["notion"]).url("notion")
    _canon, db = _biggest_db(small_company)
    with _client(base, None) as c:
        r = c.post("/v1/search", json={})
        assert r.status_code == 400 and r.json()["object"] == "error" and r.json()["code"] == "missing_version"
    with _client(base, "1999-01-01") as c:
        assert c.post("/v1/search", json={}).json()["code"] == "validation_error"
    with _client(base, NEW) as c:
        old_style = c.post(f"/v1/databases/{db}/query", json={})
        assert old_style.status_code == 400 and old_style.json()["code"] == "invalid_request_url"
        database = c.get(f"/v1/databases/{db}").json()
        ds = database["data_sources"][0]["id"]
        assert ds == data_source_id(db)
        assert c.get(f"/v1/data_sources/{ds}").json()["parent"] == {"type": "database_id", "database_id": db}
        body = {"sorts": [{"property": "Words", "direction": "descending"}], "page_size": 100}
        rows = _checked(c, "POST", f"/v1/data_sources/{ds}/query", body, f"/v1/data_sources/{ds}/query").json()
        assert rows["results"] and all(p["parent"] == {"type": "data_source_id", "data_source_id": ds,
                                                       "database_id": db} for p in rows["results"])
        words = [p["properties"]["Words"]["number"] for p in rows["results"]]
        assert words == sorted(words, reverse=True)
    with _client(base, OLD) as c:
        assert c.get(f"/v1/data_sources/{data_source_id(db)}").json()["code"] == "invalid_request_url"
        assert "properties" in c.get(f"/v1/databases/{db}").json()


def test_trashed_pages_leave_lists_but_stay_readable(small_company: Company, serve) -> None:
    base = serve(small_company, ["notion"]).url("notion")
    pages = small_company["pages"]
    trashed = pages[pages["archived"] | pages["deleted_at"].notna()]
    assert len(trashed), "the generator plants archived pages"
    with _client(base, NEW) as c:
        listed = {p["id"] for p in _all(c, "/v1/search", {"filter": {"property": "object", "value": "page"}})}
        assert not listed & set(trashed["system_id"])
        one = c.get(f"/v1/pages/{trashed['system_id'].iloc[0].replace('-', '')}").json()  # dashless ids work
        assert one["in_trash"] is True and one["archived"] is True
        jsonschema.validate(one, PAGE)
        in_db = trashed[trashed["database_id"].notna()]
        if len(in_db):
            dbs = small_company["notion_databases"].set_index("database_id")["system_id"]
            ds = data_source_id(dbs[in_db["database_id"].iloc[0]])
            with_trash = _all(c, f"/v1/data_sources/{ds}/query", {"in_trash": True}, f"/v1/data_sources/{ds}/query")
            without = _all(c, f"/v1/data_sources/{ds}/query", {}, f"/v1/data_sources/{ds}/query")
            assert in_db["system_id"].iloc[0] in {p["id"] for p in with_trash} - {p["id"] for p in without}
        assert c.get(f"/v1/pages/{'1' * 32}").json()["code"] == "object_not_found"


def test_users_page_through_get_with_query_cursor(small_company: Company, serve) -> None:
    base = serve(small_company, ["notion"]).url("notion")
    with _client(base, OLD) as c:
        users, cursor = [], None
        for _ in range(100):
            r = _checked(c, "GET", "/v1/users", None, "/v1/users", page_size=10,
                         **({"start_cursor": cursor} if cursor else {}))
            users.extend(r.json()["results"])
            cursor = r.json()["next_cursor"]
            if not r.json()["has_more"]:
                break
        people = [u for u in users if u["type"] == "person"]
        assert len({u["id"] for u in users}) == len(users) and any(u["type"] == "bot" for u in users)
        notion = small_company.presence_of("employee", "notion")
        assert {u["id"] for u in people} <= set(notion["system_id"])
        assert all("@" in u["person"]["email"] for u in people)
        emails = notion.set_index("system_id")["email"]
        assert all(u["person"]["email"] == emails[u["id"]].strip() for u in people)
        pages = c.post("/v1/search", json={"filter": {"property": "object", "value": "page"}}).json()["results"]
        authors = {p[k]["id"] for p in pages for k in ("created_by", "last_edited_by")}
        assert authors and authors <= {u["id"] for u in users}  # every author of the live company is a listed user
        assert c.get("/v1/users", params={"page_size": 0}).json()["code"] == "validation_error"
        assert c.get("/v1/users/me").json()["type"] == "bot"


def test_oauth_expiry_refresh_and_throttle(small_company: Company, serve) -> None:
    server = serve(small_company, ["notion"])
    base = server.url("notion")
    with _client(base, OLD, token="nope") as c:
        r = c.post("/v1/search", json={})
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    token_url = f"{base}/v1/oauth/token"
    code = httpx.post(token_url, json={"grant_type": "authorization_code", "code": AUTH_CODE,
                                       "redirect_uri": "http://localhost/cb"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert code.status_code == 200 and code.json()["token_type"] == "bearer" and code.json()["bot_id"]
    grant = httpx.post(token_url, json={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
                       auth=(CLIENT_ID, CLIENT_SECRET)).json()
    assert grant["refresh_token"] != REFRESH_TOKEN  # Notion rotates refresh tokens
    reused = httpx.post(token_url, json={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
                        auth=(CLIENT_ID, CLIENT_SECRET))
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert httpx.post(token_url, json={"grant_type": "refresh_token"}, auth=(CLIENT_ID, "x")).status_code == 401
    with _client(base, OLD, token=grant["access_token"]) as c:
        assert c.post("/v1/search", json={"page_size": 1}).status_code == 200
        server.faults.add("notion", "token_expiry", "/v1/search")
        assert c.post("/v1/search", json={}).json()["code"] == "unauthorized"
        assert c.get("/v1/users").status_code == 401  # the token is dead
    fresh = httpx.post(token_url, json={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
                       auth=(CLIENT_ID, CLIENT_SECRET)).json()
    with _client(base, OLD, token=fresh["access_token"]) as c:
        assert c.get("/v1/users").status_code == 200
        server.faults.add("notion", "throttle", "/v1/search", retry_after=3)
        limited = c.post("/v1/search", json={})
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        assert limited.json()["object"] == "error" and limited.json()["code"] == "rate_limited"
        server.faults.add("notion", "server_error", "/v1/search", status=503)
        down = c.post("/v1/search", json={})
        assert down.status_code == 503 and down.json()["code"] == "service_unavailable"


def test_advance_edits_show_up_in_incremental_queries(fresh_company: Company, serve) -> None:
    cursor = fresh_company.now.floor("min")  # what a connector synced up to
    changes = _advance_until(fresh_company, "pages", ("update",))
    base = serve(fresh_company, ["notion"]).url("notion")
    pages = fresh_company["pages"].set_index("page_id")
    touched = set(pages.loc[changes["update"] + changes["create"], "system_id"])
    with _client(base, OLD) as c:
        recent = []
        for page in _all(c, "/v1/search", {"filter": {"property": "object", "value": "page"}, "page_size": 20}):
            if page["last_edited_time"] < _minute(cursor):  # newest first: stop at the cursor
                break
            recent.append(page)
        assert touched <= {p["id"] for p in recent}
        for db in {pages.loc[pid, "database_id"] for pid in changes["update"] + changes["create"]} - {None}:
            if not isinstance(db, str):
                continue
            db_id = fresh_company["notion_databases"].set_index("database_id").loc[db, "system_id"]
            got = _all(c, f"/v1/databases/{db_id}/query", {"filter": {
                "timestamp": "last_edited_time", "last_edited_time": {"on_or_after": cursor.isoformat()}}})
            want = {pages.loc[pid, "system_id"] for pid in changes["update"] + changes["create"]
                    if pages.loc[pid, "database_id"] == db}
            assert want <= {p["id"] for p in got}
        for pid in changes["delete"]:
            assert c.get(f"/v1/pages/{pages.loc[pid, 'system_id']}").json()["in_trash"] is True
