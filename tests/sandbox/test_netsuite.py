"""NetSuite simulator over real HTTP: OAuth 2.0 (refresh and M2M), SuiteQL paging, incremental filters,
deletes, the 100k cap, errors, throttle, and conformance to the documented shapes (no official OpenAPI
description of SuiteQL is shipped, so the schemas below are written from VENDOR-APIS.md section 3)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

import httpx
import jsonschema
import pandas as pd
from joserfc import jwt
from joserfc.jwk import RSAKey

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.vendors.netsuite import CERTIFICATE_ID, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, TOKEN_PATH

SUITEQL = "/services/rest/query/v1/suiteql"
ERROR_SCHEMA = {
    "type": "object", "required": ["type", "title", "status", "o:errorDetails"],
    "properties": {
        "type": {"type": "string", "pattern": r"^https://www\.rfc-editor\.org/rfc/rfc\d+\.html#section-[\d.]+$"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "o:errorDetails": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["detail", "o:errorCode"],
            "properties": {"detail": {"type": "string"}, "o:errorCode": {"type": "string"}}}},
    },
}
PAGE_SCHEMA = {
    "type": "object", "required": ["links", "count", "hasMore", "items", "offset", "totalResults"],
    "properties": {
        "links": {"type": "array", "items": {"type": "object", "required": ["rel", "href"], "properties": {
            "rel": {"enum": ["first", "previous", "next", "last", "self"]}, "href": {"type": "string"}}}},
        "count": {"type": "integer"}, "hasMore": {"type": "boolean"}, "offset": {"type": "integer"},
        "totalResults": {"type": "integer"},
        "items": {"type": "array", "items": {
            "type": "object", "required": ["links"],
            "properties": {"links": {"type": "array", "maxItems": 0}},
            "propertyNames": {"pattern": "^[a-z0-9_]+$"},
            "additionalProperties": {"type": "string"}}},  # values are strings; null columns are omitted
    },
}
ACCOUNT_DATE = r"^\d{1,2}/\d{1,2}/\d{4}$"


def _token(base: str, **data: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN} | data
    return httpx.post(base + TOKEN_PATH, data=form, auth=(CLIENT_ID, CLIENT_SECRET))


def _auth(base: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(base).json()['access_token']}", "Prefer": "transient"}


def _q(base: str, q: str, auth: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.post(base + SUITEQL, params=params, json={"q": q}, headers=auth)


def _all(base: str, q: str, auth: dict[str, str], limit: int = 1000) -> list[dict[str, Any]]:
    """Every row, following links[rel=next] until hasMore is false."""
    r = _q(base, q, auth, limit=limit, offset=0)
    items: list[dict[str, Any]] = []
    for _ in range(1000):
        assert r.status_code == 200, r.text
        body = r.json()
        jsonschema.validate(body, PAGE_SCHEMA)
        assert body["count"] == len(body["items"]) and body["offset"] == len(items)
        items += body["items"]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not body["hasMore"]:
            assert not nxt and len(items) == body["totalResults"]
            return items
        r = httpx.post(nxt[0], json={"q": q}, headers=auth)
    raise AssertionError("paging did not end")


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body["status"] == status and body["o:errorDetails"][0]["o:errorCode"] == code, body
    return body["o:errorDetails"][0]["detail"]


def test_token_refresh_with_basic_client_auth(small_company: Company, serve) -> None:
    base = serve(small_company, ["netsuite"]).url("netsuite")
    body = _token(base).json()
    assert set(body) == {"access_token", "expires_in", "token_type"} and body["expires_in"] == "3600"
    assert _token(base, refresh_token="expired").json() == {"error": "invalid_grant"}
    wrong = httpx.post(base + TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
                       auth=(CLIENT_ID, "wrong"))
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_client"}
    assert _token(base, grant_type="password").json() == {"error": "unsupported_grant_type"}


def test_client_credentials_with_a_jwt_assertion(small_company: Company, serve) -> None:
    base = serve(small_company, ["netsuite"]).url("netsuite")
    key = RSAKey.generate_key(2048)

    def assertion(**claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": CLIENT_ID, "scope": ["rest_webservices"], "aud": base + TOKEN_PATH, "iat": now,
                   "exp": now + 3000} | claims
        return jwt.encode({"alg": "PS256", "typ": "JWT", "kid": CERTIFICATE_ID}, payload, key, algorithms=["PS256"])

    def post(token: str) -> httpx.Response:
        return httpx.post(base + TOKEN_PATH, data={
            "grant_type": "client_credentials", "client_assertion": token,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})

    ok = post(assertion())
    assert ok.status_code == 200 and "refresh_token" not in ok.json()
    r = _q(base, "SELECT id FROM customer", {"Authorization": f"Bearer {ok.json()['access_token']}",
                                              "Prefer": "transient"}, limit=1)
    assert r.status_code == 200
    assert post(assertion(iss="someone-else")).status_code == 401
    assert post(assertion(exp=int(time.time()) - 10)).status_code == 401
    assert post(assertion(scope=["restlets"])).status_code == 401
    assert post("not.a-jwt").status_code == 400


def test_suiteql_pages_with_links_and_offsets(small_company: Company, serve) -> None:
    base = serve(small_company, ["netsuite"]).url("netsuite")
    auth = _auth(base)
    lines = _all(base, "SELECT uniquekey, transaction, id, mainline, netamount, quantity FROM transactionline "
                       "ORDER BY uniquekey", auth, limit=250)
    keys = [int(i["uniquekey"]) for i in lines]
    assert keys == sorted(set(keys))
    live_lines = small_company.live("invoice_lines")
    live_lines = live_lines[live_lines["invoice_id"].isin(small_company.live("invoices")["invoice_id"])]
    assert len(lines) == len(live_lines) + len(small_company.live("invoices"))  # item lines + one mainline each
    first = _q(base, "SELECT id FROM transactionline", auth, limit=250, offset=250).json()
    rels = {link["rel"]: link["href"] for link in first["links"]}
    assert set(rels) == {"first", "previous", "next", "last", "self"}
    assert "offset=500" in rels["next"] and "limit=250" in rels["next"] and "offset=250" in rels["self"]
    # mainline rows carry the total; item lines are credits (negative), so they sum to minus the total
    by_tran: dict[str, dict[str, float]] = defaultdict(lambda: {"T": 0.0, "F": 0.0})
    for line in lines:
        by_tran[line["transaction"]][line["mainline"]] += float(line["netamount"])
        if line["mainline"] == "F":
            assert float(line["quantity"]) < 0
        else:
            assert "quantity" not in line  # null columns are omitted
    assert all(abs(v["T"] + v["F"]) < 0.01 for v in by_tran.values())


def test_incremental_lastmodifieddate_with_to_date_and_to_char(small_company: Company, serve) -> None:
    base = serve(small_company, ["netsuite"]).url("netsuite")
    auth = _auth(base)
    rows = _all(base, "SELECT id, tranid, trandate, foreigntotal, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') "
                      "AS lmd FROM transaction ORDER BY lastmodifieddate, id", auth)
    assert rows and all(re.fullmatch(ACCOUNT_DATE, r["trandate"]) for r in rows)
    assert all(re.fullmatch(r"\d+\.\d{2}", r["foreigntotal"]) for r in rows)
    stamps = [r["lmd"] for r in rows]
    assert stamps == sorted(stamps)
    pivot = stamps[len(stamps) // 2]
    after = _all(base, "SELECT id, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lmd FROM transaction "
                       f"WHERE lastmodifieddate > TO_DATE('{pivot}', 'YYYY-MM-DD HH24:MI:SS') ORDER BY lmd", auth)
    from_ = _all(base, "SELECT id FROM transaction WHERE lastmodifieddate >= "
                       f"TO_DATE('{pivot}', 'YYYY-MM-DD HH24:MI:SS')", auth)
    assert [r["lmd"] for r in after] == [s for s in stamps if s > pivot]
    assert len(from_) == len(after) + stamps.count(pivot)
    # keyset paging by id inside a window, and the account-format date as a plain string literal
    last_id = rows[len(rows) // 3]["id"]
    by_id = _all(base, f"SELECT id FROM transaction WHERE id > {last_id} AND trandate >= '1/1/2020' ORDER BY id", auth)
    assert [int(r["id"]) for r in by_id] == sorted(int(r["id"]) for r in rows if int(r["id"]) > int(last_id))
    # the date preference: lastmodifieddate without TO_CHAR is the account-format date of the same moment
    plain = _q(base, "SELECT id, lastmodifieddate FROM transaction ORDER BY id", auth, limit=5).json()["items"]
    chars = {r["id"]: r["lmd"] for r in rows}
    for item in plain:
        stamp = pd.Timestamp(chars[item["id"]])
        assert item["lastmodifieddate"] == f"{stamp.month}/{stamp.day}/{stamp.year}"


def test_errors_in_netsuite_envelope(small_company: Company, serve) -> None:
    server = serve(small_company, ["netsuite"])
    base = server.url("netsuite")
    auth = _auth(base)
    no_prefer = {"Authorization": auth["Authorization"]}
    _error(_q(base, "SELECT id FROM customer", no_prefer), 400, "INVALID_HEADER")
    assert "Field 'nope'" in _error(_q(base, "SELECT id, nope FROM customer", auth), 400, "INVALID_PARAMETER")
    assert "Record 'widget'" in _error(_q(base, "SELECT id FROM widget", auth), 400, "INVALID_PARAMETER")
    _error(_q(base, "SELECT FROM customer", auth), 400, "INVALID_PARAMETER")
    _error(_q(base, "SELECT id FROM transaction WHERE lastmodifieddate > TO_DATE('2025-13-45', 'YYYY-MM-DD')",
              auth), 400, "INVALID_PARAMETER")
    _error(_q(base, "SELECT id FROM customer", auth, limit=1001), 400, "INVALID_PARAMETER")
    _error(_q(base, "SELECT id FROM customer", auth, offset=-1), 400, "INVALID_PARAMETER")
    _error(httpx.post(base + SUITEQL, content=b"{not json", headers=auth), 400, "INVALID_PARAMETER")
    _error(httpx.post(base + SUITEQL, json={"query": "SELECT id FROM customer"}, headers=auth), 400,
           "INVALID_PARAMETER")
    # the 100k cap (lowered here): an offset at or past it is refused, so connectors window their queries
    server.sandbox.vendors["netsuite"].max_results = 100
    capped = _q(base, "SELECT id FROM transactionline", auth, limit=50, offset=50).json()
    assert capped["hasMore"] is False and capped["totalResults"] > 100
    _error(_q(base, "SELECT id FROM transactionline", auth, limit=50, offset=100), 400, "INVALID_PARAMETER")


def test_auth_expiry_throttle_and_server_error(small_company: Company, serve) -> None:
    server = serve(small_company, ["netsuite"])
    base = server.url("netsuite")
    q = "SELECT id FROM customer"
    assert "Invalid login attempt" in _error(_q(base, q, {"Prefer": "transient"}), 401, "INVALID_LOGIN")
    auth = _auth(base)
    server.faults.add("netsuite", "token_expiry", "*/suiteql")
    _error(_q(base, q, auth), 401, "INVALID_LOGIN")
    _error(_q(base, q, auth), 401, "INVALID_LOGIN")
    assert _q(base, q, _auth(base)).status_code == 200
    auth = _auth(base)
    server.faults.add("netsuite", "throttle", "*/suiteql")
    throttled = _q(base, q, auth)
    assert _error(throttled, 429, "CONCURRENCY_LIMIT_EXCEEDED") == "Request Limit Exceeded"
    assert throttled.json()["title"] == "Too Many Requests"
    server.faults.add("netsuite", "server_error", "*/suiteql", status=503)
    _error(_q(base, q, auth), 503, "UNEXPECTED_ERROR")
    assert _q(base, q, auth).status_code == 200


def test_every_table_serves_star_and_lookups_join_up(small_company: Company, serve) -> None:
    base = serve(small_company, ["netsuite"]).url("netsuite")
    auth = _auth(base)
    for table in ("customer", "transaction", "transactionline", "budget", "department", "item", "account",
                  "accountingperiod", "deletedrecord"):
        r = _q(base, f"SELECT * FROM {table}", auth, limit=20)
        assert r.status_code == 200, r.text
        jsonschema.validate(r.json(), PAGE_SCHEMA)
    departments = {d["id"] for d in _all(base, "SELECT id, name FROM department", auth)}
    budgets = _all(base, "SELECT id, department, period, amount FROM budget", auth)
    assert budgets and {b["department"] for b in budgets} <= departments
    live = small_company.live("budgets")
    assert len(budgets) == int((live["created_at"] <= small_company.now).sum())
    customers = {c["id"] for c in _all(base, "SELECT id FROM customer WHERE isinactive = 'F' OR isinactive = 'T'",
                                       auth)}
    entities = {t["entity"] for t in _all(base, "SELECT entity FROM transaction", auth) if "entity" in t}
    assert entities and len(entities & customers) / len(entities) > 0.8


def test_advance_and_deletes_show_through_lastmodifieddate_and_deletedrecord(fresh_company: Company, serve) -> None:
    server = serve(fresh_company, ["netsuite"])
    base = server.url("netsuite")
    auth = _auth(base)
    lmd = "TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')"
    newest = _q(base, f"SELECT {lmd} AS lmd FROM transaction ORDER BY lastmodifieddate DESC", auth,
                limit=1).json()["items"][0]["lmd"]
    since = f"TO_DATE('{newest}', 'YYYY-MM-DD HH24:MI:SS')"
    before = fresh_company.now
    for _ in range(6):  # advance until some invoice changed (a small company bills a few times a week)
        server.sandbox.advance(3 * 24 * 60)
        inv = fresh_company["invoices"]
        changed = set(inv.loc[inv["updated_at"] > before, "system_id"])
        if changed:
            break
    got = _all(base, f"SELECT id FROM transaction WHERE lastmodifieddate > {since}", auth)
    assert changed and {r["id"] for r in got} == changed

    # a delete (as the contract records it) leaves the transaction list and lands in deletedrecord
    victim = inv.index[inv["deleted_at"].isna()][0]
    when = fresh_company.now + pd.Timedelta(minutes=5)
    inv.loc[victim, ["deleted_at", "updated_at"]] = when
    server.sandbox.vendors["netsuite"].render()
    gone = _all(base, f"SELECT recordtype, recordid, name, TO_CHAR(deleteddate, 'YYYY-MM-DD HH24:MI:SS') AS dd "
                      f"FROM deletedrecord WHERE deleteddate > {since} AND recordtype = 'invoice'", auth)
    assert [(g["recordid"], g["name"]) for g in gone] == [(inv.loc[victim, "system_id"], inv.loc[victim, "tran_id"])]
    assert _all(base, f"SELECT id FROM transaction WHERE id = {inv.loc[victim, 'system_id']}", auth) == []
    assert _all(base, f"SELECT id FROM transactionline WHERE transaction = {inv.loc[victim, 'system_id']}",
                auth) == []
