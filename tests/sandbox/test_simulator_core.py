"""The simulator's shared machinery, exercised through a minimal vendor over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.app import Sandbox
from sophia_lib.sandbox.simulator.base import NativeTable, SimulatedVendor, drift
from sophia_lib.sandbox.simulator.faults import FaultInjector
from sophia_lib.sandbox.simulator.formats import decode_cursor, encode_cursor, salesforce
from sophia_lib.sandbox.simulator.server import SandboxServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Toy(SimulatedVendor):
    name = "toy"

    def setup_credentials(self) -> None:
        self.tokens.add_refresh_token("toy-refresh", "toy-client")

    def render(self) -> None:
        rows = [(T0 + timedelta(minutes=i), {"id": f"r{i:03d}", "n": i, "label": f"x{i}"}, i % 10 == 9)
                for i in range(25)]
        self.tables = {"things": NativeTable.build(rows)}

    def routes(self):
        return [("/token", self.token, ["POST"]), ("/things", self.things, ["GET"])]

    def throttle_response(self, request: Request, fault) -> Response:
        return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "2"})

    async def token(self, request: Request) -> Response:
        form = await request.form()
        access, refresh = self.tokens.refresh(str(form["refresh_token"]))
        return JSONResponse({"access_token": access.value, "refresh_token": refresh.value})

    async def things(self, request: Request) -> Response:
        self.require_bearer(request)
        if request.query_params.get("boom"):
            raise RuntimeError("a bug in a handler")
        start = int(request.query_params.get("offset", 0))
        items = self.tables["things"].select()
        return JSONResponse({"items": self.page(request, items, start, 10), "total": len(items)})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    import sophia_lib.sandbox.vendors as vendors

    monkeypatch.setattr(vendors, "vendor_classes", lambda: {"toy": Toy})
    company = Company(seed=1, size="small", now=pd.Timestamp(T0))
    with SandboxServer(Sandbox(company)) as srv:
        yield srv


def _token(server: SandboxServer) -> dict[str, str]:
    r = httpx.post(server.url("toy") + "/token", data={"refresh_token": "toy-refresh"})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_pages_auth_and_unknown_token(server: SandboxServer) -> None:
    base = server.url("toy")
    assert httpx.get(base + "/things").status_code == 401
    page = httpx.get(base + "/things", headers=_token(server)).json()
    assert [r["n"] for r in page["items"]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]  # 9 is a tombstone
    assert page["total"] == 23


def test_faults_fire_in_order_then_clear(server: SandboxServer) -> None:
    base, auth = server.url("toy"), _token(server)
    server.faults.add("toy", "throttle", "/things", count=2)
    answers = [httpx.get(base + "/things", headers=auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "2"

    server.faults.add("toy", "malformed_json", "/things")
    with pytest.raises(ValueError):
        httpx.get(base + "/things", headers=auth).json()
    server.faults.add("toy", "truncated_page", "/things")
    with pytest.raises(ValueError):
        httpx.get(base + "/things", headers=auth).json()
    server.faults.add("toy", "server_error", "/things", status=502)
    assert httpx.get(base + "/things", headers=auth).status_code == 502
    server.faults.add("toy", "reset", "/things")
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/things", headers=auth)
    server.faults.add("toy", "slow", "/things", delay_s=2)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(base + "/things", headers=auth, timeout=0.3)


def test_token_expiry_forces_refresh(server: SandboxServer) -> None:
    base, auth = server.url("toy"), _token(server)
    server.faults.add("toy", "token_expiry", "/things")
    assert httpx.get(base + "/things", headers=auth).status_code == 401
    assert httpx.get(base + "/things", headers=auth).status_code == 401  # the token is really dead
    assert httpx.get(base + "/things", headers=_token(server)).status_code == 200


def test_record_faults_duplicate_and_drift(server: SandboxServer) -> None:
    base, auth = server.url("toy"), _token(server)
    server.faults.add("toy", "duplicate_record", "/things")
    second = httpx.get(base + "/things", params={"offset": 10}, headers=auth).json()["items"]
    first = httpx.get(base + "/things", headers=auth).json()["items"]
    assert second[0] == first[-1]
    server.faults.add("toy", "schema_drift", "/things", change="changed_type", field="n")
    drifted = httpx.get(base + "/things", headers=auth).json()["items"]
    assert drifted[1]["n"] == "1"


def test_handler_bug_is_an_envelope_not_a_traceback(server: SandboxServer) -> None:
    r = httpx.get(server.url("toy") + "/things", params={"boom": 1}, headers=_token(server))
    assert r.status_code == 500
    assert "Traceback" not in r.text and "RuntimeError" not in r.text


def test_control_api_arms_faults_and_rejects_unknown_kinds(server: SandboxServer) -> None:
    control = server.base_url + "/_control"
    bad = httpx.post(control + "/faults", json={"vendor": "toy", "kind": "meteor"})
    assert bad.status_code == 400 and "throttle" in bad.json()["error"]
    ok = httpx.post(control + "/faults", json={"vendor": "toy", "kind": "throttle", "count": 1})
    assert ok.status_code == 201
    assert [f["kind"] for f in httpx.get(control + "/faults").json()] == ["throttle"]
    httpx.delete(control + "/faults")
    assert httpx.get(control + "/faults").json() == []
    assert httpx.get(control + "/vendors").json()["toy"]["base_url"].endswith("/toy")


def test_probabilistic_faults_replay_with_the_seed() -> None:
    def run() -> list[bool]:
        inj = FaultInjector(seed=7)
        inj.add("v", "throttle", count=None, probability=0.3)
        return [inj.take("v", "/x") is not None for _ in range(50)]

    assert run() == run()
    assert 5 < sum(run()) < 30


def test_native_table_incremental_select() -> None:
    table = NativeTable.build([(T0 + timedelta(hours=i), {"id": i}, False) for i in (3, 1, 2)])
    assert [r["id"] for r in table.select()] == [1, 2, 3]
    assert [r["id"] for r in table.select(since=T0 + timedelta(hours=2))] == [2, 3]
    assert [r["id"] for r in table.select(since=T0 + timedelta(hours=2), inclusive=False)] == [3]


def test_formats() -> None:
    assert salesforce(pd.Timestamp("2024-01-15T10:22:33.5Z")) == "2024-01-15T10:22:33.500+0000"
    assert decode_cursor(encode_cursor({"o": 5})) == {"o": 5}
    with pytest.raises(ValueError):
        decode_cursor("%%%")
    assert drift({"id": 1, "a": "x"}, {"change": "removed_field"}) == {"id": 1}


def test_catch_up_advances_to_the_wall_clock_once(fresh_company: Company) -> None:
    sandbox = Sandbox(fresh_company, vendors=["slack"])
    start = pd.Timestamp(fresh_company.now)
    target = start + pd.Timedelta(days=2, minutes=7, seconds=30)
    assert sandbox.catch_up(target) == 2 * 24 * 60 + 7
    assert fresh_company.now == start + pd.Timedelta(days=2, minutes=7)
    assert sandbox.catch_up(target) == 0  # already there
    assert sandbox.catch_up(start) == 0  # a wall clock behind the company never moves it back
