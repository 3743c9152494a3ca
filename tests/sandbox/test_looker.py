"""Looker simulator over real HTTP: login, Looks, running Looks against the company's numbers, errors,
throttling, token expiry, and conformance to Looker's own OpenAPI 3 description (Looker.4.0.oas.json)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sandbox.vendors.looker import Looker

SPEC_PATH = Path(__file__).resolve().parents[2] / "sophia_lib/sandbox/specs/looker/Looker.4.0.oas.json"
CLIENT = {"client_id": Looker.CLIENT_ID, "client_secret": Looker.CLIENT_SECRET}


@functools.cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@functools.cache
def registry() -> Registry:
    return Registry().with_resource("urn:looker", Resource.from_contents(spec(), default_specification=DRAFT4))


def check_response(path: str, method: str, response: httpx.Response) -> None:
    """Validate a response body against the schema the spec gives that path, method and status.

    OpenAPI 3.0 ``nullable`` is honoured (OAS30Validator); ``$ref`` is resolved through a registry
    holding the whole document. Looker's schemas set no ``additionalProperties``, so object keys are
    also checked against the declared ``properties`` (a typo'd field would otherwise pass).
    """
    operation = spec()["paths"][path][method]
    media = operation["responses"][str(response.status_code)]["content"]["application/json"]
    schema = json.loads(json.dumps(media["schema"]).replace('"#/components', '"urn:looker#/components'))
    body = response.json()
    errors = [e.message for e in OAS30Validator(schema, registry=registry()).iter_errors(body)]
    assert errors == [], errors
    item_schema = schema.get("items", schema)
    ref = item_schema.get("$ref", "").rsplit("/", 1)[-1]
    if ref:
        declared = set(spec()["components"]["schemas"][ref]["properties"])
        for item in body if isinstance(body, list) else [body]:
            assert set(item) <= declared, set(item) - declared


def login(server: SandboxServer) -> dict[str, str]:
    r = httpx.post(server.url("looker") + "/api/4.0/login", data=CLIENT)
    assert r.status_code == 200, r.text
    return {"Authorization": f"token {r.json()['access_token']}"}


def api(server: SandboxServer) -> str:
    return server.url("looker") + "/api/4.0"


def test_login_looks_and_detail_conform_to_the_official_spec(small_company: Company,
                                                             serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["looker"])
    token = httpx.post(api(server) + "/login", data=CLIENT)
    check_response("/login", "post", token)
    assert token.json()["token_type"] == "Bearer" and token.json()["expires_in"] == 3600
    auth = {"Authorization": f"token {token.json()['access_token']}"}
    looks = httpx.get(api(server) + "/looks", headers=auth)
    check_response("/looks", "get", looks)
    live = small_company.live("looks")
    assert sorted(x["id"] for x in looks.json()) == sorted(live["system_id"])
    detail = httpx.get(api(server) + f"/looks/{looks.json()[0]['id']}", headers=auth)
    check_response("/looks/{look_id}", "get", detail)
    look = detail.json()
    row = live.set_index("system_id").loc[look["id"]]
    assert look["query"]["fields"] == json.loads(row["fields"]) and look["query"]["view"] == row["view"]
    assert look["title"] == row["title"] and look["deleted"] is False
    search = httpx.get(api(server) + "/looks/search", headers=auth, params={"sorts": "updated_at desc"})
    check_response("/looks/search", "get", search)
    stamps = [x["updated_at"] for x in search.json()]
    assert stamps == sorted(stamps, reverse=True)
    missing = httpx.get(api(server) + "/looks/999999", headers=auth)
    assert missing.status_code == 404
    check_response("/looks/{look_id}", "get", missing)
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}  # also accepted
    assert httpx.get(api(server) + "/looks", headers=bearer).status_code == 200


def test_fields_limit_and_offset(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["looker"])
    auth = login(server)
    every = httpx.get(api(server) + "/looks", headers=auth).json()
    slim = httpx.get(api(server) + "/looks", headers=auth, params={"fields": "id,title,updated_at"}).json()
    assert all(set(x) == {"id", "title", "updated_at"} for x in slim)
    window = httpx.get(api(server) + "/looks/search", headers=auth,
                       params={"limit": 3, "offset": 2, "sorts": "id"}).json()
    by_id = sorted(every, key=lambda x: int(x["id"]))
    assert [x["id"] for x in window] == [x["id"] for x in by_id[2:5]]
    bad = httpx.get(api(server) + "/looks/search", headers=auth, params={"limit": "many"})
    assert bad.status_code == 400 and set(bad.json()) == {"message", "documentation_url"}


def _run(server: SandboxServer, auth: dict[str, str], title: str) -> list[dict[str, Any]]:
    look = next(x for x in httpx.get(api(server) + "/looks", headers=auth).json() if x["title"] == title)
    r = httpx.get(api(server) + f"/looks/{look['id']}/run/json", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_running_looks_computes_the_companys_numbers(small_company: Company,
                                                     serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["looker"])
    auth = login(server)
    opps = small_company.live("opportunities")
    pipeline = _run(server, auth, "Pipeline by stage")
    expected = opps[~opps["is_closed"]].groupby("stage")["amount"].sum()
    assert {r["opportunities.stage"]: r["opportunities.total_amount"] for r in pipeline} == \
        pytest.approx(expected.to_dict())
    assert [r["opportunities.total_amount"] for r in pipeline] == sorted(expected, reverse=True)  # default sort
    bookings = _run(server, auth, "Bookings by month")
    won = opps[opps["is_won"]]
    assert sum(r["opportunities.total_amount"] for r in bookings) == pytest.approx(won["amount"].sum())
    months = [r["opportunities.close_month"] for r in bookings]
    assert months == sorted(months, reverse=True) and all(len(m) == 7 for m in months)
    volume = _run(server, auth, "Support volume")
    assert sum(r["conversations.count"] for r in volume) == len(small_company.live("conversations"))
    for title in ("New pipeline by week", "Win rate by segment", "ARR by month", "CSAT trend", "Collections"):
        rows = _run(server, auth, title)
        assert rows and "looker_error" not in rows[0], (title, rows[:1])
    rates = {r["accounts.segment"]: r["opportunities.win_rate"] for r in _run(server, auth, "Win rate by segment")}
    assert all(0 <= v <= 1 for v in rates.values())

    inline = httpx.post(api(server) + "/queries/run/json", headers=auth, json={
        "model": "sophia_revenue", "view": "touchpoints",
        "fields": ["touchpoints.channel", "touchpoints.count"],
        "filters": {"touchpoints.occurred_date": "after 2026/01/01", "touchpoints.channel": "-direct"},
        "sorts": ["touchpoints.channel"], "limit": "3"})
    rows = inline.json()
    touches = small_company.live("touchpoints")
    sel = touches[(touches["occurred_at"] >= "2026-01-01") & (touches["channel"] != "direct")]
    counts = sel.groupby("channel").size().sort_index()
    assert rows == [{"touchpoints.channel": c, "touchpoints.count": int(n)} for c, n in counts.head(3).items()]
    csv_text = httpx.post(api(server) + "/queries/run/csv", headers=auth, json={
        "model": "sophia_revenue", "view": "conversations", "fields": ["conversations.state", "conversations.count"]})
    assert csv_text.text.splitlines()[0] == "conversations.state,conversations.count"
    created = httpx.post(api(server) + "/queries", headers=auth, json={
        "model": "sophia_revenue", "view": "conversations", "fields": ["conversations.count"]}).json()
    again = httpx.get(api(server) + f"/queries/{created['id']}/run/json", headers=auth).json()
    assert again == [{"conversations.count": len(small_company.live("conversations"))}]


def test_errors_throttle_and_token_expiry(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["looker"])
    bad_login = httpx.post(api(server) + "/login", data={"client_id": "x", "client_secret": "y"})
    assert bad_login.status_code == 404
    check_response("/login", "post", bad_login)
    unauth = httpx.get(api(server) + "/looks")
    assert unauth.status_code == 401 and unauth.json()["message"] == "Requires authentication."
    auth = login(server)
    invalid = httpx.post(api(server) + "/queries/run/json", headers=auth, json={"view": "opportunities"})
    assert invalid.status_code == 422
    check_response("/queries/run/{result_format}", "post", invalid)
    assert invalid.json()["errors"][0]["field"] == "model"
    unknown = httpx.post(api(server) + "/queries/run/json", headers=auth, json={
        "model": "sophia_revenue", "view": "opportunities", "fields": ["opportunities.no_such_field"]})
    assert unknown.status_code == 200 and "looker_error" in unknown.json()[0]
    bad_filter = httpx.post(api(server) + "/queries/run/json", headers=auth, json={
        "model": "sophia_revenue", "view": "opportunities", "fields": ["opportunities.count"],
        "filters": {"opportunities.created_date": "sometime soon"}})
    assert "looker_error" in bad_filter.json()[0]
    malformed = httpx.post(api(server) + "/queries/run/json", headers=auth, content=b"{nope")
    assert malformed.status_code == 400 and set(malformed.json()) == {"message", "documentation_url"}
    assert httpx.get(api(server) + "/no/such/endpoint", headers=auth).json()["message"] == "Not found"

    server.faults.add("looker", "throttle", "/api/4.0/looks")
    throttled = httpx.get(api(server) + "/looks", headers=auth)
    assert throttled.status_code == 429
    check_response("/looks", "get", throttled)
    server.faults.add("looker", "server_error", "/api/4.0/looks", status=500)
    assert set(httpx.get(api(server) + "/looks", headers=auth).json()) == {"message", "documentation_url"}

    server.faults.add("looker", "token_expiry", "/api/4.0/looks")
    assert httpx.get(api(server) + "/looks", headers=auth).status_code == 401
    assert httpx.get(api(server) + "/looks", headers=auth).status_code == 401  # no refresh: log in again
    fresh = login(server)
    assert httpx.get(api(server) + "/looks", headers=fresh).status_code == 200
    assert httpx.delete(api(server) + "/logout", headers=fresh).status_code == 204
    assert httpx.get(api(server) + "/looks", headers=fresh).status_code == 401


def test_advance_changes_what_looks_return(fresh_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(fresh_company, ["looker"])
    auth = login(server)
    before = sum(r["conversations.count"] for r in _run(server, auth, "Support volume"))
    old_now = fresh_company.now
    for _ in range(6):  # a small company can go a few days without a new conversation (bounded)
        server.sandbox.advance(60 * 24 * 3)
        conv = fresh_company.live("conversations")
        created = int((conv["created_at"] > old_now).sum())
        if created:
            break
    assert created > 0
    after = sum(r["conversations.count"] for r in _run(server, auth, "Support volume"))
    assert after == before + created == len(conv)
    since = old_now.strftime("%Y/%m/%d %H:%M")
    recent = httpx.post(api(server) + "/queries/run/json", headers=auth, json={
        "model": "sophia_revenue", "view": "conversations", "fields": ["conversations.count"],
        "filters": {"conversations.created_time": f"after {since}"}}).json()
    assert recent == [{"conversations.count": created}]


def test_users_conform_and_are_the_look_owners(fresh_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(fresh_company, ["looker"])
    auth = login(server)
    every = httpx.get(api(server) + "/users", headers=auth)
    check_response("/users", "get", every)
    present = fresh_company.presence_of("employee", "looker")
    assert sorted(u["id"] for u in every.json()) == sorted(present["system_id"])
    employees = fresh_company["employees"].set_index("employee_id")
    for user in every.json():
        row = present.set_index("system_id").loc[user["id"]]
        emp = employees.loc[row["entity_id"]]
        assert (user["first_name"], user["last_name"]) == (emp["first_name"], emp["last_name"])
        assert user["display_name"] == f"{emp['first_name']} {emp['last_name']}"
        assert user["email"] == row["email"] and user["credentials_email"]["email"] == row["email"]
        assert user["is_disabled"] is False
    looks = httpx.get(api(server) + "/looks", headers=auth).json()
    assert {x["user_id"] for x in looks} <= {u["id"] for u in every.json()}
    fields = "id,first_name,last_name,display_name,email,is_disabled"
    pages = [httpx.get(api(server) + "/users", headers=auth,
                       params={"limit": 4, "offset": n, "sorts": "id", "fields": fields}).json()
             for n in range(0, len(every.json()) + 4, 4)]
    assert all(set(u) == set(fields.split(",")) for page in pages for u in page) and pages[-1] == []
    by_id = sorted((u["id"] for u in every.json()), key=lambda i: (len(i), i))
    assert [u["id"] for page in pages for u in page] == by_id
    one = httpx.get(api(server) + f"/users/{looks[0]['user_id']}", headers=auth)
    check_response("/users/{user_id}", "get", one)
    assert one.json()["id"] == looks[0]["user_id"]
    missing = httpx.get(api(server) + "/users/999999999", headers=auth)
    assert missing.status_code == 404
    check_response("/users/{user_id}", "get", missing)
    assert httpx.get(api(server) + "/users").status_code == 401

    # an employee who left is disabled (still listed); a removed Looker user is gone
    left, removed = present.index[1], present.index[2]
    emp_left = present.loc[left, "entity_id"]
    staff = fresh_company.tables["employees"]
    staff.loc[staff["employee_id"] == emp_left, "is_active"] = False
    fresh_company.tables["presence"].loc[removed, "deleted_at"] = fresh_company.now
    server.sandbox.vendors["looker"].render()
    after = {u["id"]: u for u in httpx.get(api(server) + "/users", headers=auth).json()}
    assert after[present.loc[left, "system_id"]]["is_disabled"] is True
    assert present.loc[removed, "system_id"] not in after and len(after) == len(every.json()) - 1
