"""Intercom simulator over real HTTP: conformance to the 2.16 OpenAPI file, cursors, search, deletes, auth, advance.

Spec quirks worked around in :func:`_spec` (both are the OpenAPI file's, not the API's):

* ``{"$ref": …, "nullable": true}`` — OpenAPI 3.0 ignores siblings of ``$ref``, so the file cannot say that
  ``conversation.company`` may be null although the API sends null; rewritten as ``anyOf [$ref, null]``.
* ``admin_assignee_id`` is typed ``integer`` without ``nullable``, but unassigned conversations carry null.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.intercom import Intercom

SPEC = Path(__file__).resolve().parents[2] / "sophia_lib/sandbox/specs/intercom/api.intercom.io.yaml"
AUTH = {"Authorization": f"Bearer {Intercom.ACCESS_TOKEN}", "Intercom-Version": "2.16", "Accept": "application/json"}


def _fix(node: Any) -> Any:
    if isinstance(node, dict):
        if "$ref" in node and node.get("nullable"):
            return {"anyOf": [{"$ref": node["$ref"]}, {"enum": [None]}]}
        return {k: _fix(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix(v) for v in node]
    return node


@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC.open() as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = _fix(spec)
    for name in ("conversation", "conversation_list_item"):
        spec["components"]["schemas"][name]["properties"]["admin_assignee_id"]["nullable"] = True
    return spec


def conforms(path: str, method: str, response: httpx.Response) -> None:
    """Validate a response body against the spec's schema for (path, method, status)."""
    spec = _spec()
    op = spec["paths"][path][method]
    status = str(response.status_code)
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    validator = OAS30Validator({**schema, "components": spec["components"]})
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, f"{method.upper()} {path} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5])


def _live(company: Company, entity: str) -> pd.DataFrame:
    pres = company.presence_of(entity, "intercom")
    canon, key = (company["people"], "person_id") if entity == "person" else (company["accounts"], "account_id")
    live = set(canon.loc[canon["deleted_at"].isna(), key])
    return pres[pres["deleted_at"].isna() & pres["entity_id"].isin(live)]


def _walk_list(base: str, path: str, key: str, per_page: int) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        params = {"per_page": per_page} | ({"starting_after": cursor} if cursor else {})
        r = httpx.get(f"{base}{path}", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        out += r.json()[key]
        nxt = r.json()["pages"].get("next")
        if not nxt:
            return out
        cursor = nxt["starting_after"]


def _walk_search(base: str, path: str, key: str, query: dict[str, Any], per_page: int = 150,
                 sort: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
    out, cursor, total = [], None, -1
    while True:
        body: dict[str, Any] = {"query": query, "pagination": {"per_page": per_page}}
        if cursor:
            body["pagination"]["starting_after"] = cursor
        if sort:
            body["sort"] = sort
        r = httpx.post(f"{base}{path}", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        out += r.json()[key]
        total = r.json()["total_count"]
        nxt = r.json()["pages"].get("next")
        if not nxt:
            return out, total
        cursor = nxt["starting_after"]


def test_responses_conform_to_the_openapi_description(small_company: Company, serve) -> None:
    base = serve(small_company, ["intercom"]).url("intercom")
    since = {"field": "updated_at", "operator": ">", "value": 0}
    contacts = httpx.get(f"{base}/contacts", params={"per_page": 150}, headers=AUTH)
    conforms("/contacts", "get", contacts)
    conforms("/contacts/{contact_id}", "get",
             httpx.get(f"{base}/contacts/{contacts.json()['data'][0]['id']}", headers=AUTH))
    conforms("/contacts/search", "post", httpx.post(f"{base}/contacts/search", json={"query": since}, headers=AUTH))
    conversations = httpx.get(f"{base}/conversations", params={"per_page": 150}, headers=AUTH)
    conforms("/conversations", "get", conversations)
    for conv in conversations.json()["conversations"][:40]:
        conforms("/conversations/{conversation_id}", "get",
                 httpx.get(f"{base}/conversations/{conv['id']}", headers=AUTH))
    conforms("/conversations/search", "post", httpx.post(
        f"{base}/conversations/search", json={"query": since, "pagination": {"per_page": 150}}, headers=AUTH))
    conforms("/companies", "get", httpx.get(f"{base}/companies", params={"per_page": 60}, headers=AUTH))
    conforms("/companies/scroll", "get", httpx.get(f"{base}/companies/scroll", headers=AUTH))
    conforms("/admins", "get", httpx.get(f"{base}/admins", headers=AUTH))
    unauthorized = httpx.get(f"{base}/contacts", headers={"Intercom-Version": "2.16"})
    assert unauthorized.status_code == 401 and unauthorized.json()["errors"][0]["code"] == "unauthorized"
    conforms("/contacts", "get", unauthorized)
    missing = httpx.get(f"{base}/conversations/1", headers=AUTH)
    assert missing.status_code == 404
    conforms("/conversations/{conversation_id}", "get", missing)


def test_contacts_cursor_pages_cover_every_contact(small_company: Company, serve) -> None:
    base = serve(small_company, ["intercom"]).url("intercom")
    contacts = _walk_list(base, "/contacts", "data", 40)
    expected = _live(small_company, "person")
    assert sorted(c["id"] for c in contacts) == sorted(expected["system_id"].astype(str))
    assert [c["created_at"] for c in contacts] == sorted(c["created_at"] for c in contacts)
    first = httpx.get(f"{base}/contacts", params={"per_page": 40}, headers=AUTH).json()
    assert first["total_count"] == len(contacts) and first["pages"]["total_pages"] == -(-len(contacts) // 40)
    conversations = _walk_list(base, "/conversations", "conversations", 150)
    assert len(conversations) == int(small_company["conversations"]["deleted_at"].isna().sum())
    stamps = [c["updated_at"] for c in conversations]
    assert stamps == sorted(stamps, reverse=True)  # most recently updated first
    companies, page = [], 1
    while True:
        body = httpx.get(f"{base}/companies", params={"per_page": 20, "page": page}, headers=AUTH).json()
        companies += body["data"]
        if page >= body["pages"]["total_pages"]:
            break
        page += 1
    scrolled, param = [], None
    while True:
        body = httpx.get(f"{base}/companies/scroll", params={"scroll_param": param} if param else {},
                         headers=AUTH).json()
        if not body["data"]:
            break
        scrolled += body["data"]
        param = body["scroll_param"]
    expected_companies = sorted(_live(small_company, "account")["system_id"].astype(str))
    assert sorted(c["id"] for c in companies) == sorted(c["id"] for c in scrolled) == expected_companies


def test_search_incremental_updated_at(small_company: Company, serve) -> None:
    base = serve(small_company, ["intercom"]).url("intercom")
    conv = small_company["conversations"]
    conv = conv[conv["deleted_at"].isna()]
    cut = int(conv["updated_at"].quantile(0.7).value // 10**9)
    query = {"operator": "AND", "value": [{"field": "updated_at", "operator": ">", "value": cut}]}
    found, total = _walk_search(base, "/conversations/search", "conversations", query, per_page=25)
    expected = conv.loc[conv["updated_at"].astype("int64") // 10**9 > cut, "system_id"].astype(str)
    assert total == len(found) and sorted(c["id"] for c in found) == sorted(expected)
    assert [c["updated_at"] for c in found] == sorted(c["updated_at"] for c in found)
    nested = {"operator": "AND", "value": [
        {"field": "updated_at", "operator": ">", "value": str(cut)},
        {"operator": "OR", "value": [{"field": "state", "operator": "=", "value": "open"},
                                     {"field": "state", "operator": "=", "value": "snoozed"}]}]}
    still_open, _ = _walk_search(base, "/conversations/search", "conversations", nested,
                                 sort={"field": "created_at", "order": "descending"})
    assert {c["id"] for c in still_open} == {c["id"] for c in found if c["state"] != "closed"}
    assert [c["created_at"] for c in still_open] == sorted((c["created_at"] for c in still_open), reverse=True)
    people = _live(small_company, "person")
    ids, total = _walk_search(base, "/contacts/search", "data",
                              {"field": "updated_at", "operator": ">=", "value": 0}, per_page=100)
    assert total == len(ids) == len(people)


def test_errors_in_intercom_envelope(small_company: Company, serve) -> None:
    base = serve(small_company, ["intercom"]).url("intercom")
    bad = [
        httpx.post(f"{base}/contacts/search", json={"query": {"field": "shoe_size", "operator": "=", "value": 1}},
                   headers=AUTH),
        httpx.post(f"{base}/contacts/search", json={"query": {"field": "email", "operator": "LIKE", "value": "a"}},
                   headers=AUTH),
        httpx.post(f"{base}/conversations/search", content=b"{nope", headers=AUTH),
        httpx.post(f"{base}/conversations/search", json={"pagination": {"per_page": 5}}, headers=AUTH),
        httpx.get(f"{base}/contacts", params={"per_page": 151}, headers=AUTH),
        httpx.get(f"{base}/contacts", params={"starting_after": "%%%"}, headers=AUTH),
        httpx.get(f"{base}/contacts", headers=AUTH | {"Intercom-Version": "1.0"}),
    ]
    for r in bad:
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["type"] == "error.list" and body["request_id"] and body["errors"][0]["code"]
        conforms("/contacts/search", "post", r)
    assert bad[-1].json()["errors"][0]["code"] == "intercom_version_invalid"


def test_deleted_records_vanish_and_404(fresh_company: Company, serve) -> None:
    pres = fresh_company["presence"]
    row = pres.index[(pres["system"] == "intercom") & (pres["entity"] == "person") & pres["deleted_at"].isna()][0]
    gone = str(pres.at[row, "system_id"])
    pres.loc[row, ["deleted_at", "updated_at"]] = fresh_company.now - pd.Timedelta(minutes=1)
    conv = fresh_company["conversations"]
    conv.loc[conv.index[0], ["deleted_at", "updated_at"]] = fresh_company.now - pd.Timedelta(minutes=1)
    gone_conv = str(conv.at[conv.index[0], "system_id"])
    base = serve(fresh_company, ["intercom"]).url("intercom")
    assert gone not in {c["id"] for c in _walk_list(base, "/contacts", "data", 150)}
    r = httpx.get(f"{base}/contacts/{gone}", headers=AUTH)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "not_found"
    assert httpx.get(f"{base}/conversations/{gone_conv}", headers=AUTH).status_code == 404
    found, _ = _walk_search(base, "/conversations/search", "conversations",
                            {"field": "updated_at", "operator": ">", "value": 0})
    assert gone_conv not in {c["id"] for c in found}


def test_auth_static_token_expiry_fault_and_oauth(small_company: Company, serve) -> None:
    server = serve(small_company, ["intercom"])
    base = server.url("intercom")
    assert httpx.get(f"{base}/admins", headers={"Authorization": "Bearer nope"}).status_code == 401
    server.faults.add("intercom", "token_expiry", "/admins")
    r = httpx.get(f"{base}/admins", headers=AUTH)
    assert r.status_code == 401 and r.json()["errors"][0] == {"code": "unauthorized", "message": "Access Token Invalid"}
    assert httpx.get(f"{base}/admins", headers=AUTH).status_code == 200  # tokens do not expire: retry works
    tok = httpx.post(f"{base}/auth/eagle/token", data={"code": Intercom.AUTH_CODE, "client_id": Intercom.CLIENT_ID,
                                                        "client_secret": Intercom.CLIENT_SECRET}).json()
    assert tok["token_type"] == "Bearer" and "refresh_token" not in tok
    assert httpx.get(f"{base}/admins", headers={"Authorization": f"Bearer {tok['access_token']}"}).status_code == 200
    ok = httpx.get(f"{base}/admins", headers={"Authorization": f"Bearer {Intercom.ACCESS_TOKEN}"})
    assert ok.status_code == 200
    assert all(h in ok.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))


@pytest.mark.parametrize("path", ["/contacts", "/conversations/search"])
def test_throttle_429_with_rate_limit_headers(small_company: Company, serve, path: str) -> None:
    server = serve(small_company, ["intercom"])
    base = server.url("intercom")
    server.faults.add("intercom", "throttle", path)
    method = "post" if path.endswith("search") else "get"
    kwargs: dict[str, Any] = {}
    if method == "post":
        kwargs["json"] = {"query": {"field": "id", "operator": "!=", "value": "0"}}
    r = httpx.request(method, f"{base}{path}", headers=AUTH, **kwargs)
    assert r.status_code == 429
    assert r.headers["X-RateLimit-Remaining"] == "0" and int(r.headers["X-RateLimit-Reset"]) > 0
    assert r.json()["errors"][0]["code"] == "rate_limit_exceeded"
    assert httpx.request(method, f"{base}{path}", headers=AUTH, **kwargs).status_code == 200


def test_advance_changes_visible_through_search(fresh_company: Company, serve) -> None:
    server = serve(fresh_company, ["intercom"])
    base = server.url("intercom")
    since = int(fresh_company.now.value // 10**9)
    query = {"field": "updated_at", "operator": ">", "value": since}
    before, _ = _walk_search(base, "/conversations/search", "conversations", query)
    assert before == []
    server.sandbox.advance(4 * 1440)
    conv = fresh_company["conversations"]
    changed = conv.loc[(conv["updated_at"].astype("int64") // 10**9 > since) & conv["deleted_at"].isna(), "system_id"]
    assert len(changed)
    after, total = _walk_search(base, "/conversations/search", "conversations", query)
    assert sorted(c["id"] for c in after) == sorted(changed.astype(str)) and total == len(changed)
    for c in after:  # new conversations are fetchable with their parts
        r = httpx.get(f"{base}/conversations/{c['id']}", headers=AUTH)
        assert r.status_code == 200 and r.json()["conversation_parts"]["type"] == "conversation_part.list"
