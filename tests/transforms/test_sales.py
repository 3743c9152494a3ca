"""Sales and marketing core tables and marts, built by the real transform chain from the synced small
sandbox and scored against the company's ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sophia_lib.sandbox.company import Company
from sophia_lib.transforms import TransformContext
from sophia_lib.warehouse import open_warehouse
from sophia_lib.warehouse.base import SnapshotBuilder

CORE = ["opportunities", "opportunity_stage_history", "opportunity_stages", "activities", "calls", "touchpoints",
        "accounts", "account_xref", "employee_xref"]
MARTS = ["opportunities", "pipeline", "bookings", "stage_conversion", "sales_effectiveness", "rep_performance",
         "customer_journey", "marketing_attribution", "lead_quality", "cac"]
SALES_MARKETING = {"Sales", "Marketing"}


@dataclass
class Built:
    company: Company
    core: dict[str, pd.DataFrame]
    marts: dict[str, pd.DataFrame]
    as_of: pd.Timestamp


def drop_netsuite_lookups(var_dir: Path) -> None:
    """The raw store as it is when NetSuite's department and accounting-period lookups were not synced (an
    account whose integration role cannot read them): CAC cannot name budget lines then."""
    with duckdb.connect(str(var_dir / "warehouse" / "raw.duckdb")) as con:
        con.execute("drop table raw_netsuite.department")
        con.execute("drop table raw_netsuite.accountingperiod")


def read_back(config, company: Company) -> Built:
    warehouse = open_warehouse(config)
    try:
        with warehouse.reader() as reader:
            core = {t: reader.query(f"select * from core.{t}").to_pandas() for t in CORE}
            marts = {t: reader.query(f"select * from marts.{t}").to_pandas() for t in MARTS}
            as_of = pd.Timestamp(reader.snapshot.as_of).tz_convert("UTC")
    finally:
        warehouse.close()
    return Built(company, core, marts, as_of)


@pytest.fixture(scope="module")
def built(transformed) -> Built:
    """The session's snapshot (every step, on each engine), read back from the warehouse."""
    return read_back(transformed.config, transformed.company)


@pytest.fixture(scope="module")
def built_without_lookups(synced_sandbox, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A snapshot of a raw store without NetSuite's department and period lookups (pandas)."""
    import sophia_lib.transforms as transforms

    config = synced_sandbox.copy_to(tmp_path_factory.mktemp("sales-no-lookups") / "var")
    drop_netsuite_lookups(config.var_dir)
    warehouse = open_warehouse(config)
    try:
        warehouse.publish(transforms.build, as_of=synced_sandbox.company.now.to_pydatetime(), timeout=60)
    finally:
        warehouse.close()
    return read_back(config, synced_sandbox.company)


def truth_opportunities(company: Company) -> pd.DataFrame:
    return company.live("opportunities").set_index("system_id")


def presence_map(company: Company, entity: str, system: str) -> pd.Series:
    """(system id → canonical id) of one entity kind in one system."""
    p = company.presence_of(entity, system)
    return p.drop_duplicates("system_id").set_index("system_id")["entity_id"]


def xref_map(built: Built, table: str, key: str, system: str) -> pd.Series:
    x = built.core[table]
    return x[x["system"] == system].drop_duplicates("system_id").set_index("system_id")[key]


# --- core --------------------------------------------------------------------------------------------
def test_opportunities_match_salesforce_truth(built: Built) -> None:
    truth = truth_opportunities(built.company)
    core = built.core["opportunities"].set_index("salesforce_id")
    assert set(core.index) == set(truth.index)
    t = truth.loc[core.index]
    assert (core["amount"].to_numpy() == t["amount"].to_numpy()).all()
    assert (core["stage"] == t["stage"]).all()
    assert (core["type"] == t["type"]).all()
    assert (core["is_won"].astype(bool) == t["is_won"].astype(bool)).all()
    assert (core["is_closed"].astype(bool) == t["is_closed"].astype(bool)).all()
    assert (pd.to_datetime(core["close_date"]).dt.normalize() == pd.to_datetime(t["close_date"]).dt.normalize()).all()
    assert core["hubspot_id"].notna().all() and (core["source_systems"] == "salesforce,hubspot").all()
    assert core["opportunity_key"].is_unique


def test_opportunity_accounts_and_owners_resolve_to_the_true_entities(built: Built) -> None:
    truth = truth_opportunities(built.company)
    core = built.core["opportunities"].set_index("salesforce_id")
    sf_account = presence_map(built.company, "account", "salesforce")
    assert (core["account_salesforce_id"].map(sf_account) == truth.loc[core.index, "account_id"]).all()
    assert (core["account_salesforce_id"].map(xref_map(built, "account_xref", "account_key", "salesforce"))
            == core["account_key"]).all()
    sf_user = presence_map(built.company, "employee", "salesforce")
    assert (core["owner_salesforce_id"].map(sf_user) == truth.loc[core.index, "owner_id"]).all()
    assert (core["owner_salesforce_id"].map(xref_map(built, "employee_xref", "employee_key", "salesforce"))
            == core["owner_employee_key"]).all()


def test_stage_history_is_a_chain_of_intervals_ending_in_the_current_stage(built: Built) -> None:
    history = built.core["opportunity_stage_history"]
    truth = built.company.tables["opportunity_history"]
    live = truth[truth["opportunity_id"].isin(built.company.live("opportunities")["opportunity_id"])]
    assert set(history["salesforce_id"]) == set(live["system_id"])
    h = history.sort_values(["opportunity_key", "valid_from"])
    nxt = h.groupby("opportunity_key")["valid_from"].shift(-1)
    assert (h["valid_to"].dropna() == nxt.dropna()).all()
    assert h["valid_to"].isna().sum() == h["opportunity_key"].nunique() == h["is_current"].sum()
    current = h[h["is_current"]].set_index("opportunity_key")["stage"]
    opps = built.core["opportunities"].set_index("opportunity_key")
    assert (current == opps.loc[current.index, "stage"]).all()
    changed_at = live.set_index("system_id")["changed_at"]
    assert (h.set_index("salesforce_id")["valid_from"] == changed_at.loc[h["salesforce_id"]]).all()
    # history carries Salesforce's API values (BestCase, Forecast); core speaks the labels opportunities use
    labels = {"Omitted", "Pipeline", "Best Case", "Commit", "Closed"}
    assert set(h["forecast_category"].dropna()) <= labels and set(opps["forecast_category"].dropna()) <= labels
    assert (h[h["is_current"]].set_index("opportunity_key")["forecast_category"]
            == opps.loc[current.index, "forecast_category"]).mean() > 0.9


def test_stages_are_ordered_like_the_funnel(built: Built) -> None:
    stages = built.core["opportunity_stages"].sort_values("stage_order")
    assert stages["stage"].tolist() == ["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote",
                                        "Negotiation/Review", "Closed Won", "Closed Lost"]
    assert stages.set_index("stage").loc["Closed Won", "is_won"]


def test_calls_map_to_the_right_opportunity_account_and_rep(built: Built) -> None:
    truth = built.company.live("calls").set_index("system_id")
    calls = built.core["calls"].set_index("gong_id")
    assert set(calls.index) == set(truth.index)
    t = truth.loc[calls.index]
    opp_sf = built.company.tables["opportunities"].set_index("opportunity_id")["system_id"]
    assert (calls["opportunity_salesforce_id"] == t["opportunity_id"].map(opp_sf)).all()
    live_opps = set(built.core["opportunities"]["salesforce_id"])
    linked = calls["opportunity_salesforce_id"].isin(live_opps)
    assert calls.loc[linked, "opportunity_key"].notna().all() and calls.loc[~linked, "opportunity_key"].isna().all()
    assert (calls["account_salesforce_id"].map(presence_map(built.company, "account", "salesforce"))
            == t["account_id"]).all()
    assert (calls["owner_gong_id"].map(presence_map(built.company, "employee", "gong")) == t["owner_id"]).all()
    assert calls["owner_employee_key"].notna().all() and calls["account_key"].notna().all()
    ready = calls["analysis_ready"].astype(bool)
    assert np.allclose(calls.loc[ready, "talk_ratio"], t.loc[ready, "talk_ratio"])
    assert (calls.loc[ready, "questions_asked"] == t.loc[ready, "questions_asked"]).all()
    assert (calls["duration_s"] == t["duration_s"]).all()
    assert (calls.loc[ready, "interactivity"] == t.loc[ready, "interactivity"]).all()


def test_activities_are_the_salesforce_tasks_and_events(built: Built) -> None:
    truth = built.company.live("activities")
    truth = truth[truth["system"] == "salesforce"].set_index("system_id")
    acts = built.core["activities"].set_index("system_id")
    assert set(acts.index) == set(truth.index)
    t = truth.loc[acts.index]
    assert (acts["kind"] == t["kind"]).all()
    opp_sf = built.company.tables["opportunities"].set_index("opportunity_id")["system_id"]
    assert (acts["related_salesforce_id"] == t["opportunity_id"].map(opp_sf)).all()
    completed = acts["status"] == "Completed"
    assert (acts.loc[completed, "occurred_at"] == t.loc[completed, "occurred_at"]).all()
    assert acts["owner_employee_key"].notna().all() and acts["account_key"].notna().all()


def test_touchpoints_carry_account_person_and_marketing_kind(built: Built) -> None:
    tp = built.core["touchpoints"]
    truth = built.company.live("touchpoints")
    factors_accounts = set(built.company.presence_of("account", "factors")["entity_id"])
    assert len(tp) == truth["account_id"].isin(factors_accounts).sum()
    assert tp["account_key"].notna().all()
    named = tp[~tp["is_anonymous"].astype(bool)]
    assert named["person_key"].notna().mean() >= 0.97
    product = truth["page_url"].str.startswith("https://app.")
    assert (tp["kind"] == "product").sum() == (product & truth["account_id"].isin(factors_accounts)).sum()


# --- marts -------------------------------------------------------------------------------------------
def test_bookings_per_quarter_equal_the_truth(built: Built) -> None:
    won = built.company.live("opportunities")
    won = won[won["is_won"].astype(bool)]
    truth = won.groupby(pd.to_datetime(won["close_date"]).dt.to_period("Q"))["amount"].sum()
    b = built.marts["bookings"]
    got = b.groupby(pd.to_datetime(b["close_date"]).dt.to_period("Q"))["amount"].sum()
    pd.testing.assert_series_equal(got, truth, check_names=False)
    assert b["is_new_logo"].sum() == b["account_key"].nunique()


def test_open_pipeline_now_by_stage_equals_the_truth(built: Built) -> None:
    opps = built.company.live("opportunities")
    truth = opps[~opps["is_closed"].astype(bool)].groupby("stage")["amount"].sum().sort_index()
    p = built.marts["pipeline"]
    current = p[p["is_current_week"].astype(bool)]
    assert (pd.to_datetime(current["snapshot_at"], utc=True) == built.as_of).all()
    pd.testing.assert_series_equal(current.groupby("stage")["amount"].sum().sort_index(), truth, check_names=False)
    core = built.core["opportunities"]
    open_core = core[~core["is_closed"].astype(bool)].groupby("stage")["amount"].sum().sort_index()
    pd.testing.assert_series_equal(open_core, truth, check_names=False)


def test_weekly_pipeline_equals_a_row_by_row_replay_of_the_truth_history(built: Built) -> None:
    """Each past week's open pipeline by stage = the truth history replayed at the week's end (the latest
    change before it, the opportunity's own amount for its latest state)."""
    company = built.company
    opps = company.live("opportunities").set_index("opportunity_id")
    history = company.tables["opportunity_history"]
    history = history[history["opportunity_id"].isin(opps.index)].sort_values("changed_at")
    last = history.groupby("opportunity_id")["history_id"].transform("last") == history["history_id"]
    p = built.marts["pipeline"]
    weeks = sorted(pd.to_datetime(p["week"]).unique())
    for week in weeks[:: max(1, len(weeks) // 12)]:
        end = min(pd.Timestamp(week).tz_localize("UTC") + pd.Timedelta(days=7), built.as_of)
        state = history[history["changed_at"] <= end].groupby("opportunity_id").tail(1)
        state = state[~state["stage"].isin(["Closed Won", "Closed Lost"])]
        is_last = last.loc[state.index]
        amount = np.where(is_last, state["opportunity_id"].map(opps["amount"]), state["amount"])
        truth = pd.Series(amount, index=state["stage"].to_numpy()).groupby(level=0).sum().sort_index()
        got = p[pd.to_datetime(p["week"]) == week].groupby("stage")["amount"].sum().sort_index()
        pd.testing.assert_series_equal(got, truth, check_names=False, check_index_type=False)


def test_planted_pipeline_drop_shows_in_created_pipeline(built: Built) -> None:
    anomaly = built.company.tables["anomalies"]
    drop = anomaly[anomaly["kind"] == "pipeline_drop"].iloc[0]
    o = built.marts["opportunities"]
    nb = o[o["type"] == "new_business"]
    weekly = nb.groupby(pd.to_datetime(nb["created_week"]))["initial_amount"].sum()
    week = pd.Timestamp(drop["starts_at"]).tz_convert(None).normalize()
    before = weekly.reindex(pd.date_range(week - pd.Timedelta(days=28), periods=4, freq="7D"), fill_value=0.0)
    assert weekly.get(week, 0.0) < 0.8 * before.mean()


def test_stage_conversion_counts_every_stage_entry(built: Built) -> None:
    sc = built.marts["stage_conversion"]
    history = built.core["opportunity_stage_history"]
    assert len(sc) == history["is_stage_change"].sum()
    entered = sc.groupby("stage").size()
    won = built.core["opportunities"]["is_won"].astype(bool).sum()
    assert entered["Closed Won"] == won and entered["Prospecting"] == len(built.core["opportunities"])
    prospecting = sc[sc["stage"] == "Prospecting"]
    assert set(prospecting["outcome"]) <= {"advanced", "lost", "open", "won"}
    assert (prospecting["advanced"] == prospecting["next_stage"].eq("Qualification")).all()
    assert (sc.loc[sc["outcome"] != "won", "days_in_stage"].dropna() >= 0).all()


def test_sales_effectiveness_counts_calls_per_opportunity(built: Built) -> None:
    se = built.marts["sales_effectiveness"].merge(built.core["opportunities"][["opportunity_key", "salesforce_id"]],
                                                  on="opportunity_key").set_index("salesforce_id")
    truth_calls = built.company.live("calls")
    opp_sf = built.company.tables["opportunities"].set_index("opportunity_id")["system_id"]
    per_opp = truth_calls["opportunity_id"].map(opp_sf).value_counts()
    assert (se["calls"] == per_opp.reindex(se.index).fillna(0).astype(int)).all()
    high = truth_calls[truth_calls["analysis_ready_at"] <= built.company.now]
    high = high[high["interactivity"] >= 6]["opportunity_id"].map(opp_sf).value_counts()
    assert (se["high_interactivity_calls"] == high.reindex(se.index).fillna(0).astype(int)).all()
    closed = se[se["outcome"] != "open"]
    won_rate = closed.groupby(closed["high_interactivity_calls"] >= 2)["outcome"].apply(lambda s: (s == "won").mean())
    assert won_rate[True] > won_rate[False]  # the planted driver: interactive calls win deals


def test_rep_performance_adds_up_to_the_facts(built: Built) -> None:
    rp = built.marts["rep_performance"]
    assert rp["won_amount"].sum() == pytest.approx(built.marts["bookings"]["amount"].sum())
    assert rp["calls"].sum() == built.core["calls"]["owner_employee_key"].notna().sum()
    assert rp["activities"].sum() == len(built.core["activities"])
    assert rp["pipeline_created"].sum() == pytest.approx(built.core["opportunities"]["amount"].sum())
    decided = rp[(rp["deals_won"] + rp["deals_lost"]) > 0]
    assert decided["win_rate"].between(0, 1).all()


def test_attribution_credits_add_up_to_the_whole_pipeline(built: Built) -> None:
    a = built.marts["marketing_attribution"]
    opps = built.core["opportunities"]
    nb = opps[opps["type"] == "new_business"]
    for model in ("first_touch", "last_touch", "linear"):
        m = a[a["model"] == model]
        assert m.groupby("opportunity_key")["credit"].sum().round(9).eq(1).all()
        assert m["opportunity_key"].nunique() == len(nb)
        assert m["attributed_pipeline"].sum() == pytest.approx(nb["amount"].sum())
        won = nb["is_won"].astype(bool)
        assert m["attributed_bookings"].sum() == pytest.approx(nb.loc[won, "amount"].sum())
    touched = a[(a["model"] == "first_touch") & a["touch_at"].notna()]
    assert (pd.to_datetime(touched["touch_at"]) <= pd.to_datetime(touched["created_at"])).all()


def test_first_touch_channel_follows_the_lead_source(built: Built) -> None:
    """The sandbox plants each account's first touch on the channel of its lead source."""
    o = built.marts["opportunities"]
    nb = o[(o["type"] == "new_business") & o["first_touch_channel"].notna()]
    expected = {"Inbound": "organic", "Outbound": "email", "Partner": "referral", "Event": "event",
                "Paid Search": "paid_search"}
    assert (nb["first_touch_channel"] == nb["lead_source"].map(expected)).mean() >= 0.97
    lq = built.marts["lead_quality"]
    assert lq["opportunities"].sum() == len(o)
    assert lq["win_rate"].dropna().between(0, 1).all()


def test_customer_journey_against_the_truth(built: Built) -> None:
    j = built.marts["customer_journey"]
    company = built.company
    sf_account = presence_map(company, "account", "salesforce")
    j = j.merge(built.core["accounts"][["account_key", "salesforce_id"]], on="account_key")
    j = j[j["salesforce_id"].notna()].assign(account_id=lambda f: f["salesforce_id"].map(sf_account))
    truth = company.live("accounts").set_index("account_id")
    first_touch = pd.to_datetime(j["first_touch_at"], utc=True)
    assert (first_touch == j["account_id"].map(truth["first_touch_at"])).mean() >= 0.97
    invoices = company.live("invoices")
    first_invoice = invoices.groupby("account_id")["issued_on"].min()
    got = pd.to_datetime(j["first_invoice_at"], utc=True).dt.tz_localize(None).dt.normalize()
    want = j["account_id"].map(first_invoice)
    assert (got.fillna(pd.Timestamp(0)) == pd.to_datetime(want).fillna(pd.Timestamp(0))).mean() >= 0.97
    conversations = company.live("conversations").groupby("account_id")["created_at"].min()
    got_c = pd.to_datetime(j["first_conversation_at"], utc=True)
    assert (got_c.fillna(pd.Timestamp(0, tz="UTC")) == j["account_id"].map(conversations)
            .fillna(pd.Timestamp(0, tz="UTC"))).mean() >= 0.97
    ordered = j.dropna(subset=["days_touch_to_opportunity"])
    assert (ordered["days_touch_to_opportunity"] >= 0).mean() >= 0.97


def test_cac_spend_is_the_sales_and_marketing_budget(built: Built) -> None:
    cac = built.marts["cac"].set_index("month")
    budgets = built.company.live("budgets")
    budgets = budgets[budgets["created_at"] <= built.company.now]
    s_m = budgets[budgets["department"].isin(SALES_MARKETING)]
    truth = s_m.groupby(pd.to_datetime(s_m["month"]).dt.to_period("M").dt.start_time)["amount"].sum()
    truth = truth[truth.index <= built.as_of.tz_localize(None)]
    got = cac["sales_marketing_spend"].dropna()
    pd.testing.assert_series_equal(got.sort_index(), truth.sort_index(), check_names=False, check_index_type=False,
                                   check_freq=False)
    with_customers = cac[(cac["new_customers"] > 0) & cac["sales_marketing_spend"].notna()]
    assert len(with_customers) > 3
    expected = with_customers["sales_marketing_spend"] / with_customers["new_customers"]
    assert np.allclose(with_customers["cac"], expected)
    assert (cac["spend_source"] == "netsuite budget (plan)").all()


def test_cac_without_netsuite_lookups_says_why_spend_is_missing(built_without_lookups: Built) -> None:
    cac = built_without_lookups.marts["cac"]
    assert len(cac) and cac["sales_marketing_spend"].isna().all() and cac["cac"].isna().all()
    assert cac["spend_source"].str.contains("department/accountingperiod lookups are not synced").all()
    assert cac["new_customers"].sum() > 0


class NoRawBuilder(SnapshotBuilder):
    """A snapshot build over a raw store with no tables at all (a company with none of these sources)."""

    snapshot_id = "empty"

    def __init__(self, as_of: datetime) -> None:
        self.as_of = as_of
        self.tables: dict[str, pa.Table] = {}

    def write_table(self, schema: str, table: str, data: Any) -> int:
        self.tables[f"{schema}.{table}"] = data
        return data.num_rows

    def execute(self, sql: str, params: Any = None) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Any = None) -> pa.Table:
        return pa.table({"table_schema": pa.array([], pa.string()), "table_name": pa.array([], pa.string())})


def test_a_company_without_any_sales_source_builds_empty_tables() -> None:
    from sophia_lib.transforms.marts_sales import sales_marts
    from sophia_lib.transforms.sales import sales_core

    ctx = TransformContext(NoRawBuilder(datetime(2026, 1, 5, tzinfo=UTC)), datetime(2026, 1, 5, tzinfo=UTC))
    empty = {
        "accounts": ["account_key", "name", "domain", "industry", "segment", "region", "is_customer", "customer_since",
                     "churned_at", "first_touch_at"],
        "people": ["person_key", "email"], "employees": ["employee_key", "full_name", "team", "region"],
        "account_xref": ["account_key", "system", "system_id"], "person_xref": ["person_key", "system", "system_id"],
        "employee_xref": ["employee_key", "system", "system_id"],
    }
    for name, columns in empty.items():
        ctx.write("core", name, pd.DataFrame({c: pd.Series(dtype="string") for c in columns}))
    sales_core(ctx)
    sales_marts(ctx)
    written = ctx.written()
    for table in ["core.opportunities", "core.activities", "core.calls", "core.touchpoints", *(
            f"marts.{m}" for m in MARTS)]:
        assert written[table] == 0, table
    assert "opportunity_key" in ctx.table("marts.pipeline").columns
