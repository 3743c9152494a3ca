"""The query door end to end: a real JupyterHub, the query service on a free port, a snapshot of the
synced small sandbox with core/marts tables of our own (real sandbox contacts, so real PII)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.warehouse import SnapshotBuilder, open_warehouse
from tests.support.hub import RunningHub, minimal_config, start_hub

QUERY_TOKEN = secrets.token_hex(24)
USERS = {
    "ana": ["sophia-analysts"],
    "amy": ["sophia-analysts"],
    "dev": ["sophia-developers"],
    "vic": ["sophia-executives"],
    "emea": ["sophia-executives", "sophia-region-emea"],
    "sue": ["sophia-super-users"],
    "nobody": ["some-other-team"],
}


def build_test_tables(b: SnapshotBuilder) -> None:
    """core.people / core.accounts / marts.* from the synced Salesforce raw tables."""
    people = b.query("""
        SELECT id AS person_key, account_id AS account_key, first_name, last_name, name AS full_name,
               lower(email) AS email, phone, title
        FROM raw_salesforce.contact WHERE NOT coalesce(_sophia_deleted, false) AND email IS NOT NULL""")
    b.write_table("core", "people", people)
    b.write_table("core", "accounts", b.query("""
        SELECT id AS account_key, name, lower(region_c) AS region, industry, annual_revenue
        FROM raw_salesforce.account WHERE NOT coalesce(_sophia_deleted, false)"""))
    b.write_table("marts", "pipeline_by_region", b.query("""
        SELECT lower(a.region_c) AS region, o.stage_name AS stage, count(*) AS deals, sum(o.amount) AS amount
        FROM raw_salesforce.opportunity o JOIN raw_salesforce.account a ON a.id = o.account_id
        GROUP BY 1, 2"""))
    b.write_table("marts", "deal_contacts", b.query("""
        SELECT o.id AS opportunity_id, lower(a.region_c) AS region, c.email AS contact_email,
               c.name AS contact_name, c.phone AS contact_phone, o.amount, o.close_date
        FROM raw_salesforce.opportunity o JOIN raw_salesforce.account a ON a.id = o.account_id
        JOIN raw_salesforce.contact c ON c.account_id = a.id"""))
    b.write_table("marts", "global_totals", b.query(
        "SELECT count(*) AS opportunities, sum(amount) AS amount FROM raw_salesforce.opportunity"))


TEST_METRICS = """
version: 1
models:
  - name: deals
    table: marts.deal_contacts
    description: Opportunities with their contacts (test model over PII).
    time: close_date
    dimensions: [region, contact_email, contact_name]
    columns: [opportunity_id, amount]
metrics:
  - name: deal_amount
    description: Sum of opportunity amounts per contact row.
    owner: Tests
    unit: currency
    type: simple
    model: deals
    agg: sum
    expr: amount
    grains: [month, quarter, year]
    default_grain: month
"""


@dataclass
class QueryEnv:
    config: SophiaConfig
    hub: RunningHub
    url: str
    tokens: dict[str, str]
    service: object

    def client(self, user: str):
        from sophia_lib.query.client import QueryClient

        return QueryClient(self.url, self.tokens[user])


@pytest.fixture(scope="session")
def query_config(synced_sandbox, tmp_path_factory: pytest.TempPathFactory) -> SophiaConfig:
    folder = tmp_path_factory.mktemp("query")
    config = synced_sandbox.copy_to(folder / "var")
    (folder / "metrics.yaml").write_text(TEST_METRICS)
    config.metrics.path = folder / "metrics.yaml"
    wh = open_warehouse(config)
    try:
        wh.publish(build_test_tables)
    finally:
        wh.close()
    return config


def hub_config() -> str:
    return minimal_config(
        services=[{"name": "query", "api_token": QUERY_TOKEN}],
        roles=[{"name": "sophia-query-service", "scopes": ["read:users:name", "read:users:groups"],
                "services": ["query"]},
               {"name": "user", "scopes": ["self", "access:services!service=query"]}])


@pytest.fixture(scope="session")
def query_hub() -> Iterator[RunningHub]:
    with start_hub(hub_config()) as hub:
        for user, groups in USERS.items():
            hub.create_user(user, groups)
        yield hub


@pytest.fixture(scope="session")
def query_env(query_config: SophiaConfig, query_hub: RunningHub) -> Iterator[QueryEnv]:
    from sophia_lib.query.identity import HubIdentity
    from sophia_lib.query.service import start_in_thread

    identifier = HubIdentity(query_hub.api_url, QUERY_TOKEN, query_config.hub.group_roles,
                             query_config.query.required_scope, cache_s=2.0)
    running = start_in_thread(query_config, identifier=identifier)
    tokens = {user: query_hub.token_for(user) for user in USERS}
    try:
        yield QueryEnv(query_config, query_hub, running.url, tokens, running.service)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def pii(query_config: SophiaConfig) -> dict[str, set[str]]:
    """Every real contact email, phone and name in the snapshot: none may come back to a non-super user."""
    wh = open_warehouse(query_config)
    try:
        with wh.reader() as r:
            rows = r.query("SELECT email, phone, first_name, last_name, full_name FROM core.people").to_pydict()
    finally:
        wh.close()
    return {"email": {v for v in rows["email"] if v}, "phone": {v for v in rows["phone"] if v},
            "name": {v for k in ("first_name", "last_name", "full_name") for v in rows[k] if v and len(v) > 2}}


def assert_no_pii(frame, pii: dict[str, set[str]]) -> None:
    """No cell (in any column, however computed) holds a real email, phone or name, even lower-cased."""
    values = {str(v).lower() for column in frame.columns for v in frame[column].tolist() if v is not None}
    lowered = {k: {x.lower() for x in v} for k, v in pii.items()}
    for kind, secrets_ in lowered.items():
        leaked = values & secrets_
        assert not leaked, f"{kind} leaked: {sorted(leaked)[:3]}"
    for value in (v for v in values if "@" in v):  # nor contains one (e.g. inside a concatenation)
        assert not any(e in value for e in lowered["email"]), value


def path_of(config: SophiaConfig) -> Path:
    return Path(config.var_dir)
