"""Factors.ai simulator over real HTTP: the Account Journey API — its documented shape, from/to windows,
filters, auth, throttling, errors, and new touchpoints after the company advances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pandas as pd

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sandbox.vendors.factors import Factors

AUTH = {"Authorization": f"Bearer {Factors.PRIVATE_TOKEN}"}

# The documented (inferred, VENDOR-APIS.md §11) birdview shape; no official machine-readable spec exists.
ACTIVITY = {"type": "object", "required": ["event_id", "event_name", "event_type", "display_name", "alias_name",
                                           "timestamp", "properties", "icon"],
            "properties": {"event_id": {"type": "string"}, "event_name": {"type": "string"},
                           "event_type": {"type": "string"}, "display_name": {"type": "string"},
                           "alias_name": {"type": "string"}, "timestamp": {"type": "integer"},
                           "properties": {"type": "object"}, "icon": {"type": "string"}},
            "additionalProperties": False}
JOURNEY = {"type": "object", "required": ["domain_name", "leftpane_props", "milestones", "account_timeline"],
           "additionalProperties": False,
           "properties": {
               "domain_name": {"type": "string"}, "leftpane_props": {"type": "object"},
               "milestones": {"type": "object"},
               "account_timeline": {"type": "array", "items": {
                   "type": "object", "additionalProperties": False,
                   "required": ["user_id", "is_anonymous", "user_name", "properties", "extra_prop", "user_activities"],
                   "properties": {"user_id": {"type": "string"}, "is_anonymous": {"type": "boolean"},
                                  "user_name": {"type": "string"}, "properties": {"type": "object"},
                                  "extra_prop": {"type": "string"},
                                  "user_activities": {"type": "array", "items": ACTIVITY}}}}}}


def journey(server: SandboxServer, domain: str, headers: dict[str, str] | None = None,
            **params: Any) -> httpx.Response:
    return httpx.get(server.url("factors") + f"/open/v1/account/{domain}/journey",
                     headers=AUTH if headers is None else headers, params=params)


def events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for user in body["account_timeline"] for a in user["user_activities"]]


def busiest_account(company: Company) -> tuple[str, pd.DataFrame]:
    touches = company.live("touchpoints")
    factors = company.presence_of("account", "factors").set_index("entity_id")
    touches = touches[touches["account_id"].isin(factors.index)]
    account = touches["account_id"].value_counts().index[0]
    return str(factors.loc[account, "system_id"]), touches[touches["account_id"] == account]


def test_journey_shape_and_full_history(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["factors"])
    domain, touches = busiest_account(small_company)
    r = journey(server, domain, **{"from": "2000-01-01", "to": small_company.now.strftime("%Y-%m-%d")})
    assert r.status_code == 200, r.text
    body = r.json()
    jsonschema.validate(body, JOURNEY)
    got = events(body)
    assert len(got) == len(touches) and len({e["event_id"] for e in got}) == len(got)
    assert sorted(e["timestamp"] for e in got) == sorted(int(t.timestamp()) for t in touches["occurred_at"])
    assert body["leftpane_props"]["$company_name"]
    for user in body["account_timeline"]:
        stamps = [a["timestamp"] for a in user["user_activities"]]
        assert stamps == sorted(stamps)  # chronological
        if not user["is_anonymous"]:
            assert "@" in user["user_name"]
    known = touches["person_id"].dropna().nunique()
    assert sum(not u["is_anonymous"] for u in body["account_timeline"]) == known
    # messy forms of the domain find the same account
    for variant in (f"www.{domain}", domain.upper()):
        assert len(events(journey(server, variant, **{"from": "2000-01-01"}).json())) == len(touches)


def test_windows_and_filters(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["factors"])
    domain, touches = busiest_account(small_company)
    now = small_company.now
    default = events(journey(server, domain).json())  # the last 30 days
    recent = touches[touches["occurred_at"] >= now - pd.Timedelta(days=30)]
    assert len(default) == len(recent)
    mid = touches["occurred_at"].sort_values().iloc[len(touches) // 2]
    day = mid.strftime("%Y-%m-%d")
    same_day = touches[touches["occurred_at"].dt.strftime("%Y-%m-%d") == day]
    assert len(events(journey(server, domain, **{"from": day, "to": day}).json())) == len(same_day)  # to = 23:59:59
    exact = mid.strftime("%Y-%m-%d %H:%M:%S.000000")
    assert len(events(journey(server, domain, **{"from": exact, "to": exact}).json())) == \
        int((touches["occurred_at"] == mid).sum())
    everything = journey(server, domain, **{"from": "2000-01-01"}).json()
    pricing = events(journey(server, domain, **{"from": "2000-01-01", "event_name": "PRICING"}).json())
    assert all("pricing" in e["event_name"] for e in pricing)
    assert len(pricing) == sum("pricing" in e["event_name"] for e in events(everything))
    person = next(u for u in everything["account_timeline"] if not u["is_anonymous"])
    only = journey(server, domain, **{"from": "2000-01-01", "user_name": person["user_name"].upper()}).json()
    assert [u["user_id"] for u in only["account_timeline"]] == [person["user_id"]]


def test_auth_errors_and_throttle(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["factors"])
    domain, _ = busiest_account(small_company)
    missing = journey(server, domain, headers={})
    assert missing.status_code == 401 and missing.json() == {"error": "Missing authorization header"}
    wrong = journey(server, domain, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "Invalid token"}
    bad_from = journey(server, domain, **{"from": "15/01/2024"})
    assert bad_from.status_code == 400 and "error" in bad_from.json()
    reversed_window = journey(server, domain, **{"from": "2026-01-02", "to": "2026-01-01"})
    assert reversed_window.status_code == 400
    unknown = journey(server, "no-such-company.example")
    assert unknown.status_code == 404 and "error" in unknown.json()
    server.faults.add("factors", "throttle", "/open/v1/account/*")
    throttled = journey(server, domain)
    assert throttled.status_code == 429 and throttled.json() == "Rate limit exceeded. Please try again later."
    server.faults.add("factors", "server_error", "/open/v1/account/*")
    failed = journey(server, domain)
    assert failed.status_code == 503 and set(failed.json()) == {"error", "err"}
    server.faults.add("factors", "token_expiry", "/open/v1/account/*")
    assert journey(server, domain).status_code == 401
    assert journey(server, domain).status_code == 200  # a project private token does not expire


def test_advance_new_touchpoints_show_in_the_next_window(fresh_company: Company,
                                                         serve: Callable[..., SandboxServer]) -> None:
    server = serve(fresh_company, ["factors"])
    old_now = fresh_company.now
    server.sandbox.advance(60 * 24 * 3)
    touches = fresh_company.live("touchpoints")
    new = touches[touches["created_at"] > old_now]
    factors = fresh_company.presence_of("account", "factors").set_index("entity_id")
    new = new[new["account_id"].isin(factors.index)]
    assert len(new) > 0
    since = old_now.strftime("%Y-%m-%d %H:%M:%S.%f")
    seen = 0
    for account, group in new.groupby("account_id"):
        got = events(journey(server, str(factors.loc[account, "system_id"]), **{"from": since}).json())
        assert sorted(e["timestamp"] for e in got) == sorted(int(t.timestamp()) for t in group["occurred_at"])
        seen += len(got)
    assert seen == len(new)
