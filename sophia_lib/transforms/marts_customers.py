"""Customer marts: retention cohorts, support load and CSAT, and the customer health score.

The health score (0–100) is a weighted sum of six component scores, each 0–100, computed for every customer
at a point in time ``t`` from what was known by then:

=================  ======  ========================================================================
component          weight  from
=================  ======  ========================================================================
usage              0.30    Factors product sessions (page views) in the 30 days before ``t`` against the
                           account's own monthly average over the 90 days before that
revenue            0.20    NetSuite ARR at ``t`` against ARR 90 days earlier (0 once ARR is gone)
support_load       0.15    Intercom conversations in the last 30 days against the account's monthly
                           average over the 150 days before, minus priority conversations
csat               0.15    average Intercom CSAT over the last 90 days ((avg − 1) / 4)
recency            0.10    days since the last touch of any kind (product, support, sales activity, call)
opportunities      0.10    Salesforce: open or recently won expansion (+), renewal lost recently (−)
=================  ======  ========================================================================

A component without data (a customer whose product usage is not tracked, no CSAT ratings) takes a neutral
value instead of punishing the account. Bands: ``healthy`` ≥ 70, ``watch`` ≥ 45, ``at risk`` below.
``marts.customer_health`` holds the score at ``as_of`` with the score 30 days earlier, so alert rules can fire
on a drop; ``marts.customer_health_history`` holds it at every month end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.marts_finance import account_dimensions, with_dimensions

WEIGHTS = {"usage": 0.30, "revenue": 0.20, "support_load": 0.15, "csat": 0.15, "recency": 0.10,
           "opportunities": 0.10}
BANDS = ((70.0, "healthy"), (45.0, "watch"), (-1.0, "at risk"))
NEUTRAL = {"usage": 50.0, "csat": 75.0}
RECENCY_DAYS = 45.0
CHANGE_DAYS = 30
SATISFIED = 4


def customer_marts(ctx: TransformContext) -> None:
    """Write marts.retention_cohorts, marts.support, marts.customer_health and marts.customer_health_history."""
    accounts = account_dimensions(ctx.table("core.accounts"))
    revenue = ctx.table("core.revenue")
    ctx.write("marts", "retention_cohorts", retention_cohorts(with_dimensions(revenue, accounts)))
    conversations = ctx.table("core.conversations")
    ctx.write("marts", "support", support(conversations, accounts))
    signals = HealthSignals.from_context(ctx)
    as_of = _naive(ctx.as_of)
    current = health_scores(signals, pd.DatetimeIndex([as_of, as_of - pd.Timedelta(days=CHANGE_DAYS)]))
    ctx.write("marts", "customer_health", current_health(current, as_of, accounts))
    month_ends = _month_ends(revenue, as_of)
    ctx.write("marts", "customer_health_history",
              with_dimensions(health_scores(signals, month_ends), accounts).reset_index(drop=True))


# --- retention -----------------------------------------------------------------------------------------
def retention_cohorts(rev: pd.DataFrame) -> pd.DataFrame:
    """``marts.retention_cohorts``: cohort month (first month with ARR) × months since start × segment:
    customers still active and their ARR against the cohort's starting customers and ARR."""
    r = rev[rev["cohort_month"].notna() & rev["months_since_start"].notna()]
    start = r[r["months_since_start"] == 0][["account_key", "arr"]].rename(columns={"arr": "start_arr"})
    r = r.merge(start, on="account_key", how="left")
    keys = ["cohort_month", "months_since_start", "segment"]
    out = r.assign(active=r["is_active"].astype("int64"), one=1).groupby(keys, as_index=False).agg(
        cohort_customers=("one", "sum"), active_customers=("active", "sum"), starting_arr=("start_arr", "sum"),
        arr=("arr", "sum"), recognized_revenue=("recognized_revenue", "sum"))
    out["month"] = (out["cohort_month"].dt.to_period("M") + out["months_since_start"].astype("int64")).dt.to_timestamp()
    out["logo_retention"] = (out["active_customers"] / out["cohort_customers"]).round(4)
    out["net_revenue_retention"] = (out["arr"] / out["starting_arr"].where(out["starting_arr"] > 0)).round(4)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


# --- support -------------------------------------------------------------------------------------------
def support(conversations: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """``marts.support``: day × priority × state × segment × region: conversations opened that day, how fast
    they were answered and closed, and their CSAT (sums and counts beside the averages)."""
    c = with_dimensions(conversations, accounts)
    created = _naive_series(c["created_at"])
    rated = c["csat_rating"].notna()
    frame = pd.DataFrame({
        "date": created.dt.floor("D"),
        "week": created.dt.to_period("W-SUN").dt.start_time,
        "priority": c["priority"].fillna("unknown"),
        "state": c["state"].fillna("unknown"),
        "segment": c["segment"], "region": c["region"],
        "conversations": 1,
        "open_conversations": c["is_open"].astype("int64"),
        "closed_conversations": c["closed_at"].notna().astype("int64"),
        "first_responses": c["first_response_s"].notna().astype("int64"),
        "first_response_s_sum": c["first_response_s"].astype("float64").fillna(0.0),
        "time_to_close_s_sum": c["time_to_close_s"].astype("float64").fillna(0.0),
        "csat_responses": rated.astype("int64"),
        "csat_sum": c["csat_rating"].astype("float64").fillna(0.0),
        "csat_satisfied": (c["csat_rating"].astype("float64") >= SATISFIED).astype("int64"),
        "reopens": c["count_reopens"].astype("float64").fillna(0.0).astype("int64"),
    })
    keys = ["date", "week", "priority", "state", "segment", "region"]
    out = frame.groupby(keys, as_index=False).sum()
    out["avg_first_response_s"] = (out["first_response_s_sum"] / out["first_responses"].where(
        out["first_responses"] > 0)).round(1)
    out["avg_time_to_close_s"] = (out["time_to_close_s_sum"] / out["closed_conversations"].where(
        out["closed_conversations"] > 0)).round(1)
    out["csat_avg"] = (out["csat_sum"] / out["csat_responses"].where(out["csat_responses"] > 0)).round(3)
    out["csat_satisfied_pct"] = (out["csat_satisfied"] / out["csat_responses"].where(out["csat_responses"] > 0)
                                 ).round(4)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


# --- health --------------------------------------------------------------------------------------------
class HealthSignals:
    """The event streams the score reads, each ``account_key, at (naive UTC), value``."""

    def __init__(self, customers: pd.DataFrame, arr: pd.DataFrame, usage: pd.DataFrame, conversations: pd.DataFrame,
                 touches: pd.DataFrame, opportunities: pd.DataFrame) -> None:
        self.customers = customers
        self.arr = arr
        self.usage = usage
        self.conversations = conversations
        self.touches = touches
        self.opportunities = opportunities

    @classmethod
    def from_context(cls, ctx: TransformContext) -> HealthSignals:
        rev = ctx.table("core.revenue")
        started = rev[rev["is_active"]].groupby("account_key", as_index=False)["month"].min()
        customers = started.rename(columns={"month": "customer_since"})
        # a month's ARR (taken at its end, or at as_of) stands for the whole month
        arr = pd.DataFrame({"account_key": rev["account_key"], "at": rev["month"].astype("datetime64[ns]"),
                            "value": rev["arr"].astype("float64")})
        touch = _optional(ctx, "core.touchpoints", ["account_key", "occurred_at", "kind", "page_views"])
        product = touch[touch["kind"].astype("string").eq("product").fillna(False)]
        usage = _events(product["account_key"], product["occurred_at"], product["page_views"])
        conv = ctx.table("core.conversations")
        conversations = pd.DataFrame({
            "account_key": conv["account_key"], "at": _naive_series(conv["created_at"]),
            "priority": conv["is_priority"].astype("float64"), "rating": conv["csat_rating"].astype("float64")})
        conversations = conversations[conversations["account_key"].notna()]
        acts = _optional(ctx, "core.activities", ["account_key", "occurred_at"])
        calls = _optional(ctx, "core.calls", ["account_key", "started_at"])
        touches = pd.concat([
            _events(usage["account_key"], usage["at"], 1.0),
            _events(conversations["account_key"], conversations["at"], 1.0),
            _events(acts["account_key"], acts["occurred_at"], 1.0),
            _events(calls["account_key"], calls["started_at"], 1.0)], ignore_index=True)
        opps = _optional(ctx, "core.opportunities", ["account_key", "type", "is_closed", "is_won", "created_at",
                                                     "close_date"])
        opportunities = pd.DataFrame({
            "account_key": opps["account_key"], "type": opps["type"].astype("string").str.lower(),
            "is_closed": opps["is_closed"].astype("boolean").fillna(False),
            "is_won": opps["is_won"].astype("boolean").fillna(False),
            "created": _naive_series(opps["created_at"]), "closed": _naive_series(opps["close_date"])})
        return cls(customers, arr, usage, conversations, touches, opportunities[opportunities["account_key"].notna()])


def health_scores(signals: HealthSignals, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Score and components of every customer (started by then) at each of ``dates``."""
    points = signals.customers.merge(pd.DataFrame({"scored_at": dates.astype("datetime64[ns]")}), how="cross")
    points = points[points["customer_since"] <= points["scored_at"]].reset_index(drop=True)
    p = points[["account_key", "scored_at"]]
    day = pd.Timedelta(days=1)

    usage_30 = window_sum(signals.usage, p, 30 * day)
    usage_base = (window_sum(signals.usage, p, 120 * day) - usage_30) / 3.0
    used_before = last_event(signals.usage, p).notna()
    usage = np.where(usage_base > 0, 100.0 * np.clip(usage_30 / np.where(usage_base > 0, usage_base, 1), 0, 1.25)
                     / 1.25, np.where(usage_30 > 0, 80.0, np.where(used_before, 0.0, NEUTRAL["usage"])))

    arr_now = value_at(signals.arr, p, 0 * day)
    arr_then = value_at(signals.arr, p, 90 * day)
    revenue = np.where(arr_now <= 0, 0.0, np.where(arr_then > 0, 100.0 * np.clip(
        arr_now / np.where(arr_then > 0, arr_then, 1), 0, 1), 100.0))

    conv = signals.conversations.assign(value=1.0)
    n_30 = window_sum(conv, p, 30 * day)
    n_base = (window_sum(conv, p, 180 * day) - n_30) / 5.0
    priority_30 = window_sum(signals.conversations.assign(value=signals.conversations["priority"]), p, 30 * day)
    load_ratio = (n_30 + 1.0) / (n_base + 1.0)
    support_load = np.clip(100.0 / np.maximum(load_ratio, 1.0) - 10.0 * priority_30, 0, 100)

    rated = signals.conversations[signals.conversations["rating"].notna()]
    ratings = window_sum(rated.assign(value=1.0), p, 90 * day)
    rating_sum = window_sum(rated.assign(value=rated["rating"]), p, 90 * day)
    csat = np.where(ratings > 0, (rating_sum / np.where(ratings > 0, ratings, 1) - 1.0) / 4.0 * 100.0,
                    NEUTRAL["csat"])

    last = last_event(signals.touches, p)
    idle_days = ((p["scored_at"] - last).dt.total_seconds() / 86_400).to_numpy(dtype="float64")
    recency = np.where(np.isnan(idle_days), 0.0, 100.0 * np.exp(-np.clip(idle_days, 0, None) / RECENCY_DAYS))

    opportunities = opportunity_score(signals.opportunities, p)
    components = {"usage": usage, "revenue": revenue, "support_load": support_load, "csat": csat,
                  "recency": recency, "opportunities": opportunities}
    out = points.copy()
    for name, values in components.items():
        out[f"{name}_score"] = np.round(np.asarray(values, dtype="float64"), 1)
    score = sum(WEIGHTS[name] * out[f"{name}_score"] for name in WEIGHTS)
    out["health_score"] = np.round(score, 1)
    out["band"] = band(out["health_score"])
    out["arr"] = np.round(arr_now, 2)
    out["is_churned"] = arr_now <= 0
    out["product_page_views_30d"] = usage_30
    out["conversations_30d"] = n_30.astype("int64")
    out["priority_conversations_30d"] = priority_30.astype("int64")
    out["csat_ratings_90d"] = ratings.astype("int64")
    out["csat_avg_90d"] = np.where(ratings > 0, np.round(rating_sum / np.where(ratings > 0, ratings, 1), 2), np.nan)
    out["days_since_last_touch"] = np.round(idle_days, 1)
    return out.sort_values(["scored_at", "account_key"], kind="stable").reset_index(drop=True)


def opportunity_score(opps: pd.DataFrame, points: pd.DataFrame) -> np.ndarray:
    """60 by default; 100 with an open or recently (180 days) won expansion; 0 after a renewal lost in the
    last 90 days."""
    pairs = points.reset_index().merge(opps, on="account_key")
    t = pairs["scored_at"]
    open_then = (pairs["created"] <= t) & ~(pairs["is_closed"] & (pairs["closed"] <= t))
    won_recently = pairs["is_won"] & (pairs["closed"] <= t) & (pairs["closed"] > t - pd.Timedelta(days=180))
    lost_recently = (pairs["is_closed"] & ~pairs["is_won"] & (pairs["closed"] <= t)
                     & (pairs["closed"] > t - pd.Timedelta(days=90)))
    expansion = pairs["type"].eq("expansion").fillna(False)
    renewal = pairs["type"].eq("renewal").fillna(False)
    good = (expansion & (open_then | won_recently)).fillna(False).groupby(pairs["index"]).any()
    bad = (renewal & lost_recently).fillna(False).groupby(pairs["index"]).any()
    score = np.full(len(points), 60.0)
    score[good[good].index.to_numpy()] = 100.0
    score[bad[bad].index.to_numpy()] = 0.0
    return score


def current_health(scores: pd.DataFrame, as_of: pd.Timestamp, accounts: pd.DataFrame) -> pd.DataFrame:
    """``marts.customer_health``: the score at ``as_of`` beside the score 30 days before."""
    now = scores[scores["scored_at"] == as_of]
    before = scores[scores["scored_at"] < as_of][["account_key", "health_score", "band"]].rename(
        columns={"health_score": "health_score_30d_ago", "band": "band_30d_ago"})
    out = now.merge(before, on="account_key", how="left")
    out["health_change_30d"] = (out["health_score"] - out["health_score_30d_ago"]).round(1)
    return with_dimensions(out, accounts).sort_values("health_score", kind="stable").reset_index(drop=True)


def band(score: pd.Series) -> pd.Series:
    out = pd.Series(BANDS[-1][1], index=score.index, dtype="string")
    for threshold, name in reversed(BANDS[:-1]):
        out = out.mask(score >= threshold, name)
    return out


# --- windows over event streams ------------------------------------------------------------------------
def _cumulative(events: pd.DataFrame) -> pd.DataFrame:
    e = events[events["account_key"].notna() & events["at"].notna()]
    e = e.assign(value=e["value"].astype("float64").fillna(0.0)).sort_values(["account_key", "at"], kind="stable")
    e = e.assign(total=e.groupby("account_key", sort=False)["value"].cumsum())
    return e[["account_key", "at", "total"]].sort_values("at", kind="stable")


def _asof(table: pd.DataFrame, points: pd.DataFrame, shift: pd.Timedelta, column: str) -> pd.Series:
    probe = pd.DataFrame({"account_key": points["account_key"].astype("string"),
                          "probe": (points["scored_at"] - shift).astype("datetime64[ns]"), "row": points.index})
    right = table.assign(account_key=table["account_key"].astype("string"),
                         at=table["at"].astype("datetime64[ns]"))
    found = pd.merge_asof(probe.sort_values("probe", kind="stable"), right.sort_values("at", kind="stable"),
                          left_on="probe", right_on="at", by="account_key", direction="backward")
    return found.set_index("row")[column].reindex(points.index)


def window_sum(events: pd.DataFrame, points: pd.DataFrame, days: pd.Timedelta) -> np.ndarray:
    """Per point: the sum of ``value`` of the account's events in (scored_at − days, scored_at]."""
    c = _cumulative(events)
    upto = _asof(c, points, pd.Timedelta(0), "total").astype("float64").fillna(0.0)
    before = _asof(c, points, days, "total").astype("float64").fillna(0.0)
    return (upto - before).to_numpy(dtype="float64")


def value_at(series: pd.DataFrame, points: pd.DataFrame, shift: pd.Timedelta) -> np.ndarray:
    """Per point: the account's latest ``value`` at or before scored_at − shift (0 when none)."""
    return _asof(series, points, shift, "value").astype("float64").fillna(0.0).to_numpy(dtype="float64")


def last_event(events: pd.DataFrame, points: pd.DataFrame) -> pd.Series:
    e = events[events["account_key"].notna() & events["at"].notna()]
    return _asof(e.assign(last=e["at"]), points, pd.Timedelta(0), "last")


def _events(account: pd.Series, at: pd.Series, value: object) -> pd.DataFrame:
    frame = pd.DataFrame({"account_key": account.astype("string"), "at": _naive_series(at)})
    frame["value"] = value if np.isscalar(value) else pd.to_numeric(value, errors="coerce").astype("float64")
    return frame[frame["account_key"].notna() & frame["at"].notna()].reset_index(drop=True)


def _optional(ctx: TransformContext, name: str, columns: list[str]) -> pd.DataFrame:
    """A core table another step owns, or an empty frame when that step is not in the chain."""
    try:
        frame = ctx.table(name)
    except KeyError:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return frame[[c for c in columns if c in frame]].reindex(columns=columns)


def _month_ends(revenue: pd.DataFrame, as_of: pd.Timestamp) -> pd.DatetimeIndex:
    if revenue.empty:
        return pd.DatetimeIndex([as_of])
    months = pd.period_range(revenue["month"].min(), as_of, freq="M")
    ends = (months + 1).to_timestamp() - pd.Timedelta(seconds=1)
    return pd.DatetimeIndex([*ends[ends < as_of], as_of])


def _naive(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp).as_unit("ns")


def _naive_series(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce", utc=True)
    return stamps.dt.tz_localize(None).astype("datetime64[ns]")
