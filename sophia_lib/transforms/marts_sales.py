"""Sales marts: weekly pipeline snapshots, opportunities (created pipeline), bookings, stage conversion,
rep performance and Gong sales effectiveness — tidy facts with date columns and the dimensions the
metric layer and the Sales dashboard slice by (segment, region, owner, type, lead source).

Weeks start on Monday (UTC). A week's pipeline is the state of every open opportunity at the week's end,
or at ``as_of`` for the running week, reconstructed from the stage history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.marts_marketing import first_touches, marketing_marts, marketing_touches
from sophia_lib.transforms.sales_keys import by_id, lookup

HIGH_INTERACTIVITY = 6.0
"""Gong interactivity score from which a call counts as highly interactive (Gong's own guidance: 5–7)."""

DIMENSIONS = ["account_key", "account_name", "segment", "region", "industry", "owner_employee_key", "owner_name",
              "owner_team", "type", "lead_source"]


def sales_marts(ctx: TransformContext) -> None:
    """Write the sales marts, then the marketing ones (which reuse marts.opportunities)."""
    as_of = pd.Timestamp(ctx.as_of).tz_convert("UTC")
    opps = opportunity_facts(ctx)
    history = ctx.table("core.opportunity_stage_history")
    stages = ctx.table("core.opportunity_stages")
    ctx.write("marts", "opportunities", opps)
    ctx.write("marts", "pipeline", weekly_pipeline(opps, history, stages, as_of))
    ctx.write("marts", "bookings", bookings(opps))
    ctx.write("marts", "stage_conversion", stage_conversion(opps, history, stages, as_of))
    calls, activities = ctx.table("core.calls"), ctx.table("core.activities")
    ctx.write("marts", "sales_effectiveness", sales_effectiveness(opps, calls, activities))
    ctx.write("marts", "rep_performance", rep_performance(ctx, opps, calls, activities))
    marketing_marts(ctx, opps)


def opportunity_facts(ctx: TransformContext) -> pd.DataFrame:
    """core.opportunities with the account's and owner's dimensions and the amount at creation."""
    o = ctx.table("core.opportunities")
    accounts = by_id(ctx.table("core.accounts"), "account_key")
    employees = by_id(ctx.table("core.employees"), "employee_key")
    history = ctx.table("core.opportunity_stage_history")
    first = history.sort_values("valid_from").drop_duplicates("opportunity_key").set_index("opportunity_key")
    first_touch = first_touches(marketing_touches(ctx.table("core.touchpoints")))
    created = o["created_at"]
    facts = o.assign(
        account_name=lookup(o["account_key"], accounts["name"]).astype("string"),
        segment=lookup(o["account_key"], accounts["segment"]).astype("string"),
        region=lookup(o["account_key"], accounts["region"]).astype("string"),
        industry=lookup(o["account_key"], accounts["industry"]).astype("string"),
        owner_name=lookup(o["owner_employee_key"], employees["full_name"]).astype("string"),
        owner_team=lookup(o["owner_employee_key"], employees["team"]).astype("string"),
        created_week=week_start(created),
        created_month=_naive(created).dt.to_period("M").dt.start_time,
        first_touch_channel=lookup(o["account_key"], first_touch["channel"]).astype("string"),
        first_touch_campaign=lookup(o["account_key"], first_touch["campaign"]).astype("string"),
        initial_amount=lookup(o["opportunity_key"], first["amount"]).astype("float64").fillna(o["amount"]),
        cycle_days=((o["closed_at"] - created).dt.total_seconds() / 86_400).astype("float64"),
    )
    return facts


def weekly_pipeline(opps: pd.DataFrame, history: pd.DataFrame, stages: pd.DataFrame,
                    as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per (week, opportunity open at the week's end): stage, amount, close date, forecast category.

    The interval an opportunity's current state holds from carries the opportunity's current values (the
    record is authoritative where a history row lags behind an edit); opportunities without history (HubSpot
    only) hold their current state from creation."""
    intervals = _state_intervals(opps, history)
    intervals = intervals[(intervals["stage_type"] == "open") & intervals["valid_from"].notna()]
    if intervals.empty:
        return _empty_pipeline(opps)
    first_week = week_start(intervals["valid_from"]).min()
    weeks = pd.date_range(first_week, week_start(pd.Series([as_of])).iloc[0], freq="7D")
    ends = pd.Series((weeks + pd.Timedelta(days=7)).tz_localize("UTC"))
    snapshot = pd.DatetimeIndex(ends.where(ends < as_of, as_of))
    s = _ns(pd.Series(snapshot))
    vf = _ns(intervals["valid_from"])
    vt = _ns(intervals["valid_to"].fillna(as_of + pd.Timedelta(days=1)))
    start, stop = np.searchsorted(s, vf, side="left"), np.searchsorted(s, vt, side="left")
    counts = np.maximum(stop - start, 0)
    row = np.repeat(np.arange(len(intervals)), counts)
    within = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    snap = np.repeat(start, counts) + within
    p = intervals.iloc[row].reset_index(drop=True)
    p.insert(0, "week", weeks[snap])
    p.insert(1, "snapshot_at", snapshot[snap])
    dims = by_id(opps, "opportunity_key")
    for column in [*DIMENSIONS, "created_at", "forecast_category_now"]:
        source = "forecast_category" if column == "forecast_category_now" else column
        if column not in p.columns:
            p[column] = lookup(p["opportunity_key"], dims[source])
    order = by_id(stages, "stage")["stage_order"]
    p["stage_order"] = lookup(p["stage"], order).astype("Int64")
    p["weighted_amount"] = p["amount"] * p["probability"].fillna(0) / 100
    p["age_days"] = ((p["snapshot_at"] - p["created_at"]).dt.total_seconds() / 86_400).astype("float64")
    p["is_current_week"] = p["snapshot_at"] == as_of
    columns = ["week", "snapshot_at", "is_current_week", "opportunity_key", "stage", "stage_order", "amount",
               "probability", "weighted_amount", "forecast_category", "close_date", "age_days", *DIMENSIONS]
    return p[columns].sort_values(["week", "opportunity_key"], kind="stable").reset_index(drop=True)


def _state_intervals(opps: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    cols = ["opportunity_key", "stage", "stage_type", "amount", "probability", "forecast_category", "close_date",
            "valid_from", "valid_to"]
    h = history[cols + ["is_current"]].copy()
    current = by_id(opps, "opportunity_key")
    last = h["is_current"].fillna(False).astype(bool)
    for column in ("stage", "stage_type", "amount", "probability", "forecast_category", "close_date"):
        now = lookup(h["opportunity_key"], current[column])
        h[column] = now.where(last & now.notna(), h[column])
    bare = opps[~opps["opportunity_key"].isin(h["opportunity_key"])]
    synthetic = bare.assign(valid_from=bare["created_at"],
                            valid_to=bare["closed_at"].fillna(pd.to_datetime(bare["close_date"]).dt.tz_localize("UTC"))
                            .where(bare["is_closed"].fillna(False).astype(bool)))
    frames = [f[cols] for f in (h, synthetic) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else h[cols]


def _empty_pipeline(opps: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in [
        "week", "snapshot_at", "is_current_week", "opportunity_key", "stage", "stage_order", "amount", "probability",
        "weighted_amount", "forecast_category", "close_date", "age_days", *DIMENSIONS]})


def bookings(opps: pd.DataFrame) -> pd.DataFrame:
    """Won opportunities: one row each, dated by close date; ``is_new_logo`` marks an account's first win."""
    won = opps[opps["is_won"].fillna(False).astype(bool)].copy()
    won = won.sort_values(["close_date", "closed_at", "opportunity_key"], kind="stable")
    won["is_new_logo"] = ~won["account_key"].duplicated() & won["account_key"].notna()
    won["close_month"] = won["close_date"].dt.to_period("M").dt.start_time
    won["close_quarter"] = won["close_date"].dt.to_period("Q").dt.start_time
    return won[["opportunity_key", "salesforce_id", "close_date", "close_month", "close_quarter", "closed_at",
                "amount", "is_new_logo", "created_at", "cycle_days", *DIMENSIONS]].reset_index(drop=True)


def stage_conversion(opps: pd.DataFrame, history: pd.DataFrame, stages: pd.DataFrame,
                     as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per stage visit of an opportunity: when it entered and left, where it went next (advanced,
    won, lost, moved back, or still there) and how long it stayed."""
    visits = history[history["is_stage_change"]].sort_values(["opportunity_key", "valid_from"], kind="stable")
    visits = visits[["opportunity_key", "stage", "stage_type", "valid_from"]].reset_index(drop=True)
    same = visits["opportunity_key"].eq(visits["opportunity_key"].shift(-1)).fillna(False).astype(bool)
    visits["exited_at"] = visits["valid_from"].shift(-1).where(same)
    visits["next_stage"] = visits["stage"].shift(-1).where(same).astype("string")
    order = by_id(stages, "stage")
    visits["stage_order"] = lookup(visits["stage"], order["stage_order"]).astype("Int64")
    next_order = lookup(visits["next_stage"], order["stage_order"]).astype("Int64")
    next_type = lookup(visits["next_stage"], order["stage_type"]).astype("string")
    terminal = visits["stage_type"] != "open"
    outcome = np.select(
        [terminal.to_numpy(dtype=bool), ~same.to_numpy(dtype=bool), next_type.eq("won").fillna(False).to_numpy(bool),
         next_type.eq("lost").fillna(False).to_numpy(bool), (next_order > visits["stage_order"]).fillna(False)
         .to_numpy(bool)],
        [visits["stage_type"].to_numpy(dtype=object), "open", "won", "lost", "advanced"], default="moved_back")
    visits["outcome"] = outcome
    visits["advanced"] = np.isin(outcome, ["advanced", "won"])
    end = visits["exited_at"].where(~terminal).fillna(as_of).where(~terminal)
    visits["days_in_stage"] = ((end - visits["valid_from"]).dt.total_seconds() / 86_400).astype("float64")
    visits = visits.rename(columns={"valid_from": "entered_at"})
    visits["entered_week"] = week_start(visits["entered_at"])
    dims = by_id(opps, "opportunity_key")
    for column in [*DIMENSIONS, "is_won", "is_closed"]:
        visits[column] = lookup(visits["opportunity_key"], dims[column])
    return visits[["opportunity_key", "stage", "stage_order", "stage_type", "entered_at", "entered_week", "exited_at",
                   "next_stage", "outcome", "advanced", "days_in_stage", "is_closed", "is_won", *DIMENSIONS]]


def sales_effectiveness(opps: pd.DataFrame, calls: pd.DataFrame, activities: pd.DataFrame) -> pd.DataFrame:
    """Per opportunity: its Gong calls and their talk patterns, its activities, and its outcome."""
    c = calls[calls["opportunity_key"].notna()].copy()
    analysed = c["analysis_ready"].fillna(False).astype(bool)
    for column in ("talk_ratio", "interactivity", "longest_monologue_s", "patience", "questions_asked"):
        c[column] = c[column].astype("float64").where(analysed)
    c["high"] = (c["interactivity"] >= HIGH_INTERACTIVITY).astype("int64")
    c["analysed"] = analysed.astype("int64")
    c["minutes"] = c["duration_s"].astype("float64") / 60
    aggregations = dict(
        calls=("call_key", "count"), analysed_calls=("analysed", "sum"), call_minutes=("minutes", "sum"),
        high_interactivity_calls=("high", "sum"), avg_talk_ratio=("talk_ratio", "mean"),
        avg_interactivity=("interactivity", "mean"), avg_questions_asked=("questions_asked", "mean"),
        avg_longest_monologue_s=("longest_monologue_s", "mean"), max_longest_monologue_s=("longest_monologue_s", "max"),
        avg_patience=("patience", "mean"), first_call_at=("started_at", "min"), last_call_at=("started_at", "max"))
    if c.empty:
        per = pd.DataFrame({name: pd.Series(dtype="float64") for name in aggregations},
                           index=pd.Index([], dtype="string", name="opportunity_key"))
        per[["first_call_at", "last_call_at"]] = per[["first_call_at", "last_call_at"]].astype("datetime64[ns, UTC]")
    else:
        per = c.groupby("opportunity_key").agg(**aggregations)
    acts = activities[activities["opportunity_key"].notna()].groupby("opportunity_key").size()
    out = opps[["opportunity_key", "created_at", "close_date", "closed_at", "is_closed", "is_won", "stage", "amount",
                "cycle_days", *DIMENSIONS]].copy()
    out = out.join(per, on="opportunity_key")
    for column in ("calls", "analysed_calls", "high_interactivity_calls"):
        out[column] = out[column].fillna(0).astype("int64")
    out["call_minutes"] = out["call_minutes"].fillna(0.0)
    out["activities"] = lookup(out["opportunity_key"], acts).fillna(0).astype("int64")
    out["outcome"] = np.where(out["is_won"].fillna(False).astype(bool), "won",
                              np.where(out["is_closed"].fillna(False).astype(bool), "lost", "open"))
    return out.reset_index(drop=True)


def rep_performance(ctx: TransformContext, opps: pd.DataFrame, calls: pd.DataFrame,
                    activities: pd.DataFrame) -> pd.DataFrame:
    """Per owner and calendar month: pipeline created, deals won and lost, win rate, calls and activities."""
    closed = opps[opps["is_closed"].fillna(False).astype(bool)]
    won = closed["is_won"].fillna(False).astype(bool)
    parts = [
        _monthly(opps, "created_at", opportunities_created=("opportunity_key", "count"),
                 pipeline_created=("amount", "sum")),
        _monthly(closed[won], "close_date", deals_won=("opportunity_key", "count"), won_amount=("amount", "sum")),
        _monthly(closed[~won], "close_date", deals_lost=("opportunity_key", "count"), lost_amount=("amount", "sum")),
        _monthly(calls.assign(minutes=calls["duration_s"].astype("float64") / 60), "started_at",
                 calls=("call_key", "count"), call_minutes=("minutes", "sum")),
        _monthly(activities, "occurred_at", activities=("activity_key", "count")),
    ]
    perf = pd.concat(parts, axis=1).fillna(0).reset_index()
    for column in ("opportunities_created", "deals_won", "deals_lost", "calls", "activities"):
        perf[column] = perf[column].astype("int64")
    decided = perf["deals_won"] + perf["deals_lost"]
    perf["win_rate"] = (perf["deals_won"] / decided.where(decided > 0)).astype("float64")
    employees = by_id(ctx.table("core.employees"), "employee_key")
    perf["owner_name"] = lookup(perf["owner_employee_key"], employees["full_name"]).astype("string")
    perf["owner_team"] = lookup(perf["owner_employee_key"], employees["team"]).astype("string")
    perf["owner_region"] = lookup(perf["owner_employee_key"], employees["region"]).astype("string")
    return perf.sort_values(["month", "owner_employee_key"], kind="stable").reset_index(drop=True)


def _monthly(frame: pd.DataFrame, date_column: str, **aggregations: tuple[str, str]) -> pd.DataFrame:
    f = frame[frame["owner_employee_key"].notna() & frame[date_column].notna()]
    month = _naive(f[date_column]).dt.to_period("M").dt.start_time.rename("month")
    return f.groupby([f["owner_employee_key"].rename("owner_employee_key"), month]).agg(**aggregations)


# --- time helpers --------------------------------------------------------------------------------------
def week_start(stamps: pd.Series) -> pd.Series:
    """The Monday (00:00, no zone) of each timestamp's UTC week."""
    day = _naive(stamps).dt.normalize()
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def _naive(stamps: pd.Series) -> pd.Series:
    s = pd.to_datetime(stamps)
    return s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s


def _ns(stamps: pd.Series) -> np.ndarray:
    return pd.to_datetime(stamps, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
