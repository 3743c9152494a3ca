"""Asana REST simulator over real HTTP: envelope, opt_fields, offset paging, modified_since, events, auth, faults.

Every 200 body (and the error bodies) is validated against Asana's own OpenAPI description with openapi-core;
records fetched with opt_fields are also checked against the full ``*Response`` schemas.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from sophia_lib.sandbox.clock import advance
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sandbox.vendors.asana import AUTH_CODE, CLIENT_ID, CLIENT_SECRET, PAT, REFRESH_TOKEN, WORKSPACE_GID

SPEC = Path(__file__).parents[2] / "sophia_lib/sandbox/specs/asana/asana_oas.yaml"
AUTH = {"Authorization": f"Bearer {PAT}"}
TASK_FIELDS = ("name,completed,completed_at,created_at,modified_at,due_on,start_on,assignee.name,projects.name,"
               "memberships.section.name,custom_fields.display_value,custom_fields.name,resource_subtype,workspace")


def _nullable_allof(node: Any) -> Any:
    """``allOf: [{$ref: X}, {nullable: true}]`` means "X or null" in Asana's spec, but under OpenAPI 3.0 the
    ``nullable`` of a sibling subschema cannot admit null past X's ``type: object``; spell it as anyOf."""
    if isinstance(node, list):
        return [_nullable_allof(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_allof(v) for k, v in node.items()}
    parts = node.get("allOf")
    if isinstance(parts, list) and any(isinstance(p, dict) and p.get("nullable") for p in parts):
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return {**rest, "anyOf": [{"allOf": parts}, {"type": "object", "nullable": True, "enum": [None]}]}
    return node


@lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    """Asana's spec with two quirks patched.

    1. EventResponse ``user``/``parent`` are documented as "may be null" (system events; events other than
       added/removed) but typed as non-nullable objects: they get ``nullable``.
    2. Nullable references (``allOf`` + ``nullable: true``) are rewritten so that null really validates
       (see :func:`_nullable_allof`); Asana sends ``"assignee": null``, ``"current_status": null`` etc.
    """
    raw = yaml.load(SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = json.loads(json.dumps(raw, default=str))  # YAML gives int status keys and date examples
    props = spec["components"]["schemas"]["EventResponse"]["properties"]
    for name in ("user", "parent"):
        props[name]["allOf"].append({"nullable": True})
    return _nullable_allof(spec)


@lru_cache(maxsize=1)
def _openapi() -> OpenAPI:
    return OpenAPI.from_dict(_spec(), config=Config(spec_validator_cls=None))


def _conforms(r: httpx.Response) -> None:
    """Validate one live exchange against the operation the spec describes for its path and status."""
    url = urlsplit(str(r.request.url))
    path = "/api/1.0" + url.path.split("/api/1.0", 1)[1]
    request = MockRequest("https://app.asana.com", r.request.method.lower(), path,
                          args=dict(httpx.QueryParams(url.query)))
    response = MockResponse(r.content, status_code=r.status_code, content_type="application/json")
    _openapi().validate_response(request, response)


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


def _record_conforms(record: dict[str, Any], schema: str) -> None:
    spec = _spec()
    OAS30ReadValidator({"$ref": f"#/components/schemas/{schema}", "components": spec["components"]},
                       format_checker=oas30_format_checker).validate(record)


def _get(base: str, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}/api/1.0{path}", params=params, headers=AUTH if headers is None else headers)


def _pages(base: str, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow next_page.offset until next_page is null."""
    out: list[dict[str, Any]] = []
    offset = None
    for _ in range(10_000):
        r = _get(base, path, **params, **({"offset": offset} if offset else {}))
        assert r.status_code == 200, r.text
        _conforms(r)
        body = r.json()
        out.extend(body["data"])
        if body["next_page"] is None:
            return out
        assert body["next_page"]["uri"].endswith(body["next_page"]["path"])
        offset = body["next_page"]["offset"]
    raise AssertionError("pagination did not end")


def _asana_tasks(company: Company, project_gid: str) -> Any:
    projects = company["projects"]
    canon = projects.loc[(projects["system"] == "asana") & (projects["system_id"] == project_gid), "project_id"]
    tasks = company["tasks"]
    return tasks[(tasks["system"] == "asana") & (tasks["project_id"] == canon.iloc[0])]


def _biggest_project(company: Company) -> str:
    tasks = company["tasks"]
    tasks = tasks[(tasks["system"] == "asana") & tasks["deleted_at"].isna()]
    canon = tasks["project_id"].value_counts().index[0]
    projects = company["projects"]
    return str(projects.loc[projects["project_id"] == canon, "system_id"].iloc[0])


def test_lists_are_compact_paged_and_conform(small_company: Company, serve) -> None:
    base = serve(small_company, ["asana"]).url("asana")
    workspaces = _pages(base, "/workspaces", limit=10)
    assert workspaces == [{"gid": WORKSPACE_GID, "name": workspaces[0]["name"], "resource_type": "workspace"}]
    users = _pages(base, "/users", workspace=WORKSPACE_GID, limit=5, opt_fields="name,email,workspaces")
    assert users and all("@" in u["email"] for u in users)
    for u in users:
        _record_conforms(u, "UserResponse")

    projects = _pages(base, "/projects", workspace=WORKSPACE_GID, limit=3)
    live = small_company["projects"]
    live = live[(live["system"] == "asana") & live["deleted_at"].isna()]
    assert {p["gid"] for p in projects} == set(live["system_id"])
    assert set(projects[0]) == {"gid", "name", "resource_type"}  # compact without opt_fields
    full = _get(base, f"/projects/{projects[0]['gid']}")
    _conforms(full)
    _record_conforms(full.json()["data"], "ProjectResponse")
    assert _get(base, "/projects", archived="false", limit=100).json()["data"]

    project = _biggest_project(small_company)
    sections = _pages(base, f"/projects/{project}/sections", limit=2)
    assert [s["name"] for s in sections] == ["To do", "In progress", "Done"]
    tasks = _pages(base, "/tasks", project=project, limit=7, opt_fields=TASK_FIELDS)
    expected = _asana_tasks(small_company, project)
    assert sorted(t["gid"] for t in tasks) == sorted(expected.loc[expected["deleted_at"].isna(), "system_id"])
    assert len({t["gid"] for t in tasks}) == len(tasks)
    for t in tasks:
        assert t["projects"] == [{"gid": project, "name": t["projects"][0]["name"]}]
        assert t["workspace"] == {"gid": WORKSPACE_GID, "resource_type": "workspace"}  # named, no sub-fields
        assert "notes" not in t
    one = _get(base, f"/tasks/{tasks[0]['gid']}")
    _conforms(one)
    _record_conforms(one.json()["data"], "TaskResponse")
    with pytest.raises(Exception, match="not of type"):  # the check has teeth
        _record_conforms({**one.json()["data"], "completed": "yes"}, "TaskResponse")
    same = _pages(base, f"/projects/{project}/tasks", limit=100)
    assert {t["gid"] for t in same} == {t["gid"] for t in tasks}
    unpaged = _get(base, "/tasks", project=project).json()
    assert "next_page" not in unpaged and len(unpaged["data"]) == len(tasks)  # no limit → no paging


def test_modified_since_filters_tasks(small_company: Company, serve) -> None:
    base = serve(small_company, ["asana"]).url("asana")
    project = _biggest_project(small_company)
    expected = _asana_tasks(small_company, project)
    expected = expected[expected["deleted_at"].isna()]
    since = expected["updated_at"].sort_values().iloc[len(expected) // 2]
    got = _pages(base, "/tasks", project=project, limit=5, modified_since=since.isoformat(),
                 opt_fields="modified_at")
    assert {t["gid"] for t in got} == set(expected.loc[expected["updated_at"] >= since, "system_id"])
    assert all(t["modified_at"] >= since.strftime("%Y-%m-%dT%H:%M:%S") for t in got)
    assert 0 < len(got) < len(expected)


def test_malformed_requests_get_asana_errors(small_company: Company, serve) -> None:
    base = serve(small_company, ["asana"]).url("asana")
    project = _biggest_project(small_company)
    cases = [
        (_get(base, "/tasks"), 400, "Must specify exactly one of"),
        (_get(base, "/tasks", project=project, limit=500), 400, "limit"),
        (_get(base, "/tasks", project=project, modified_since="last tuesday"), 400, "modified_since"),
        (_get(base, "/tasks", project=project, limit=5, offset="garbage"), 400, "offset"),
        (_get(base, "/tasks", project=project, opt_fields="name,secret_sauce"), 400, "secret_sauce"),
        (_get(base, "/projects/1"), 404, "Unknown object"),
        (_get(base, "/tasks", project="1"), 404, "Unknown object"),
        (_get(base, "/tasks", headers={}), 401, "Not Authorized"),
    ]
    for r, status, text in cases:
        assert r.status_code == status, r.text
        assert text in r.json()["errors"][0]["message"]
        assert "Traceback" not in r.text
        _conforms(r)
    # an offset from another query is not accepted either
    other = _get(base, "/projects", limit=1).json()["next_page"]["offset"]
    assert _get(base, "/tasks", project=project, limit=5, offset=other).status_code == 400
    assert _get(base, "/no/such/route").json()["errors"][0]["message"] == "No matching route for request"


def test_events_report_adds_changes_and_deletes(fresh_company: Company, serve) -> None:
    server = serve(fresh_company, ["asana"])
    base = server.url("asana")
    project = _biggest_project(fresh_company)
    first = _get(base, "/events", resource=project)
    assert first.status_code == 412 and "Sync token invalid or too old" in first.json()["errors"][0]["message"]
    _conforms(first)
    quiet = _get(base, "/events", resource=project, sync=first.json()["sync"])
    assert quiet.status_code == 200 and quiet.json()["data"] == [] and quiet.json()["has_more"] is False
    assert _get(base, "/events", resource=project, sync="bogus").status_code == 412
    other = next(p for p in _pages(base, "/projects", limit=100) if p["gid"] != project)["gid"]
    assert _get(base, "/events", resource=other, sync=first.json()["sync"]).status_code == 412  # another resource's
    syncs = {p["gid"]: _get(base, "/events", resource=p["gid"]).json()["sync"]
             for p in _pages(base, "/projects", limit=100)}

    before = fresh_company.now
    changes = _advance_until(fresh_company, "tasks", ("create", "update", "delete"))
    server.sandbox.vendors["asana"].render()  # what Sandbox.advance does after the clock moves
    tasks = fresh_company["tasks"].set_index("task_id")
    project_gid = fresh_company["projects"].set_index("project_id")["system_id"]
    changed = [(tid, project_gid[tasks.loc[tid, "project_id"]]) for kind in changes.values() for tid in kind
               if tasks.loc[tid, "system"] == "asana"]
    assert changed, "the clock should change some Asana tasks"
    project = max(syncs, key=lambda g: sum(p == g for _, p in changed))  # the busiest project
    gids = {tasks.loc[tid, "system_id"]: tid for tid, p in changed if p == project}
    events: list[dict[str, Any]] = []
    sync = syncs[project]
    for _ in range(100):
        r = _get(base, "/events", resource=project, sync=sync)
        assert r.status_code == 200
        _conforms(r)
        events.extend(r.json()["data"])
        sync = r.json()["sync"]
        if not r.json()["has_more"]:
            break
    for e in events:
        _record_conforms(e, "EventResponse")
    assert {e["resource"]["gid"] for e in events if e["type"] == "task"} == set(gids)
    for e in events:
        tid = gids[e["resource"]["gid"]]
        want = ("deleted" if tid in changes["delete"] else "added" if tid in changes["create"] else "changed")
        assert e["action"] == want
        assert e["created_at"] > before.strftime("%Y-%m-%dT%H:%M:%S")
        if want == "added":
            assert e["parent"]["gid"] == project
    listed = {t["gid"] for t in _pages(base, "/tasks", project=project, limit=100,
                                        modified_since=before.isoformat())}
    assert listed == {g for g, tid in gids.items() if tid not in changes["delete"]}
    assert _get(base, "/events", resource=project, sync=sync).json()["data"] == []


def test_events_page_with_has_more(small_company: Company, serve) -> None:
    server: SandboxServer = serve(small_company, ["asana"])
    vendor = server.sandbox.vendors["asana"]
    project = _biggest_project(small_company)
    n_changes = len(vendor._changes(project))
    old = {"r": project, "t": "2000-01-01T00:00:00+00:00", "g": "", "i": small_company.now.isoformat()}
    from sophia_lib.sandbox.simulator.formats import encode_cursor

    sync, seen = encode_cursor(old), []
    for _ in range(20):
        body = _get(server.url("asana"), "/events", resource=project, sync=sync).json()
        seen.extend(e["resource"]["gid"] for e in body["data"])
        sync = body["sync"]
        assert len(body["data"]) <= 100
        if not body["has_more"]:
            break
    assert len(seen) == n_changes == len(set(seen))
    stale = {**old, "i": (small_company.now - __import__("pandas").Timedelta(days=2)).isoformat()}
    assert _get(server.url("asana"), "/events", resource=project, sync=encode_cursor(stale)).status_code == 412


def test_oauth_refresh_expiry_and_throttle(small_company: Company, serve) -> None:
    server = serve(small_company, ["asana"])
    base = server.url("asana")
    token_url = f"{base}/-/oauth_token"
    code = httpx.post(token_url, data={"grant_type": "authorization_code", "code": AUTH_CODE,
                                       "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).json()
    assert code["token_type"] == "bearer" and code["expires_in"] == 3600 and code["refresh_token"]
    grant = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
                       auth=(CLIENT_ID, CLIENT_SECRET)).json()
    auth = {"Authorization": f"Bearer {grant['access_token']}"}
    assert _get(base, "/workspaces", headers=auth).status_code == 200
    server.faults.add("asana", "token_expiry", "/api/1.0/workspaces")
    expired = _get(base, "/workspaces", headers=auth)
    assert expired.status_code == 401 and expired.json() == {"errors": [{"message": "Not Authorized",
                                                                         "help": expired.json()["errors"][0]["help"]}]}
    assert _get(base, "/users", headers=auth).status_code == 401
    again = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                                        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).json()
    assert _get(base, "/workspaces", headers={"Authorization": f"Bearer {again['access_token']}"}).status_code == 200
    bad = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": "nope",
                                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"

    server.faults.add("asana", "throttle", "/api/1.0/tasks", retry_after=30)
    throttled = _get(base, "/tasks", project=_biggest_project(small_company))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "30"
    assert "rate limit" in throttled.json()["errors"][0]["message"]
    server.faults.add("asana", "server_error", "/api/1.0/tasks", status=500)
    failed = _get(base, "/tasks", project=_biggest_project(small_company))
    assert failed.status_code == 500 and failed.json()["errors"][0]["phrase"]
    _conforms(failed)


@pytest.mark.parametrize("change", ["new_field", "removed_field"])
def test_record_faults_reach_task_pages(small_company: Company, serve, change: str) -> None:
    server = serve(small_company, ["asana"])
    base, project = server.url("asana"), _biggest_project(small_company)
    server.faults.add("asana", "schema_drift", "/api/1.0/tasks", change=change, field=None if change ==
                      "new_field" else "name")
    body = _get(base, "/tasks", project=project, limit=3, opt_fields="name,modified_at").json()
    if change == "new_field":
        assert all(t["sophia_drift_new_field"] == "drift" for t in body["data"])
    else:
        assert all("name" not in t and "modified_at" in t for t in body["data"])
    first = _get(base, "/tasks", project=project, limit=3).json()
    server.faults.add("asana", "duplicate_record", "/api/1.0/tasks")
    second = _get(base, "/tasks", project=project, limit=3, offset=first["next_page"]["offset"]).json()
    assert second["data"][0] == first["data"][-1] and len(second["data"]) == 4
