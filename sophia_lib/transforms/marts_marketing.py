"""Marketing marts: the customer journey (first touch → opportunity → win → invoice → support), touch
attribution of new-business pipeline and bookings, lead quality, and CAC with its spend.

Only marketing touches count for attribution and first touch: Factors also reports product sessions of
customers (the app host), which are usage, not marketing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.sales_keys import by_id, lookup

MODELS = ("first_touch", "last_touch", "linear")
SALES_AND_MARKETING = ("sales", "marketing")
NO_TOUCH = "(none)"


def marketing_marts(ctx: TransformContext, opps: pd.DataFrame) -> None:
    touches = marketing_touches(ctx.table("core.touchpoints"))
    ctx.write("marts", "customer_journey", customer_journey(ctx, opps, touches))
    ctx.write("marts", "marketing_attribution", attribution(opps, touches))
    ctx.write("marts", "lead_quality", lead_quality(opps))
    ctx.write("marts", "cac", cac(ctx, opps))


def marketing_touches(touchpoints: pd.DataFrame) -> pd.DataFrame:
    t = touchpoints[(touchpoints["kind"] == "marketing") & touchpoints["account_key"].notna()]
    return t.sort_values(["occurred_at", "touchpoint_key"], kind="stable")


def first_touches(touches: pd.DataFrame) -> pd.DataFrame:
    """Each account's first marketing touch (indexed by account_key)."""
    return touches.drop_duplicates("account_key").set_index("account_key")


# --- journey -------------------------------------------------------------------------------------------
def customer_journey(ctx: TransformContext, opps: pd.DataFrame, touches: pd.DataFrame) -> pd.DataFrame:
    """One row per account: when it first reached each step of the journey and how long each step took."""
    accounts = ctx.table("core.accounts")
    j = accounts[["account_key", "name", "segment", "region", "industry", "is_customer", "customer_since",
                  "churned_at"]].rename(columns={"name": "account_name"}).copy()
    first = first_touches(touches)
    crm_first = pd.to_datetime(accounts["first_touch_at"], utc=True)
    j["first_touch_at"] = lookup(j["account_key"], first["occurred_at"])
    j["first_touch_source"] = np.where(j["first_touch_at"].notna(), "factors",
                                       np.where(crm_first.notna(), "crm", None))
    j["first_touch_at"] = j["first_touch_at"].fillna(crm_first)
    j["first_touch_channel"] = lookup(j["account_key"], first["channel"]).astype("string")
    j["first_touch_campaign"] = lookup(j["account_key"], first["campaign"]).astype("string")
    j["marketing_touches"] = lookup(j["account_key"], touches.groupby("account_key").size()).fillna(0).astype("int64")
    by_created = opps[opps["account_key"].notna()].sort_values("created_at").drop_duplicates("account_key")
    j["first_opportunity_key"] = lookup(j["account_key"], by_created.set_index("account_key")["opportunity_key"])
    j["first_opportunity_at"] = lookup(j["account_key"], by_created.set_index("account_key")["created_at"])
    j["first_lead_source"] = lookup(j["account_key"], by_created.set_index("account_key")["lead_source"])
    won = opps[opps["is_won"].fillna(False).astype(bool) & opps["account_key"].notna()]
    won = won.assign(won_at=won["closed_at"].fillna(pd.to_datetime(won["close_date"]).dt.tz_localize("UTC")))
    won = won.sort_values("won_at").drop_duplicates("account_key").set_index("account_key")
    j["first_win_at"] = lookup(j["account_key"], won["won_at"])
    j["first_win_amount"] = lookup(j["account_key"], won["amount"]).astype("float64")
    j["first_invoice_at"] = lookup(j["account_key"], _first_invoices(ctx, opps))
    j["first_conversation_at"] = lookup(j["account_key"], _first_conversations(ctx))
    for name, start, end in (("touch_to_opportunity", "first_touch_at", "first_opportunity_at"),
                             ("opportunity_to_win", "first_opportunity_at", "first_win_at"),
                             ("touch_to_win", "first_touch_at", "first_win_at"),
                             ("win_to_invoice", "first_win_at", "first_invoice_at"),
                             ("win_to_first_conversation", "first_win_at", "first_conversation_at")):
        days = (pd.to_datetime(j[end], utc=True) - pd.to_datetime(j[start], utc=True)).dt.total_seconds() / 86_400
        j[f"days_{name}"] = days.astype("float64")
    steps = ["first_touch_at", "first_opportunity_at", "first_win_at", "first_invoice_at"]
    reached = np.select([j[s].notna().to_numpy(dtype=bool) for s in reversed(steps)],
                        ["invoiced", "won", "opportunity", "touched"], default="unknown")
    j["journey_stage"] = reached
    return j.reset_index(drop=True)


def _first_invoices(ctx: TransformContext, opps: pd.DataFrame) -> pd.Series:
    """First invoice date per account: core.invoices when the finance step built it, else NetSuite's raw
    invoices (customer → account, or the invoice's Salesforce opportunity → its account)."""
    invoices = _optional(ctx, "core.invoices")
    if invoices is not None and "account_key" in invoices.columns:
        column = next((c for c in ("issued_on", "invoice_date", "issued_at", "trandate") if c in invoices.columns),
                      None)
        if column is not None:
            return _earliest(invoices["account_key"], invoices[column])
    raw = ctx.raw("netsuite", "transaction", ["entity", "trandate", "custbody_sf_opportunity"])
    xref = _optional(ctx, "core.account_xref")
    key = pd.Series(pd.NA, index=raw.index, dtype="string")
    if xref is not None:
        ns = xref[xref["system"] == "netsuite"].drop_duplicates("system_id").set_index("system_id")["account_key"]
        key = raw["entity"].astype("string").map(ns).astype("string")
    via_opp = raw["custbody_sf_opportunity"].astype("string").map(
        by_id(opps[opps["salesforce_id"].notna()], "salesforce_id")["account_key"]).astype("string")
    return _earliest(key.fillna(via_opp), raw["trandate"])


def _first_conversations(ctx: TransformContext) -> pd.Series:
    """First Intercom conversation per account (core.conversations when built, else raw Intercom)."""
    conversations = _optional(ctx, "core.conversations")
    if conversations is not None and {"account_key", "created_at"} <= set(conversations.columns):
        return _earliest(conversations["account_key"], conversations["created_at"])
    raw = ctx.raw("intercom", "conversations", ["company_id", "created_at"])
    xref = _optional(ctx, "core.account_xref")
    if xref is None:
        return pd.Series(dtype="datetime64[ns, UTC]")
    ic = xref[xref["system"] == "intercom"].drop_duplicates("system_id").set_index("system_id")["account_key"]
    return _earliest(raw["company_id"].astype("string").map(ic), raw["created_at"])


def _earliest(keys: pd.Series, stamps: pd.Series) -> pd.Series:
    frame = pd.DataFrame({"k": keys.astype("string"), "t": pd.to_datetime(stamps, utc=True, errors="coerce")})
    return frame.dropna().groupby("k")["t"].min()


def _optional(ctx: TransformContext, name: str) -> pd.DataFrame | None:
    try:
        return ctx.table(name)
    except KeyError:
        return None


# --- attribution ---------------------------------------------------------------------------------------
def attribution(opps: pd.DataFrame, touches: pd.DataFrame) -> pd.DataFrame:
    """Touch credit for each new-business opportunity, under three models: first touch, last touch and
    linear (equal shares), over the account's marketing touches up to the opportunity's creation. An
    opportunity without a prior touch gets one ``(none)`` row per model, so every model's credits add up
    to the whole pipeline and bookings."""
    nb = opps[(opps["type"] == "new_business")]
    base = nb[["opportunity_key", "account_key", "created_at", "amount", "is_won", "is_closed", "close_date",
               "segment", "region", "owner_employee_key", "lead_source"]]
    t = touches[["account_key", "touchpoint_key", "occurred_at", "channel", "campaign"]]
    pairs = base[base["account_key"].notna()].merge(t, on="account_key", how="inner")
    pairs = pairs[pairs["occurred_at"] <= pairs["created_at"]]
    pairs = pairs.sort_values(["opportunity_key", "occurred_at", "touchpoint_key"], kind="stable")
    grouped = pairs.groupby("opportunity_key")
    n = grouped["touchpoint_key"].transform("size")
    rank = grouped.cumcount()
    frames = [
        pairs[rank == 0].assign(model="first_touch", credit=1.0),
        pairs[rank == n - 1].assign(model="last_touch", credit=1.0),
        pairs.assign(model="linear", credit=1.0 / n),
    ]
    untouched = base[~base["opportunity_key"].isin(pairs["opportunity_key"])]
    for model in MODELS:
        frames.append(untouched.assign(model=model, credit=1.0, touchpoint_key=pd.NA, occurred_at=pd.NaT,
                                       channel=NO_TOUCH, campaign=pd.NA))
    a = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    won = a["is_won"].fillna(False).astype(bool)
    a["attributed_pipeline"] = a["credit"] * a["amount"].fillna(0)
    a["attributed_bookings"] = np.where(won, a["attributed_pipeline"], 0.0)
    a["attributed_wins"] = np.where(won, a["credit"], 0.0)
    a["created_month"] = pd.to_datetime(a["created_at"], utc=True).dt.tz_localize(None).dt.to_period("M").dt.start_time
    a = a.rename(columns={"occurred_at": "touch_at"})
    return a[["model", "opportunity_key", "account_key", "touchpoint_key", "touch_at", "channel", "campaign", "credit",
              "attributed_pipeline", "attributed_bookings", "attributed_wins", "created_at", "created_month",
              "close_date", "is_closed", "is_won", "amount", "segment", "region", "owner_employee_key",
              "lead_source"]].sort_values(["model", "opportunity_key", "touch_at"], kind="stable").reset_index(
        drop=True)


def lead_quality(opps: pd.DataFrame) -> pd.DataFrame:
    """Per lead source and first-touch channel: opportunities, wins, win rate, pipeline, bookings, cycle."""
    o = opps.assign(first_touch_channel=opps["first_touch_channel"].fillna(NO_TOUCH),
                    lead_source=opps["lead_source"].fillna("(unknown)"))
    closed = o["is_closed"].fillna(False).astype(bool)
    won = o["is_won"].fillna(False).astype(bool)
    o = o.assign(closed=closed.astype("int64"), won=won.astype("int64"),
                 booked=np.where(won, o["amount"].fillna(0), 0.0), won_cycle=o["cycle_days"].where(won))
    q = o.groupby(["lead_source", "first_touch_channel", "type"], as_index=False).agg(
        opportunities=("opportunity_key", "count"), closed=("closed", "sum"), won=("won", "sum"),
        pipeline=("amount", "sum"), bookings=("booked", "sum"), avg_won_cycle_days=("won_cycle", "mean"))
    q["win_rate"] = (q["won"] / q["closed"].where(q["closed"] > 0)).astype("float64")
    return q


# --- CAC -----------------------------------------------------------------------------------------------
def cac(ctx: TransformContext, opps: pd.DataFrame) -> pd.DataFrame:
    """Per month: sales and marketing spend, new customers, CAC = spend / new customers, and new-business
    bookings against marketing spend.

    Spend is NetSuite's budget for the Sales and Marketing departments (the plan: actual expenses are not
    synced); naming departments and months needs NetSuite's ``department`` and ``accountingperiod`` lookups
    in the raw store. Without them spend stays null and ``spend_source`` says why."""
    spend, source = _sales_marketing_spend(ctx)
    accounts = ctx.table("core.accounts")
    since = pd.to_datetime(accounts["customer_since"], utc=True, errors="coerce")
    new_customers = _by_month(since.dropna()).rename("new_customers")
    wins = opps[opps["is_won"].fillna(False).astype(bool)]
    nb = wins[wins["type"] == "new_business"]
    nb_bookings = nb.groupby(nb["close_date"].dt.to_period("M").dt.start_time.rename("month"))["amount"].sum()
    frame = pd.concat([spend, new_customers, nb_bookings.rename("new_business_bookings")], axis=1)
    frame.index.name = "month"
    frame = frame.reset_index().sort_values("month").reset_index(drop=True)
    frame["month"] = pd.to_datetime(frame["month"])
    frame["new_customers"] = frame["new_customers"].fillna(0).astype("int64")
    frame["new_business_bookings"] = frame["new_business_bookings"].fillna(0.0)
    for column in ("sales_spend", "marketing_spend"):
        if column not in frame:
            frame[column] = np.nan
    frame["sales_marketing_spend"] = frame["sales_spend"] + frame["marketing_spend"]
    frame["cac"] = frame["sales_marketing_spend"] / frame["new_customers"].where(frame["new_customers"] > 0)
    frame["marketing_roi"] = (frame["new_business_bookings"] - frame["marketing_spend"]) / frame["marketing_spend"]
    frame["quarter"] = frame["month"].dt.to_period("Q").dt.start_time
    frame["spend_source"] = source
    as_of = pd.Timestamp(ctx.as_of).tz_convert("UTC").tz_localize(None)
    frame = frame[frame["month"] <= as_of]
    return frame[["month", "quarter", "sales_spend", "marketing_spend", "sales_marketing_spend", "new_customers",
                  "cac", "new_business_bookings", "marketing_roi", "spend_source"]].reset_index(drop=True)


def _sales_marketing_spend(ctx: TransformContext) -> tuple[pd.DataFrame, str]:
    budget = ctx.raw("netsuite", "budget", ["department", "period", "amount"])
    departments = ctx.raw("netsuite", "department", ["id", "name"])
    periods = ctx.raw("netsuite", "accountingperiod", ["id", "startdate"])
    empty = pd.DataFrame({"sales_spend": pd.Series(dtype="float64"), "marketing_spend": pd.Series(dtype="float64")})
    if budget.empty:
        return empty, "unavailable: no NetSuite budget synced"
    if departments.empty or periods.empty:
        return empty, "unavailable: NetSuite department/accountingperiod lookups are not synced"
    name = budget["department"].astype("string").map(by_id(departments.astype({"id": "string"}), "id")["name"])
    start = budget["period"].astype("string").map(by_id(periods.astype({"id": "string"}), "id")["startdate"])
    b = pd.DataFrame({"department": name.astype("string").str.strip().str.lower(),
                      "month": pd.to_datetime(start, errors="coerce").dt.to_period("M").dt.start_time,
                      "amount": budget["amount"].astype("float64")})
    b = b[b["department"].isin(SALES_AND_MARKETING) & b["month"].notna()]
    wide = b.pivot_table(index="month", columns="department", values="amount", aggfunc="sum")
    wide = wide.reindex(columns=list(SALES_AND_MARKETING)).fillna(0.0)
    return wide.rename(columns={d: f"{d}_spend" for d in SALES_AND_MARKETING}), "netsuite budget (plan)"


def _by_month(stamps: pd.Series) -> pd.Series:
    month = stamps.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.start_time
    return month.value_counts().sort_index()
