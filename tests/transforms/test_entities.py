"""Entity resolution: the normalisers, the clustering, and the tricky cases end to end through the step
(over a hand-made raw store), plus the contract of the published core tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sophia_lib.transforms import STEPS, TransformContext
from sophia_lib.transforms.entities import entities
from sophia_lib.transforms.entities.cluster import cluster_keys, components, star_edges
from sophia_lib.transforms.entities.fuzzy import best_matches
from sophia_lib.transforms.entities.normalise import (
    company_name_key,
    email_domain,
    normalise_domain,
    normalise_email,
    person_name_key,
)
from sophia_lib.transforms.entities.scoring import pairwise_score
from sophia_lib.warehouse import open_warehouse
from tests.transforms.conftest import Transformed

CONTRACT = {
    "accounts": ["account_key", "name", "domain", "industry", "segment", "region", "country", "employee_count",
                 "annual_revenue", "owner_employee_key", "is_customer", "customer_since", "churned_at",
                 "first_touch_at", "salesforce_id", "hubspot_id", "netsuite_id", "intercom_id", "source_systems",
                 "created_at", "updated_at"],
    "account_xref": ["account_key", "system", "system_id", "match_rule", "confidence"],
    "people": ["person_key", "account_key", "first_name", "last_name", "full_name", "email", "phone", "title",
               "lifecycle_stage", "salesforce_id", "hubspot_id", "intercom_id", "source_systems", "created_at",
               "updated_at"],
    "person_xref": ["person_key", "system", "system_id", "match_rule", "confidence"],
    "employees": ["employee_key", "full_name", "email", "title", "department", "team", "region", "is_active",
                  "source_systems"],
    "employee_xref": ["employee_key", "system", "system_id", "match_rule"],
}


def s(*values: Any) -> pd.Series:
    return pd.Series(list(values), dtype="object")


# --- normalisers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("acme.com", "acme.com"),
    ("https://WWW.Acme.com/about?x=1", "acme.com"),
    ("www.acme.com.", "acme.com"),
    ("app.acme.com", "acme.com"),
    ("EU.ACME.COM", "acme.com"),
    ("https://mail.acme.co.uk/", "acme.co.uk"),
    ("acme.co.uk", "acme.co.uk"),
    ("www.evergreen.com.au", "evergreen.com.au"),
    ("http://user@www.acme.io:8080/x", "acme.io"),
    ("  Acme.DE  ", "acme.de"),
    ("acme", None),
    ("not a domain.com", None),
    ("", None),
    (None, None),
])
def test_normalise_domain(raw: str | None, expected: str | None) -> None:
    got = normalise_domain(s(raw)).iloc[0]
    assert (None if pd.isna(got) else got) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (" Ann.Lee@Acme.COM ", "ann.lee@acme.com"),
    ("ANN.LEE@ACME.COM", "ann.lee@acme.com"),
    ("mailto:ann@acme.com", "ann@acme.com"),
    ("Ann Lee <Ann@Acme.com>", "ann@acme.com"),
    ("ann@acme", None),
    ("two@at@acme.com", None),
    ("", None),
    ("   ", None),
    (None, None),
])
def test_normalise_email(raw: str | None, expected: str | None) -> None:
    got = normalise_email(s(raw)).iloc[0]
    assert (None if pd.isna(got) else got) == expected


def test_email_domain_ignores_free_mail() -> None:
    got = email_domain(normalise_email(s("ann@app.acme.com", "ann.lee@gmail.com", "x@Hotmail.co.uk", None)))
    assert got.iloc[0] == "acme.com"
    assert got.iloc[1:].isna().all()


def test_company_name_key_folds_case_punctuation_and_legal_forms() -> None:
    same = [("Acme Widgets, Inc.", "ACME WIDGETS INCORPORATED", "acme widgets inc"),
            ("Velvetgen Ventures Pvt. Ltd.", "Velvetgen Ventures Private Limited", "VELVETGEN VENTURES"),
            ("Oakstream B.V.", "Oakstream BV", "oakstream"),
            ("Harborlight Energy SAS", "Harborlight Energy S.A.S.", "harborlight energy"),
            ("Evergreencast Ventures Pty Ltd", "Evergreencast Ventures PTY LTD", "Evergreencast Ventures Pty. Ltd."),
            ("Müller & Söhne GmbH", "Muller and Sohne", "MULLER & SOHNE GMBH")]
    for names in same:
        keys = company_name_key(s(*names))
        assert keys.nunique() == 1, (names, keys.tolist())
    assert company_name_key(s("Acme GmbH")).iloc[0] != company_name_key(s("Acmex GmbH")).iloc[0]
    assert company_name_key(s("Inc.")).iloc[0] == "inc"  # a name that is only a legal form is kept
    assert company_name_key(s("", None)).isna().all()


def test_person_name_key() -> None:
    keys = person_name_key(s("Ann", "ANN", None), s("Lee-Smith", "lee smith", None), s(None, None, " Ann  Lee Smith "))
    assert keys.tolist() == ["ann lee smith"] * 3


# --- clustering ---------------------------------------------------------------------------------------------
def test_components_follow_chains_and_keep_singletons() -> None:
    edges = [(np.array([0, 4]), np.array([3, 5])), (np.array([3]), np.array([6]))]
    labels = components(8, edges)
    assert labels.tolist() == [0, 1, 2, 0, 4, 4, 0, 7]


def test_star_edges_link_equal_keys_only() -> None:
    a, b = star_edges(s("x", None, "y", "x", None, "x"))
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 3), (0, 5)]


def test_cluster_keys_are_stable_and_anchor_on_priority() -> None:
    labels = np.array([0, 0, 2])
    first = cluster_keys("acct_", labels, s("hubspot", "salesforce", "hubspot"), s("9", "001A", "7"),
                         {"salesforce": 0, "hubspot": 1})
    # the same records in another order (a later refresh) get the same keys
    again = cluster_keys("acct_", np.array([0, 1, 1]), s("hubspot", "salesforce", "hubspot"), s("7", "001A", "9"),
                         {"salesforce": 0, "hubspot": 1})
    assert first.iloc[0] == first.iloc[1] == again.iloc[1] == again.iloc[2]
    assert first.iloc[2] == again.iloc[0] != first.iloc[0]
    assert first.str.fullmatch(r"acct_[0-9a-f]{16}").all()


def test_fuzzy_matches_a_typo_not_a_different_company() -> None:
    keys = company_name_key(s("Umbrela Holdings", "Umbrella Holdings", "Umbrella Logistics", "Zenith Labs"))
    query = np.array([True, False, False, False])
    a, b = best_matches(keys, query, ~query, 0.6)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 0)]
    a, _ = best_matches(keys, np.array([False, False, False, True]), np.array([True, True, True, False]), 0.6)
    assert len(a) == 0


def test_pairwise_score() -> None:
    truth = pd.DataFrame({"system": ["a", "b", "c", "a"], "system_id": ["1", "1", "1", "2"],
                          "entity_id": ["X", "X", "X", "Y"]})
    pred = pd.DataFrame({"system": ["a", "b", "c", "a"], "system_id": ["1", "1", "1", "2"], "k": ["p", "p", "q", "p"]})
    score = pairwise_score(truth, pred, "k")
    assert (score.true_pairs, score.predicted_pairs, score.correct_pairs) == (3, 3, 1)
    assert score.precision == pytest.approx(1 / 3) and score.recall == pytest.approx(1 / 3)


# --- the step over a hand-made raw store -----------------------------------------------------------------------
class MemoryBuilder:
    """Raw tables in an in-memory DuckDB; written tables kept as Arrow."""

    def __init__(self, raw: dict[str, pd.DataFrame]) -> None:
        self.con = duckdb.connect()
        self.as_of = datetime(2026, 6, 1, tzinfo=UTC)
        self.snapshot_id = "test"
        self.tables: dict[str, pa.Table] = {}
        for name, frame in raw.items():
            schema, table = name.split(".")
            self.con.execute(f'create schema if not exists "{schema}"')
            self.con.register("_frame", frame)
            self.con.execute(f'create table "{schema}"."{table}" as select * from _frame')
            self.con.unregister("_frame")

    def query(self, sql: str, params: Any = None) -> pa.Table:
        return self.con.sql(sql, params=params).to_arrow_table()

    def write_table(self, schema: str, table: str, data: pa.Table) -> int:
        self.tables[f"{schema}.{table}"] = data
        return data.num_rows


T0 = pd.Timestamp("2025-01-01", tz="UTC")


def raw_store() -> dict[str, pd.DataFrame]:
    return {
        "raw_salesforce.account": pd.DataFrame({
            "id": ["001A00000000001AAA", "001A00000000002AAA", "001A00000000003AAA"],
            "name": ["Acme Widgets Inc.", "Acme Widgets GmbH", "Initech"],
            "website": ["https://WWW.Acme.com/", "acme.de", "initech.com"],
            "industry": ["Software", "Software", "Consulting"], "owner_id": ["005U1", "005U1", None],
            "customer_since_c": ["2025-02-01", None, None], "churn_date_c": [None, None, None],
            "created_date": [T0, T0, T0], "last_modified_date": [T0, T0, T0], "is_deleted": [False] * 3}),
        "raw_hubspot.companies": pd.DataFrame({
            # 503: another domain, but HubSpot's Salesforce sync names the Salesforce account
            "id": ["501", "502", "503"], "name": ["ACME WIDGETS INCORPORATED", "Globex Corp", "Initech Europe"],
            "domain": ["app.acme.com", "globex.com", "initech.eu"],
            "industry": ["COMPUTER_SOFTWARE", "IT_SERVICES", None],
            "salesforceaccountid": [None, None, "001A00000000003"],
            "createdate": [T0] * 3, "hs_lastmodifieddate": [T0] * 3, "archived": [False] * 3}),
        "raw_salesforce.lead": pd.DataFrame({
            "id": ["00QA1", "00QA2"], "first_name": ["Lou", "Ann"], "last_name": ["Park", "Lee"],
            "email": ["lou@gmail.com", "ann.lee@acme.com"], "is_converted": [False, True], "is_deleted": [False] * 2,
            "status": ["Open", "Converted"], "created_date": [T0] * 2, "last_modified_date": [T0] * 2}),
        "raw_netsuite.customer": pd.DataFrame({
            # 1201: no url, named differently; linked through an invoice's Salesforce opportunity
            # 1202: no url, no invoice: matched by name to HubSpot's Globex
            "id": ["1201", "1202"], "companyname": ["ACME (Americas)", "Globex Corporation"],
            "url": [None, None], "isperson": [False, False], "firstsaledate": ["2025-02-01", "2025-03-01"],
            "datecreated": [T0, T0], "lastmodifieddate": [T0, T0]}),
        "raw_netsuite.transaction": pd.DataFrame({"entity": ["1201"], "custbody_sf_opportunity": ["006A1"]}),
        "raw_salesforce.opportunity": pd.DataFrame({"id": ["006A1"], "account_id": ["001A00000000001AAA"]}),
        "raw_intercom.companies": pd.DataFrame({
            # no website: a missing link the name rule recovers ("Initech LLC" ≡ "Initech")
            "id": ["ic1", "ic2"], "company_id": ["x1", "x2"], "name": ["Acme Widgets Inc.", "Initech LLC"],
            "website": ["https://acme.com", None], "created_at": [T0, T0], "updated_at": [T0, T0]}),
        "raw_factors.journey_events": pd.DataFrame({
            "account_domain": ["www.acme.com", "acme.com"], "timestamp": [T0 - pd.Timedelta(days=30), T0],
            "user_id": ["u1", "u2"], "user_name": ["u1", "bob@acme.com"], "is_anonymous": [True, False]}),
        "raw_salesforce.contact": pd.DataFrame({
            "id": ["003A1", "003A2", "003A3", "003A4"], "is_deleted": [False] * 4,
            "account_id": ["001A00000000001AAA", "001A00000000001AAA", "001A00000000001AAA", "001A00000000003AAA"],
            "first_name": ["Ann", "Ann", "Carl", "Dee"], "last_name": ["Lee", "Lee", "Diaz", "Fox"],
            # 003A1/003A2: one person twice in Salesforce (e-mail case and whitespace differ)
            # 003A3: e-mail domain differs from the account's: the account comes from the record's link
            "email": [" Ann.Lee@Acme.com", "ann.lee@acme.com ", "carl@acme-partners.net", "dee@initech.com"],
            "created_date": [T0] * 4, "last_modified_date": [T0] * 4}),
        "raw_hubspot.contacts": pd.DataFrame({
            "id": ["h1", "h2", "h3"], "associatedcompanyid": ["501", None, "501"],
            "email": ["ANN.LEE@ACME.COM", "carl@acme-partners.net", "zoe@gmail.com"],
            "firstname": ["Ann", "Carl", "Zoe"], "lastname": ["Lee", "Diaz", "Ng"], "archived": [False] * 3,
            "createdate": [T0] * 3, "lastmodifieddate": [T0] * 3}),
        "raw_intercom.contacts": pd.DataFrame({
            # Zoe's work address in Intercom, private one in HubSpot: same name at the same account
            # Dee's Intercom record has no e-mail and a company without website: name at account
            "id": ["i1", "i2", "i3"], "email": ["zoe.ng@acme.com", "", "ann.lee@acme.com"],
            "name": ["Zoe Ng", "Dee Fox", "Ann Lee"], "company_ids": ['["ic1"]', '["ic2"]', "[]"],
            "created_at": [T0] * 3, "updated_at": [T0] * 3}),
        "raw_salesforce.user": pd.DataFrame({
            "id": ["005U1"], "email": ["Sam.Roe@Halcyon.com"], "first_name": ["Sam"], "last_name": ["Roe"],
            "name": ["Sam Roe"], "title": ["AE"], "department": ["Sales"], "division": ["SMB"], "is_active": [True],
            "user_type": ["Standard"]}),
        "raw_hubspot.owners": pd.DataFrame({
            "id": ["77"], "email": ["sam.roe@halcyon.com "], "first_name": ["Sam"], "last_name": ["Roe"],
            "type": ["PERSON"], "archived": [False], "teams": ['[{"id": "1", "name": "SMB", "primary": true}]']}),
        "raw_slack.users": pd.DataFrame({
            "id": ["U1", "B1"], "real_name": ["Sam Roe", "Bot"], "email": [None, None], "is_bot": [False, True],
            "deleted": [False, False], "tz": ["Europe/Berlin", None]}),
        "raw_notion.pages": pd.DataFrame({"created_by_id": ["n-1", "nb-1"], "last_edited_by_id": ["n-1", "n-2"]}),
        "raw_notion.users": pd.DataFrame({"id": ["n-2", "nb-1"], "type": ["person", "bot"],
                                          "name": ["Lee Park", "Sophia"], "email": ["Lee.Park@halcyon.com", None]}),
        "raw_looker.users": pd.DataFrame({"id": ["42"], "first_name": ["Lee"], "last_name": ["Park"],
                                          "email": ["lee.park@halcyon.com"], "is_disabled": [True]}),
        "raw_looker.looks": pd.DataFrame({"id": ["7", "8"], "title": ["a", "b"], "user_id": ["42", "43"]}),
    }


@pytest.fixture(scope="module")
def built() -> dict[str, pd.DataFrame]:
    builder = MemoryBuilder(raw_store())
    ctx = TransformContext(builder, builder.as_of)
    entities(ctx)
    return {table: ctx.table(f"core.{table}") for table in CONTRACT}


def key_of(xref: pd.DataFrame, key: str, system: str, system_id: str) -> str:
    row = xref[(xref["system"] == system) & (xref["system_id"] == system_id)]
    assert len(row) == 1, (system, system_id, xref)
    return row[key].iloc[0]


def test_contract_columns(built: dict[str, pd.DataFrame]) -> None:
    for table, columns in CONTRACT.items():
        assert list(built[table].columns) == columns, table


def test_accounts_domain_variants_crm_links_and_names(built: dict[str, pd.DataFrame]) -> None:
    x = built["account_xref"]
    acme = key_of(x, "account_key", "salesforce", "001A00000000001AAA")
    for system, sid in [("hubspot", "501"), ("intercom", "ic1"), ("factors", "www.acme.com"), ("factors", "acme.com"),
                        ("netsuite", "1201")]:
        assert key_of(x, "account_key", system, sid) == acme, (system, sid)
    assert key_of(x, "account_key", "salesforce", "001A00000000002AAA") != acme  # acme.de: another company
    assert key_of(x, "account_key", "netsuite", "1202") == key_of(x, "account_key", "hubspot", "502")
    assert key_of(x, "account_key", "intercom", "ic2") == key_of(x, "account_key", "salesforce", "001A00000000003AAA")
    rules = x.set_index(["system", "system_id"])["match_rule"]
    assert rules[("netsuite", "1201")] == "crm_id"
    assert rules[("hubspot", "501")] == "domain"
    assert rules[("netsuite", "1202")] == "name"
    assert rules[("hubspot", "503")] == "crm_id"  # a 15-character Salesforce id matches the 18-character one
    assert key_of(x, "account_key", "hubspot", "503") == key_of(x, "account_key", "salesforce", "001A00000000003AAA")
    row = built["accounts"].set_index("account_key").loc[acme]
    assert row["domain"] == "acme.com"
    assert row["name"] == "Acme Widgets Inc."  # the name most systems agree on
    assert row["netsuite_id"] == "1201" and row["hubspot_id"] == "501" and row["intercom_id"] == "ic1"
    assert row["source_systems"] == "salesforce,hubspot,netsuite,intercom,factors"
    assert row["first_touch_at"] == T0 - pd.Timedelta(days=30)
    assert bool(row["is_customer"]) and row["customer_since"] == pd.Timestamp("2025-02-01", tz="UTC")
    owner = key_of(built["employee_xref"], "employee_key", "salesforce", "005U1")
    assert row["owner_employee_key"] == owner
    globex = built["accounts"].set_index("account_key").loc[key_of(x, "account_key", "hubspot", "502")]
    assert globex["industry"] == "IT Services"


def test_people_duplicates_case_and_domain_mismatch(built: dict[str, pd.DataFrame]) -> None:
    x = built["person_xref"]
    ann = key_of(x, "person_key", "salesforce", "003A1")
    assert {key_of(x, "person_key", "salesforce", "003A2"), key_of(x, "person_key", "hubspot", "h1"),
            key_of(x, "person_key", "intercom", "i3")} == {ann}
    acme = key_of(built["account_xref"], "account_key", "salesforce", "001A00000000001AAA")
    people = built["people"].set_index("person_key")
    assert people.loc[ann, "email"] == "ann.lee@acme.com"
    assert people.loc[ann, "account_key"] == acme
    carl = key_of(x, "person_key", "salesforce", "003A3")
    assert key_of(x, "person_key", "hubspot", "h2") == carl
    assert people.loc[carl, "account_key"] == acme  # from the Salesforce link, not the e-mail domain
    zoe = key_of(x, "person_key", "hubspot", "h3")
    assert key_of(x, "person_key", "intercom", "i1") == zoe  # free-mail + work address, same name at Acme
    assert x.set_index(["system", "system_id"]).loc[("intercom", "i1"), "match_rule"] == "name_at_account"
    dee = key_of(x, "person_key", "salesforce", "003A4")
    assert key_of(x, "person_key", "intercom", "i2") == dee  # no e-mail: name at the (name-matched) account
    bob = key_of(x, "person_key", "factors", "u2")
    assert people.loc[bob, "account_key"] == acme and people.loc[bob, "source_systems"] == "factors"
    assert ("factors", "u1") not in set(zip(x["system"], x["system_id"], strict=True))  # anonymous visitor
    lou = key_of(x, "person_key", "salesforce", "00QA1")  # an open lead, free-mail: a person with no account
    assert pd.isna(people.loc[lou, "account_key"]) and people.loc[lou, "lifecycle_stage"] == "Open"
    assert "00QA2" not in set(x["system_id"])  # a converted lead: its contact stands for it


def test_employees(built: dict[str, pd.DataFrame]) -> None:
    x = built["employee_xref"]
    sam = key_of(x, "employee_key", "salesforce", "005U1")
    assert key_of(x, "employee_key", "hubspot", "77") == sam
    assert key_of(x, "employee_key", "slack", "U1") == sam  # no e-mail in Slack: by name
    assert "B1" not in set(x["system_id"])  # bots are not staff
    assert key_of(x, "employee_key", "notion", "n-1") != sam  # id only: its own, unresolved
    lee = key_of(x, "employee_key", "notion", "n-2")  # users tables: matched by e-mail
    assert key_of(x, "employee_key", "looker", "42") == lee != key_of(x, "employee_key", "looker", "43")
    assert "nb-1" not in set(x["system_id"])  # a Notion bot is not staff
    assert built["employees"].set_index("employee_key").loc[lee, "is_active"] == False  # noqa: E712 - Looker: disabled
    row = built["employees"].set_index("employee_key").loc[sam]
    assert (row["email"], row["team"], row["region"], row["department"]) == (
        "sam.roe@halcyon.com", "SMB", "EMEA", "Sales")
    assert row["source_systems"] == "salesforce,hubspot,slack"


def test_keys_survive_a_refresh_with_more_data() -> None:
    first = TransformContext(MemoryBuilder(raw_store()), datetime(2026, 6, 1, tzinfo=UTC))
    entities(first)
    raw = raw_store()
    raw["raw_hubspot.companies"] = pd.concat([raw["raw_hubspot.companies"], pd.DataFrame({
        "id": ["504"], "name": ["Hooli"], "domain": ["hooli.xyz"], "createdate": [T0], "hs_lastmodifieddate": [T0],
        "archived": [False]})], ignore_index=True).iloc[::-1]
    second = TransformContext(MemoryBuilder(raw), datetime(2026, 6, 2, tzinfo=UTC))
    entities(second)
    before, after = first.table("core.account_xref"), second.table("core.account_xref")
    merged = before.merge(after, on=["system", "system_id"])
    assert len(merged) == len(before) and (merged["account_key_x"] == merged["account_key_y"]).all()


def test_empty_sources_build_empty_tables() -> None:
    ctx = TransformContext(MemoryBuilder({}), datetime(2026, 6, 1, tzinfo=UTC))
    entities(ctx)
    for table, columns in CONTRACT.items():
        frame = ctx.table(f"core.{table}")
        assert frame.empty and list(frame.columns) == columns


# --- the published snapshot -----------------------------------------------------------------------------------
def test_entities_step_runs_first() -> None:
    assert STEPS[0] is entities


def test_published_tables_follow_the_contract(transformed: Transformed) -> None:
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as r:
            tables = {t: r.query(f"select * from core.{t}").to_pandas() for t in CONTRACT}
    finally:
        wh.close()
    for table, columns in CONTRACT.items():
        assert list(tables[table].columns) == columns, table
        assert len(tables[table]) > 0, table
    for entity, key in [("account", "account_key"), ("person", "person_key"), ("employee", "employee_key")]:
        x = tables[f"{entity}_xref"]
        assert not x.duplicated(["system", "system_id"]).any()
        core = tables[{"account": "accounts", "person": "people", "employee": "employees"}[entity]]
        assert core[key].is_unique and set(x[key]) == set(core[key])
    accounts = tables["accounts"]
    assert accounts["domain"].dropna().str.fullmatch(r"[a-z0-9.\-]+").all()
    assert set(tables["people"]["account_key"].dropna()) <= set(accounts["account_key"])
    assert set(accounts["owner_employee_key"].dropna()) <= set(tables["employees"]["employee_key"])
    assert tables["people"]["email"].dropna().str.fullmatch(r"[^A-Z\s]+@[^A-Z\s]+").all()


def test_run_steps_rebuilds_what_was_published(transformed: Transformed, run_steps) -> None:
    ctx = run_steps(entities)
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as r:
            published = r.query("select * from core.account_xref order by system, system_id").to_pandas()
    finally:
        wh.close()
    rebuilt = ctx.table("core.account_xref").sort_values(["system", "system_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rebuilt[["system", "system_id", "account_key"]].astype(str),
                                  published[["system", "system_id", "account_key"]].astype(str))
