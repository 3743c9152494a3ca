"""Core sales and marketing tables: opportunities with their stage history, activities, Gong calls and
marketing touchpoints, each row keyed and mapped to accounts, people and employees through the entity
step's ``*_xref`` tables, and keeping the source ids it came from.

Salesforce is the system of record for opportunities: a HubSpot deal synced to Salesforce
(``hs_salesforceopportunityid``) only lends its id, and a deal without that link becomes an
opportunity of its own (``system = 'hubspot'``). Gong's CRM context names the Salesforce account
and opportunity of each call; Factors names the visitor's account domain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.sales_engagement import activities, calls, touchpoints
from sophia_lib.transforms.sales_keys import Xrefs, by_id, day, keyed, lookup, slug, utc

OPPORTUNITY_COLUMNS = [
    "id", "account_id", "name", "type", "amount", "stage_name", "probability", "expected_revenue", "close_date",
    "is_closed", "is_won", "lead_source", "forecast_category_name", "fiscal_year", "fiscal_quarter", "owner_id",
    "created_date", "last_modified_date",
]
FORECAST_NAMES = {"BestCase": "Best Case", "Forecast": "Commit"}
"""OpportunityHistory keeps ForecastCategory's API values; Opportunity.ForecastCategoryName (what core
uses) has the labels, which differ for these two."""
HISTORY_COLUMNS = ["id", "opportunity_id", "stage_name", "amount", "close_date", "probability", "forecast_category",
                   "created_by_id", "created_date"]
DEAL_COLUMNS = ["id", "amount", "closedate", "createdate", "dealname", "dealstage", "dealtype",
                "hs_deal_stage_probability", "hs_is_closed", "hs_is_closed_won", "hs_lastmodifieddate",
                "hs_salesforceopportunityid", "hubspot_owner_id", "pipeline"]
FORECAST_OF_STAGE_TYPE = {"won": "Closed", "lost": "Omitted"}


def sales_core(ctx: TransformContext) -> None:
    """Write core.opportunities, core.opportunity_stage_history, core.opportunity_stages, core.activities,
    core.calls and core.touchpoints."""
    xrefs = Xrefs.from_context(ctx)
    opportunities, history = _opportunities(ctx, xrefs)
    ctx.write("core", "opportunities", opportunities)
    ctx.write("core", "opportunity_stage_history", history)
    ctx.write("core", "opportunity_stages", opportunity_stages(opportunities, history))
    ctx.write("core", "activities", activities(ctx, xrefs, opportunities))
    ctx.write("core", "calls", calls(ctx, xrefs, opportunities))
    ctx.write("core", "touchpoints", touchpoints(ctx, xrefs))


# --- opportunities -------------------------------------------------------------------------------------
def _opportunities(ctx: TransformContext, xrefs: Xrefs) -> tuple[pd.DataFrame, pd.DataFrame]:
    sf = ctx.raw("salesforce", "opportunity", OPPORTUNITY_COLUMNS)
    deals = ctx.raw("hubspot", "deals", DEAL_COLUMNS)
    linked = deals[deals["hs_salesforceopportunityid"].notna()].drop_duplicates("hs_salesforceopportunityid")
    hubspot_of_sf = by_id(linked, "hs_salesforceopportunityid")["id"]
    has_deal = sf["id"].isin(hubspot_of_sf.index)
    opps = pd.DataFrame({
        "opportunity_key": keyed("opp_sf_", sf["id"]),
        "system": "salesforce",
        "salesforce_id": sf["id"].astype("string"),
        "hubspot_id": sf["id"].map(hubspot_of_sf).astype("string"),
        "account_key": xrefs.account(sf["account_id"], "salesforce"),
        "account_salesforce_id": sf["account_id"].astype("string"),
        "owner_employee_key": xrefs.employee(sf["owner_id"], "salesforce"),
        "owner_salesforce_id": sf["owner_id"].astype("string"),
        "name": sf["name"].astype("string"),
        "type": slug(sf["type"]),
        "amount": sf["amount"].astype("float64"),
        "stage": sf["stage_name"].astype("string"),
        "probability": sf["probability"].astype("float64"),
        "expected_revenue": sf["expected_revenue"].astype("float64"),
        "forecast_category": sf["forecast_category_name"].astype("string"),
        "is_closed": sf["is_closed"].astype("boolean"),
        "is_won": sf["is_won"].astype("boolean"),
        "created_at": utc(sf["created_date"]),
        "close_date": day(sf["close_date"]),
        "lead_source": sf["lead_source"].astype("string"),
        "fiscal_year": sf["fiscal_year"].astype("Int64"),
        "fiscal_quarter": sf["fiscal_quarter"].astype("Int64"),
        "updated_at": utc(sf["last_modified_date"]),
        "source_systems": np.where(has_deal.to_numpy(dtype=bool), "salesforce,hubspot", "salesforce"),
    })
    unlinked = deals[deals["hs_salesforceopportunityid"].isna()]
    opps = pd.concat([opps, _hubspot_only(ctx, xrefs, unlinked)], ignore_index=True)
    history = _stage_history(ctx, xrefs, opps)
    closed = history[history["stage_type"] != "open"].sort_values("valid_from")
    first_closed = closed.drop_duplicates("opportunity_key").set_index("opportunity_key")["valid_from"]
    closed_at = utc(lookup(opps["opportunity_key"], first_closed))
    opps["closed_at"] = closed_at.where(opps["is_closed"].fillna(False).astype(bool))
    opps["stage_type"] = _stage_type(opps["is_closed"], opps["is_won"])
    return opps.sort_values("created_at", kind="stable").reset_index(drop=True), history


def _hubspot_only(ctx: TransformContext, xrefs: Xrefs, deals: pd.DataFrame) -> pd.DataFrame:
    """HubSpot deals that never reached Salesforce, as opportunities (stage labels from the deal pipelines)."""
    stages = ctx.raw("hubspot", "pipelines", ["pipeline_id", "stage_id", "stage_label"])
    label = by_id(stages.assign(k=stages["pipeline_id"].astype("string") + "/" + stages["stage_id"].astype("string")),
                  "k")["stage_label"]
    stage = (deals["pipeline"].astype("string") + "/" + deals["dealstage"].astype("string")).map(label)
    closed, won = deals["hs_is_closed"].astype("boolean"), deals["hs_is_closed_won"].astype("boolean")
    probability = deals["hs_deal_stage_probability"].astype("float64") * 100
    amount = deals["amount"].astype("float64")
    close = day(deals["closedate"])
    return pd.DataFrame({
        "opportunity_key": keyed("opp_hs_", deals["id"]),
        "system": "hubspot",
        "salesforce_id": pd.Series(pd.NA, index=deals.index, dtype="string"),
        "hubspot_id": deals["id"].astype("string"),
        "account_key": pd.Series(pd.NA, index=deals.index, dtype="string"),  # the deals stream has no company
        "account_salesforce_id": pd.Series(pd.NA, index=deals.index, dtype="string"),
        "owner_employee_key": xrefs.employee(deals["hubspot_owner_id"], "hubspot"),
        "owner_salesforce_id": pd.Series(pd.NA, index=deals.index, dtype="string"),
        "name": deals["dealname"].astype("string"),
        "type": slug(deals["dealtype"].replace({"newbusiness": "new_business", "existingbusiness": "expansion"})),
        "amount": amount,
        "stage": stage.fillna(deals["dealstage"]).astype("string"),
        "probability": probability,
        "expected_revenue": amount * probability / 100,
        "forecast_category": _stage_type(closed, won).map(FORECAST_OF_STAGE_TYPE).fillna("Pipeline").astype("string"),
        "is_closed": closed,
        "is_won": won,
        "created_at": utc(deals["createdate"]),
        "close_date": close,
        "lead_source": pd.Series(pd.NA, index=deals.index, dtype="string"),
        "fiscal_year": close.dt.year.astype("Int64"),
        "fiscal_quarter": close.dt.quarter.astype("Int64"),
        "updated_at": utc(deals["hs_lastmodifieddate"]),
        "source_systems": "hubspot",
    })


def _stage_history(ctx: TransformContext, xrefs: Xrefs, opps: pd.DataFrame) -> pd.DataFrame:
    """OpportunityHistory as validity intervals: each row holds from its change until the next one."""
    raw = ctx.raw("salesforce", "opportunity_history", HISTORY_COLUMNS)
    key_of_sf = by_id(opps[opps["salesforce_id"].notna()], "salesforce_id")["opportunity_key"]
    h = pd.DataFrame({
        "history_key": keyed("oph_sf_", raw["id"]),
        "salesforce_id": raw["id"].astype("string"),
        "opportunity_key": raw["opportunity_id"].map(key_of_sf).astype("string"),
        "opportunity_salesforce_id": raw["opportunity_id"].astype("string"),
        "stage": raw["stage_name"].astype("string"),
        "amount": raw["amount"].astype("float64"),
        "close_date": day(raw["close_date"]),
        "probability": raw["probability"].astype("float64"),
        "forecast_category": raw["forecast_category"].astype("string").replace(FORECAST_NAMES),
        "changed_by_employee_key": xrefs.employee(raw["created_by_id"], "salesforce"),
        "valid_from": utc(raw["created_date"]),
    })
    h = h[h["opportunity_key"].notna()]  # history of a deleted opportunity goes with it
    h = h.sort_values(["opportunity_key", "valid_from", "salesforce_id"], kind="stable").reset_index(drop=True)
    same_opp = h["opportunity_key"].eq(h["opportunity_key"].shift(-1)).fillna(False).astype(bool)
    h["valid_to"] = h["valid_from"].shift(-1).where(same_opp)
    h["is_current"] = ~same_opp
    h["sequence"] = h.groupby("opportunity_key").cumcount().astype("int64")
    previous = h["stage"].shift(1).where(h["sequence"] > 0)
    h["is_stage_change"] = (previous.isna() | previous.ne(h["stage"]).fillna(True)).astype(bool)
    won_stages, lost_stages = _closed_stage_names(opps)
    h["stage_type"] = np.where(h["stage"].isin(won_stages), "won",
                               np.where(h["stage"].isin(lost_stages), "lost", "open"))
    return h


def _closed_stage_names(opps: pd.DataFrame) -> tuple[set[str], set[str]]:
    """Stage names that close an opportunity as won and as lost, from the opportunities' own flags."""
    closed = opps[opps["is_closed"].fillna(False).astype(bool)]
    won = set(closed.loc[closed["is_won"].fillna(False).astype(bool), "stage"].dropna())
    lost = set(closed.loc[~closed["is_won"].fillna(False).astype(bool), "stage"].dropna()) - won
    return won, lost


def opportunity_stages(opps: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per stage name: its funnel order (open stages by their usual probability, then won, then
    lost), typical probability and whether it closes the opportunity."""
    seen = pd.concat([history[["stage", "probability", "stage_type"]],
                      opps[["stage", "probability", "stage_type"]]], ignore_index=True).dropna(subset=["stage"])
    stages = seen.groupby("stage", as_index=False).agg(probability=("probability", "median"),
                                                       stage_type=("stage_type", "first"))
    rank = stages["stage_type"].map({"open": 0, "won": 1, "lost": 2}).fillna(0)
    stages = stages.assign(_rank=rank).sort_values(["_rank", "probability", "stage"]).reset_index(drop=True)
    stages["stage_order"] = np.arange(1, len(stages) + 1, dtype="int64")
    stages["is_closed"] = stages["stage_type"] != "open"
    stages["is_won"] = stages["stage_type"] == "won"
    return stages[["stage", "stage_order", "stage_type", "probability", "is_closed", "is_won"]]


def _stage_type(is_closed: pd.Series, is_won: pd.Series) -> pd.Series:
    closed, won = is_closed.fillna(False).astype(bool), is_won.fillna(False).astype(bool)
    return pd.Series(np.where(closed & won, "won", np.where(closed, "lost", "open")), index=is_closed.index,
                     dtype="string")
