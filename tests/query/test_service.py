"""The query service end to end with a real JupyterHub: identity, policy on every read path, cache, audit.

Each security test states the protection it proves; removing that protection makes it fail.
"""

from __future__ import annotations

import time

import httpx
import pyarrow as pa
import pytest

from sophia_lib.query.errors import BadQueryError, ForbiddenError, NoRoleError, NotAuthenticatedError
from tests.query.conftest import QueryEnv, assert_no_pii

# ---- identity -------------------------------------------------------------------------------------


def test_no_token_forged_token_and_malformed_header_are_refused(query_env: QueryEnv) -> None:
    body = {"sql": "select * from marts.pipeline_by_region"}
    for headers in ({}, {"Authorization": "token " + "f" * 40}, {"Authorization": "Basic abc"},
                    {"Authorization": f"token {query_env.tokens['ana']}x"}):
        response = httpx.post(f"{query_env.url}/api/sql", json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert set(response.json()) == {"error", "fix", "reason"}


def test_expired_token_is_refused(query_env: QueryEnv) -> None:
    token = query_env.hub.token_for("ana", expires_in=1)
    client = query_env.client("ana")
    client.token = token
    time.sleep(2.2)  # past expiry and past the identity cache of a never-seen token
    with pytest.raises(NotAuthenticatedError, match="does not accept"):
        client.sql("select 1 as x")


def test_revoked_token_stops_working_within_the_identity_cache_time(query_env: QueryEnv) -> None:
    token = query_env.hub.token_for("ana", note="revoke-me")
    client = query_env.client("ana")
    client.token = token
    assert len(client.sql("select 1 as x")) == 1
    tokens = query_env.hub.api("GET", "users/ana/tokens").json()["api_tokens"]
    token_id = next(t["id"] for t in tokens if t["note"] == "revoke-me")
    assert query_env.hub.api("DELETE", f"users/ana/tokens/{token_id}").status_code == 204
    time.sleep(2.2)  # identity_cache_s in these tests
    with pytest.raises(NotAuthenticatedError):
        client.sql("select 1 as x")


def test_environment_variables_do_not_change_who_you_are(query_env: QueryEnv, monkeypatch) -> None:
    """A viewer who sets JUPYTERHUB_USER / SOPHIA_* to a super user's name is still the viewer."""
    for name in ("JUPYTERHUB_USER", "USER", "SOPHIA_USER", "SOPHIA_ROLE", "JUPYTERHUB_GROUPS"):
        monkeypatch.setenv(name, "sue")
    monkeypatch.setenv("SOPHIA_QUERY_URL", query_env.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", query_env.tokens["vic"])
    import sophia_lib as sl

    with pytest.raises(ForbiddenError, match="executive_viewer may not read core.people"):
        sl.table("core.people")
    assert query_env.client("vic").whoami()["user"] == "vic"
    response = httpx.post(f"{query_env.url}/api/table", json={"name": "core.people"},
                          headers={"Authorization": f"token {query_env.tokens['vic']}", "X-Forwarded-User": "sue",
                                   "X-Sophia-User": "sue"})
    assert response.status_code == 403


def test_user_in_no_sophia_group_is_refused_with_a_readable_message(query_env: QueryEnv) -> None:
    with pytest.raises(NoRoleError) as caught:
        query_env.client("nobody").sql("select * from marts.global_totals")
    assert "nobody is in no Sophia group" in caught.value.message
    assert "sophia-analysts" in (caught.value.fix or "")


def test_token_without_the_query_access_scope_is_refused(query_env: QueryEnv) -> None:
    client = query_env.client("ana")
    client.token = query_env.hub.token_for("ana", scopes=["read:users:name!user=ana"])
    with pytest.raises(NotAuthenticatedError, match="lacks the scope access:services"):
        client.sql("select 1 as x")


def test_group_change_applies_after_the_identity_cache(query_env: QueryEnv) -> None:
    hub = query_env.hub
    hub.create_user("mover", ["sophia-analysts"])
    client = query_env.client("ana")
    client.token = hub.token_for("mover")
    assert len(client.table("core.accounts")) > 0
    hub.remove_from_group("sophia-analysts", ["mover"])
    hub.add_to_group("sophia-executives", ["mover"])
    time.sleep(2.2)
    with pytest.raises(ForbiddenError):
        client.table("core.accounts")


# ---- policy through every read path -------------------------------------------------------------

VIEWER_TRICKS = [
    "select * from marts.deal_contacts",
    "select d.contact_email as e, d.contact_phone p from marts.deal_contacts d",
    "with x as (select * from marts.deal_contacts) select lower(contact_email) l, contact_email || '' c from x",
    "select upper(contact_name) u, substr(contact_email, 1, 200) s from (select * from marts.deal_contacts) q",
    "select contact_email from marts.deal_contacts union all select contact_name from marts.deal_contacts",
    'select "contact_email" /* comment */ from "marts"."deal_contacts" -- trailing',
    "select string_agg(contact_email, ',') from marts.deal_contacts",
    "select d from marts.deal_contacts d",
    "select * from marts.DEAL_CONTACTS where contact_email like '%@%' or contact_email is null",
]


@pytest.mark.parametrize("sql", VIEWER_TRICKS)
def test_viewer_never_sees_contact_pii_however_the_sql_is_written(query_env: QueryEnv, pii, sql: str) -> None:
    frame = query_env.client("vic").sql(sql)
    assert_no_pii(frame.astype(str), pii)


ANALYST_TRICKS = [
    "select * from core.people",
    "select p.email, p.phone, p.full_name from core.people as p",
    "select lower(email), email || '', substr(email, 1, 100), trim(first_name) from core.people",
    "with a as (select * from core.people), b as (select * from a) select * from b",
    "select email from core.people union select full_name from core.people",
    'select * from "core"."people"',
    "select * from CORE.PEOPLE",
    "select (select max(email) from core.people) m",
    "select * from core.people where email in (select email from core.people)",
    "select people.email from core.people",
    "select core.people.email from core.people",
    "select * from people",
    "select p from core.people p",
]


@pytest.mark.parametrize("sql", ANALYST_TRICKS)
def test_analyst_never_sees_contact_pii_however_the_sql_is_written(query_env: QueryEnv, pii, sql: str) -> None:
    frame = query_env.client("ana").sql(sql)
    assert len(frame) > 0
    assert_no_pii(frame.astype(str), pii)


def test_analyst_table_path_masks_and_hash_still_joins(query_env: QueryEnv, pii) -> None:
    people = query_env.client("ana").table("core.people")
    assert_no_pii(people.astype(str), pii)
    assert people["email"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert people["email"].nunique() == len(pii["email"])  # hashing keeps distinct values distinct
    assert people["phone"].dropna().str.fullmatch(r"\*\*\*\d{4}").all()
    assert people.attrs["snapshot_id"] and people.attrs["as_of"]


def test_super_user_sees_everything_unmasked(query_env: QueryEnv, pii) -> None:
    people = query_env.client("sue").table("core.people")
    assert set(people["email"]) == pii["email"]
    assert len(query_env.client("sue").sql("select * from raw_hubspot.contacts limit 5")) == 5


@pytest.mark.parametrize(("user", "sql", "needle"), [
    ("vic", "select * from core.people", "may not read core.people"),
    ("vic", "select * from marts.deal_contacts d join core.accounts a on true", "may not read core.accounts"),
    ("ana", "select * from raw_salesforce.contact", "may not read raw_salesforce.contact"),
    ("ana", 'select * from "raw_salesforce"."contact"', "may not read raw_salesforce.contact"),
    ("ana", "with c as (select * from raw_hubspot.contacts) select * from c", "may not read raw_hubspot.contacts"),
    ("ana", "select * from information_schema.tables", "system catalogs"),
    ("ana", "select * from information_schema.columns", "system catalogs"),
    ("ana", "select * from duckdb_tables()", "not allowed"),
    ("ana", "select * from read_csv('/etc/passwd')", "table functions"),
    ("ana", "select * from read_parquet('/tmp/*.parquet')", "table functions"),
    ("ana", "select * from '/etc/passwd'", "no table named"),
    ("ana", "select * from glob('/*')", "table functions"),
    ("ana", "select * from query_table('core.people')", "table functions"),
    ("ana", "select getenv('HOME')", "getenv"),
    ("ana", "attach '/tmp/other.duckdb' as other", "only SELECT"),
    ("ana", "select 1; select * from raw_hubspot.contacts", "one statement"),
    ("ana", "copy (select * from core.people) to '/tmp/x.csv'", "only SELECT"),
    ("ana", "pragma database_list", "only SELECT"),
    ("ana", "set enable_external_access = true", "only SELECT"),
    ("ana", "install httpfs", "only SELECT"),
    ("ana", "select * from sophia_meta.snapshot", "system catalogs"),
    ("sue", "select * from information_schema.tables", "system catalogs"),
])
def test_forbidden_tables_and_statements_are_refused(query_env: QueryEnv, user: str, sql: str, needle: str) -> None:
    with pytest.raises((ForbiddenError, BadQueryError)) as caught:
        query_env.client(user).sql(sql)
    assert needle in caught.value.message


def test_regional_manager_sees_only_their_region_on_every_path(query_env: QueryEnv) -> None:
    everyone = query_env.client("vic").table("marts.pipeline_by_region")
    assert {"emea"} < set(everyone["region"])
    client = query_env.client("emea")
    assert set(client.table("marts.pipeline_by_region")["region"]) == {"emea"}
    assert set(client.sql("select region from marts.deal_contacts union select region from "
                          "marts.pipeline_by_region")["region"]) == {"emea"}
    counted = client.sql("select count(*) as n from marts.pipeline_by_region where region <> 'emea'")
    assert counted["n"].iloc[0] == 0
    assert len(client.table("marts.global_totals")) == 1  # no region column: not regional (missing_column: skip)


def test_sql_injection_through_params_is_impossible(query_env: QueryEnv) -> None:
    client = query_env.client("ana")
    frame = client.sql("select name from core.accounts where name = :n",
                       {"n": "x' or 1=1; select * from raw_hubspot.contacts --"})
    assert len(frame) == 0
    with pytest.raises(BadQueryError, match="not allowed"):
        client.sql("select 1 as x where :sophia_salt is not null", {"sophia_salt": "x"})
    with pytest.raises(BadQueryError, match="has no value"):
        client.sql("select 1 as x where :sophia_salt is not null")


def test_metric_reads_pass_through_the_same_guard(query_env: QueryEnv, pii) -> None:
    by_contact = query_env.client("vic").metric("deal_amount", by=["contact_email", "contact_name"], grain="year")
    assert len(by_contact) > 0 and by_contact.attrs["snapshot_id"]
    assert_no_pii(by_contact.astype(str), pii)
    assert by_contact["contact_email"].isna().all()  # executives: null masking
    hashed = query_env.client("ana").metric("deal_amount", by="contact_email", grain="year")
    assert hashed["contact_email"].dropna().str.fullmatch(r"[0-9a-f]{16}").all()
    regions = query_env.client("emea").metric("deal_amount", by="region", grain="year")
    assert set(regions["region"]) == {"emea"}
    with pytest.raises(NoRoleError):
        query_env.client("nobody").metric("deal_amount")
    with pytest.raises(BadQueryError, match="did you mean 'deal_amount'"):
        query_env.client("ana").metric("deal_amout")


@pytest.mark.parametrize("where", [
    "region = 'emea' or 1=1",
    "region = 'x'; select * from raw_hubspot.contacts",
    "region in (select region from core.accounts)",
    {"region": "x' or '1'='1"},
])
def test_metric_where_cannot_widen_a_regional_managers_rows(query_env: QueryEnv, where) -> None:
    try:
        frame = query_env.client("emea").metric("deal_amount", by="region", grain="year", where=where)
    except (BadQueryError, ForbiddenError):
        return
    assert set(frame["region"]) <= {"emea"}


# ---- results, cache, audit ----------------------------------------------------------------------


def test_results_carry_snapshot_and_cache_hits_are_shared_within_a_scope(query_env: QueryEnv) -> None:
    sql = "select stage, sum(amount) as amount from marts.pipeline_by_region group by stage order by stage"
    headers = {"Authorization": f"token {query_env.tokens['ana']}"}
    first = httpx.post(f"{query_env.url}/api/sql", json={"sql": sql + " -- cache probe"}, headers=headers)
    second = httpx.post(f"{query_env.url}/api/sql", json={"sql": sql + " -- cache probe"},
                        headers={"Authorization": f"token {query_env.tokens['amy']}"})  # same policy scope
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert (first.headers["x-sophia-cache"], second.headers["x-sophia-cache"]) == ("miss", "hit")
    table = pa.ipc.open_stream(first.content).read_all()
    assert table.schema.metadata[b"sophia.snapshot_id"].decode() == first.headers["x-sophia-snapshot"]
    other_scope = httpx.post(f"{query_env.url}/api/sql", json={"sql": sql + " -- cache probe"},
                             headers={"Authorization": f"token {query_env.tokens['emea']}"})
    assert other_scope.headers["x-sophia-cache"] == "miss"


def test_every_read_and_refusal_is_audited(query_env: QueryEnv) -> None:
    from sophia_lib.appdb import open_app_db
    from sophia_lib.audit import AuditLog, verify

    client = query_env.client("dev")
    client.table("marts.global_totals", columns=["amount"])
    with pytest.raises(ForbiddenError):
        client.sql("select * from raw_hubspot.contacts")
    log = AuditLog(open_app_db(query_env.config))
    entries = [e for e in log.entries() if e.actor == "dev"]
    read, denied = entries[-2], entries[-1]
    assert (read.action, read.role, read.target) == ("query.table", "developer", "marts.global_totals")
    assert read.detail["columns"] == ["amount"] and read.detail["rows"] == 1
    assert read.detail["tables"] == ["marts.global_totals"] and "snapshot" in read.detail
    assert denied.action == "query.denied" and "raw_hubspot.contacts" in denied.detail["error"]
    assert verify(log).ok


def test_tables_lists_what_the_role_may_read(query_env: QueryEnv) -> None:
    listed = {t["name"]: t for t in query_env.client("ana").tables()}
    assert "core.people" in listed and not any(n.startswith("raw_") for n in listed)
    assert {"email", "phone", "full_name"} <= set(listed["core.people"]["masked"])
    assert set(query_env.client("vic").tables()[0]["name"].split(".")[:1]) == {"marts"}


def test_health_needs_no_token_and_shows_no_data(query_env: QueryEnv) -> None:
    body = httpx.get(f"{query_env.url}/health").json()
    assert body["status"] == "ok" and body["snapshot"]


def test_a_new_snapshot_invalidates_the_cache_and_is_picked_up(query_env: QueryEnv) -> None:
    from sophia_lib.warehouse import open_warehouse
    from tests.query.conftest import build_test_tables

    sql = {"sql": "select count(*) as n from marts.global_totals -- snapshot probe"}
    headers = {"Authorization": f"token {query_env.tokens['ana']}"}
    before = httpx.post(f"{query_env.url}/api/sql", json=sql, headers=headers)
    again = httpx.post(f"{query_env.url}/api/sql", json=sql, headers=headers)
    assert again.headers["x-sophia-cache"] == "hit"
    wh = open_warehouse(query_env.config)
    try:
        info = wh.publish(build_test_tables)
    finally:
        wh.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = httpx.post(f"{query_env.url}/api/sql", json=sql, headers=headers)
        if after.headers["x-sophia-snapshot"] == info.id:
            break
        time.sleep(0.2)
    assert after.headers["x-sophia-snapshot"] == info.id != before.headers["x-sophia-snapshot"]
    assert after.headers["x-sophia-cache"] == "miss"


def test_service_readers_cannot_touch_files_even_behind_the_guard(query_env: QueryEnv) -> None:
    from sophia_lib.errors import WarehouseError

    with query_env.service.door.readers.reader() as (reader, _):
        with pytest.raises(WarehouseError, match="Permission|disabled"):
            reader.query("select * from read_csv('/etc/passwd')")
        with pytest.raises(WarehouseError):
            reader.query("set enable_external_access = true")
