"""Linear simulator over real HTTP: GraphQL validated against Linear's schema, Relay paging, incremental
filters, archived issues, auth (API key and OAuth refresh), throttling and error envelopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from graphql import parse, validate

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sandbox.vendors._linear_graphql import linear_schema
from sophia_lib.sandbox.vendors.linear import Linear

KEY = {"Authorization": Linear.API_KEY}

ISSUES = """
query Issues($after: String, $since: DateTimeOrDuration, $archived: Boolean, $first: Int) {
  issues(first: $first, after: $after, orderBy: updatedAt, includeArchived: $archived,
         filter: { updatedAt: { gt: $since } }) {
    nodes {
      id identifier number title priority estimate
      createdAt updatedAt startedAt completedAt canceledAt archivedAt dueDate
      state { id name type } team { id key } assignee { id name email }
      project { id name } cycle { id number } labels { nodes { id name } }
    }
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor hasPreviousPage startCursor }
  }
}"""


def gql(server: SandboxServer, query: str, variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url("linear") + "/graphql", json={"query": query, "variables": variables or {}},
                      headers=KEY if headers is None else headers, timeout=30)


def all_issues(server: SandboxServer, since: str = "2000-01-01T00:00:00Z", archived: bool = False,
               first: int = 50) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        r = gql(server, ISSUES, {"after": after, "since": since, "archived": archived, "first": first})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "errors" not in body, body
        conn = body["data"]["issues"]
        assert [e["node"]["id"] for e in conn["edges"]] == [n["id"] for n in conn["nodes"]]
        if conn["nodes"]:
            assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        assert conn["pageInfo"]["hasPreviousPage"] == (after is not None)
        nodes += conn["nodes"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        after = conn["pageInfo"]["endCursor"]


def linear_tasks(company: Company) -> pd.DataFrame:
    return company["tasks"][company["tasks"]["system"] == "linear"]


def test_key_bi_query_is_valid_against_the_official_schema() -> None:
    assert validate(linear_schema(), parse(ISSUES)) == []


def test_issues_page_through_everything_and_match_the_company(small_company: Company,
                                                               serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    nodes = all_issues(server, first=50)
    tasks = linear_tasks(small_company)
    live = tasks[tasks["deleted_at"].isna()]
    assert sorted(n["id"] for n in nodes) == sorted(live["system_id"])
    assert len({n["identifier"] for n in nodes}) == len(nodes)
    stamps = [n["updatedAt"] for n in nodes]
    assert stamps == sorted(stamps)  # orderBy updatedAt, oldest first
    by_id = live.set_index("system_id")
    sample = nodes[len(nodes) // 2]
    row = by_id.loc[sample["id"]]
    assert sample["title"] == row["title"]
    assert pd.Timestamp(sample["updatedAt"]) == row["updated_at"]
    assert sample["state"]["type"] in {"backlog", "unstarted", "started", "completed", "canceled"}
    assert sample["team"]["key"] == sample["identifier"].split("-")[0]
    assert all(n["archivedAt"] is None for n in nodes)
    # default page size 50 and the last page: first: 250 takes all small-company issues in one page
    assert len(all_issues(server, first=250)) == len(nodes)


def test_incremental_filter_archived_and_last_before(small_company: Company,
                                                     serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    tasks = linear_tasks(small_company)
    cut = tasks["updated_at"].sort_values().iloc[len(tasks) * 2 // 3]
    since = cut.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    got = all_issues(server, since=since, archived=True)
    expected = tasks[tasks["updated_at"] > cut]
    assert sorted(n["id"] for n in got) == sorted(expected["system_id"])
    deleted = tasks[tasks["deleted_at"].notna()]
    if len(deleted):
        everything = {n["id"]: n for n in all_issues(server, archived=True)}
        assert set(deleted["system_id"]) <= set(everything)
        assert all(everything[i]["archivedAt"] is not None for i in deleted["system_id"])
    # backwards paging: last/before mirror first/after
    forward = gql(server, "{ issues(first: 5) { nodes { id } pageInfo { endCursor } } }").json()["data"]["issues"]
    backwards = "query($b: String) { issues(last: 2, before: $b) { nodes { id } pageInfo { hasPreviousPage } } }"
    back = gql(server, backwards, {"b": forward["pageInfo"]["endCursor"]}).json()["data"]["issues"]
    assert [n["id"] for n in back["nodes"]] == [n["id"] for n in forward["nodes"][2:4]]
    assert back["pageInfo"]["hasPreviousPage"] is True
    # a relative duration filter and a createdAt filter on another connection
    recent = gql(server, '{ cycles(first: 100, filter: { startsAt: { gt: "-P2W" } }) { nodes { startsAt } } }')
    floor = small_company.now - pd.Timedelta(weeks=2)
    assert all(pd.Timestamp(c["startsAt"]) > floor for c in recent.json()["data"]["cycles"]["nodes"])


def test_advance_creates_updates_and_archives_are_visible(fresh_company: Company,
                                                          serve: Callable[..., SandboxServer]) -> None:
    server = serve(fresh_company, ["linear"])
    before = all_issues(server, archived=True)
    watermark = max(n["updatedAt"] for n in before)
    old_now = fresh_company.now
    for _ in range(6):  # advance until the window holds all three kinds of change (bounded)
        server.sandbox.advance(60 * 24 * 3)
        tasks = linear_tasks(fresh_company)
        changed = tasks[tasks["updated_at"] > old_now]
        created = changed[changed["created_at"] > old_now]
        deleted = changed[changed["deleted_at"].notna()]
        if len(created) and len(deleted) and len(changed) > len(created) + len(deleted):
            break
    assert len(created) and len(deleted) and len(changed) > len(created) + len(deleted)  # all three kinds
    got = {n["id"]: n for n in all_issues(server, since=watermark, archived=True)}
    assert set(changed["system_id"]) <= set(got)
    assert all(got[i]["archivedAt"] is not None for i in deleted["system_id"])
    live_ids = {n["id"] for n in all_issues(server, since=watermark)}
    assert not live_ids & set(deleted["system_id"])
    assert set(created["system_id"]) - set(deleted["system_id"]) <= live_ids


def test_entities_nested_relations_and_unmodelled_fields(small_company: Company,
                                                         serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    r = gql(server, """{
      viewer { id name email isMe organization { name urlKey } }
      organization { id name teams { nodes { key states { nodes { name type } } } } }
      teams { nodes { id key name issues(first: 3) { nodes { identifier team { key } } } members { nodes { id } }
                      cycles(first: 2) { nodes { number team { key } } } } }
      users(first: 100, includeDisabled: true) {
        nodes { id name email active assignedIssues(first: 1) { nodes { id } } } }
      projects { nodes { id name state status { name type } progress lead { id } teams { nodes { key } }
                         issues(first: 2) { nodes { project { id } } } } }
      workflowStates(first: 5) { nodes { id name type team { key } } }
      issues(first: 3) { nodes { id boardOrder reactionData sharedAccess { isShared } history { nodes { id } }
                                 subscribers { nodes { id } } creator { id } } }
      rateLimitStatus { kind limits { type } }
    }""")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body["errors"]
    data = body["data"]
    assert data["viewer"]["isMe"] is True and data["organization"]["name"]
    teams = data["teams"]["nodes"]
    assert {t["key"] for t in teams} == {"PLAT", "DATA", "APP", "INFRA"}
    for team in teams:
        assert all(i["team"]["key"] == team["key"] for i in team["issues"]["nodes"])
        assert all(c["team"]["key"] == team["key"] for c in team["cycles"]["nodes"])
    assert len(data["organization"]["teams"]["nodes"][0]["states"]["nodes"]) == 6
    users = data["users"]["nodes"]
    assert len(users) == len(small_company.presence_of("employee", "linear")["entity_id"].unique())
    for project in data["projects"]["nodes"]:
        assert all(i["project"]["id"] == project["id"] for i in project["issues"]["nodes"])
    unmodelled = data["issues"]["nodes"][0]
    assert unmodelled["history"]["nodes"] == [] and isinstance(unmodelled["boardOrder"], float)
    assert unmodelled["sharedAccess"]["isShared"] is False
    one = "query($id: String!) { issue(id: $id) { id identifier } }"
    identifier = data["teams"]["nodes"][0]["issues"]["nodes"][0]["identifier"]
    by_identifier = gql(server, one, {"id": identifier}).json()["data"]["issue"]
    assert gql(server, one, {"id": by_identifier["id"]}).json()["data"]["issue"] == by_identifier


def test_errors_in_linears_envelope(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    bad = gql(server, "{ issues { nodes { id bogus } } }")
    assert bad.status_code == 400
    err = bad.json()["errors"][0]
    assert err["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" and err["locations"]
    assert "bogus" in err["message"]
    syntax = gql(server, "{ issues { nodes { id }")
    assert syntax.status_code == 400 and syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    cursor = gql(server, '{ issues(after: "garbage") { nodes { id } } }')
    assert cursor.status_code == 400
    assert cursor.json()["errors"][0]["extensions"]["type"] == "invalid input" and cursor.json()["data"] is None
    unsupported = gql(server, '{ issues(filter: { title: { eq: "x" } }) { nodes { id } } }')
    assert unsupported.status_code == 400 and "title" in unsupported.json()["errors"][0]["message"]
    bad_date = gql(server, '{ issues(filter: { updatedAt: { gt: "yesterday-ish" } }) { nodes { id } } }')
    assert bad_date.status_code == 400 and bad_date.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    missing = gql(server, '{ issue(id: "00000000-0000-4000-8000-000000000000") { id } }')
    assert missing.status_code == 400 and "not found" in missing.json()["errors"][0]["message"].lower()
    too_big = gql(server, "{ issues(first: 1000) { nodes { id } } }")
    assert too_big.status_code == 400
    mutation = gql(server, 'mutation { issueArchive(id: "x") { success } }')
    assert mutation.status_code == 400 and mutation.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = httpx.post(server.url("linear") + "/graphql", content=b"{not json", headers=KEY)
    assert body.status_code == 400 and "errors" in body.json()
    empty = httpx.post(server.url("linear") + "/graphql", json={"variables": {}}, headers=KEY)
    assert empty.status_code == 400 and "query" in empty.json()["errors"][0]["message"]
    for r in (bad, syntax, cursor, unsupported, missing, mutation, body):
        assert "Traceback" not in r.text


def _auth_error(r: httpx.Response) -> None:
    assert r.status_code == Linear.AUTH_STATUS
    err = r.json()["errors"][0]
    assert err["message"] == "Authentication required, not authenticated"
    assert err["extensions"]["code"] == "AUTHENTICATION_ERROR" and err["extensions"]["type"] == "authentication error"


def test_auth_api_key_oauth_refresh_and_expiry(small_company: Company, serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    viewer = "{ viewer { id } }"
    _auth_error(gql(server, viewer, headers={}))
    _auth_error(gql(server, viewer, headers={"Authorization": "lin_api_wrong"}))
    _auth_error(gql(server, viewer, headers={"Authorization": f"Bearer {Linear.API_KEY}"}))  # keys take no scheme
    assert gql(server, viewer).status_code == 200

    token_url = server.url("linear") + "/oauth/token"
    client = {"client_id": Linear.CLIENT_ID, "client_secret": Linear.CLIENT_SECRET}
    assert httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": "nope", **client}) \
        .json()["error"] == "invalid_grant"
    assert httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": Linear.REFRESH_TOKEN,
                                       "client_id": Linear.CLIENT_ID, "client_secret": "x"}).status_code == 401
    first = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": Linear.REFRESH_TOKEN,
                                        **client}).json()
    assert first["token_type"] == "Bearer" and first["expires_in"] > 0 and first["refresh_token"]
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    _auth_error(gql(server, viewer, headers={"Authorization": first["access_token"]}))  # OAuth needs Bearer
    assert gql(server, viewer, headers=bearer).status_code == 200

    server.faults.add("linear", "token_expiry", "/graphql")
    _auth_error(gql(server, viewer, headers=bearer))
    _auth_error(gql(server, viewer, headers=bearer))  # really dead now
    rotated = httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                          **client}).json()
    assert gql(server, viewer, headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code == 200
    assert httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                       **client}).status_code == 400  # refresh tokens rotate
    machine = httpx.post(token_url, data={"grant_type": "client_credentials", **client}).json()
    assert "refresh_token" not in machine
    assert gql(server, viewer, headers={"Authorization": f"Bearer {machine['access_token']}"}).status_code == 200


def test_rate_limit_headers_throttle_and_server_errors(small_company: Company,
                                                       serve: Callable[..., SandboxServer]) -> None:
    server = serve(small_company, ["linear"])
    ok = gql(server, "{ issues(first: 10) { nodes { id title } } }")
    assert int(ok.headers["X-RateLimit-Requests-Limit"]) == 5000
    assert int(ok.headers["X-RateLimit-Requests-Remaining"]) < 5000
    assert int(ok.headers["X-Complexity"]) >= 10
    assert int(ok.headers["X-RateLimit-Complexity-Remaining"]) < int(ok.headers["X-RateLimit-Complexity-Limit"])
    server.faults.add("linear", "throttle", "/graphql", retry_after=3)
    throttled = gql(server, "{ viewer { id } }")
    assert throttled.status_code == Linear.RATELIMIT_STATUS
    ext = throttled.json()["errors"][0]["extensions"]
    assert ext["code"] == "RATELIMITED" and ext["type"] == "ratelimited"
    assert throttled.headers["Retry-After"] == "3" and throttled.headers["X-RateLimit-Requests-Remaining"] == "0"
    assert gql(server, "{ viewer { id } }").status_code == 200
    server.faults.add("linear", "server_error", "/graphql", status=502)
    failed = gql(server, "{ viewer { id } }")
    assert failed.status_code == 502 and failed.json()["errors"][0]["extensions"]["type"] == "internal error"


@pytest.mark.parametrize("fault", ["duplicate_record", "schema_drift"])
def test_record_faults_on_a_graphql_page(small_company: Company, serve: Callable[..., SandboxServer],
                                         fault: str) -> None:
    server = serve(small_company, ["linear"])
    query = "query($after: String) { issues(first: 5, after: $after) { nodes { id title } pageInfo { endCursor } } }"
    page1 = gql(server, query).json()["data"]["issues"]
    server.faults.add("linear", fault, "/graphql", change="removed_field", field="title")
    page2 = gql(server, query, {"after": page1["pageInfo"]["endCursor"]})
    assert page2.status_code == 200
    nodes = page2.json()["data"]["issues"]["nodes"]
    if fault == "duplicate_record":
        assert nodes[0] == page1["nodes"][-1] and len(nodes) == 6
    else:  # a field the record lost is still schema-valid (String! → a neutral value), never a crash
        assert all(n["title"] == "" for n in nodes)
