"""Opportunities, their stage history, Gong calls and sales activities — plus the planted win/churn drivers.

Drivers (ground truth, also written to ``labels``):

* win probability rises with the number of Gong calls with high interactivity (>= 6), with an inbound or
  partner lead source and in SMB; it falls for outbound and enterprise deals;
* deal-cycle length grows with segment (SMB ~30 days, Mid-Market ~65, Enterprise ~130);
* a customer churns at a renewal with a probability driven by low product sentiment, support pain (many
  low-CSAT conversations, see ``support``) and the absence of an exec sponsor (no sponsor calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids, names
from sophia_lib.sandbox.gen.accounts import LEAD_SOURCES, Traits
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, group_sample, pick, sigmoid, stamp_frame

STAGES = np.array(
    [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ],
    dtype=object,
)
PROBABILITY = np.array([10, 20, 40, 60, 80, 100, 0])
FORECAST = np.array(
    ["Pipeline", "Pipeline", "Pipeline", "Best Case", "Commit", "Closed", "Omitted"], dtype=object
)
STAGE_FRAC = np.array([0.0, 0.12, 0.3, 0.55, 0.8, 1.0])
WON, LOST = 5, 6
CYCLE_MEDIAN = np.array([30.0, 65.0, 130.0])  # days, by segment
AMOUNT_MEDIAN = np.array([14_000.0, 48_000.0, 160_000.0])
SEGMENT_EFFECT = np.array([0.35, 0.0, -0.45])
SOURCE_EFFECT = np.array([0.35, -0.55, 0.6, 0.1, -0.1])  # aligned with LEAD_SOURCES
HIGH_INTERACTIVITY = 6.0
TOPICS = np.array(
    [
        "Pricing",
        "Security Review",
        "Integrations",
        "Timeline",
        "Competition",
        "Onboarding",
        "Data Model",
        "Procurement",
        "Renewal",
        "Executive Alignment",
        "Roadmap",
    ],
    dtype=object,
)


@dataclass
class DealsResult:
    opportunities: pd.DataFrame
    history: pd.DataFrame
    calls: pd.DataFrame
    activities: pd.DataFrame
    labels: list[pd.DataFrame] = field(default_factory=list)
    anomalies: list[dict] = field(default_factory=list)
    collapse: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="int64"))  # account positions


def _group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = np.cumsum(values)
    starts = np.cumsum(counts) - counts
    base = np.repeat(np.concatenate([[0.0], c])[starts], counts)
    return c - base


def _monday_anchor(tl: Timeline) -> float:
    """Days from start to the first Monday 00:00 UTC on or after it (weeks are Monday-based)."""
    return float((7 - tl.start.weekday()) % 7)


def week_of(days: np.ndarray, tl: Timeline) -> np.ndarray:
    return np.floor((days - _monday_anchor(tl)) / 7.0).astype("int64")


def _new_business(rng: np.random.Generator, size: Size, tl: Timeline, traits: Traits) -> pd.DataFrame:
    n_acc = len(traits.segment)
    cold = rng.random(n_acc) < 0.08
    k = np.where(cold | traits.self_serve, 0, 1 + rng.poisson(size.nb_opps_per_account - 1, n_acc))
    acc = np.repeat(np.arange(n_acc), k)
    rank = np.arange(len(acc)) - np.repeat(np.cumsum(k) - k, k)
    gaps = np.where(rank == 0, rng.exponential(20, len(acc)), rng.exponential(80, len(acc)))
    created = traits.first_touch[acc] + _group_cumsum(gaps, k)
    seg = traits.segment[acc]
    frame = pd.DataFrame(
        {
            "acc": acc,
            "seg": seg,
            "created": created,
            "amount": np.round(AMOUNT_MEDIAN[seg] * rng.lognormal(0, 0.5, len(acc)), -2),
            "source": traits.lead_source[acc],
            "cycle": CYCLE_MEDIAN[seg] * rng.lognormal(0, 0.4, len(acc)),
            "quality": rng.normal(0, 1, len(acc)),
        }
    )
    return frame[frame["created"] < tl.horizon - 0.05].reset_index(drop=True)


def plant_pipeline_drop(
    rng: np.random.Generator, nb: pd.DataFrame, tl: Timeline
) -> tuple[pd.DataFrame, dict]:
    """Remove new-business deals in one week until its new pipeline is ~35 % below the 4 weeks before."""
    week = week_of(nb["created"].to_numpy(), tl)
    last_full = int(week_of(np.array([tl.horizon]), tl)[0]) - 1
    amount = pd.Series(nb["amount"].to_numpy()).groupby(week).sum()
    weekly = amount.reindex(range(0, last_full + 1), fill_value=0.0)
    window = range(last_full - 26, last_full - 8)
    candidates = [w for w in window if 0 < weekly.loc[w - 4 : w - 1].mean() <= weekly.loc[w]]
    candidates = candidates or [
        w for w in window if weekly.loc[w - 4 : w - 1].mean() > 0 and weekly.loc[w] > 0
    ]
    target_week = candidates[int(rng.integers(0, len(candidates)))]
    baseline = float(weekly.loc[target_week - 4 : target_week - 1].mean())
    in_week = np.flatnonzero(week == target_week)
    order = in_week[rng.permutation(len(in_week))]
    keep_amount = float(weekly.loc[target_week])
    drop: list[int] = []
    for i in order:
        if keep_amount <= 0.65 * baseline:
            break
        keep_amount -= float(nb["amount"].iat[i])
        drop.append(int(i))
    starts = tl.start + pd.Timedelta(days=_monday_anchor(tl) + 7 * target_week)
    detail = {
        "metric": "new_pipeline_amount",
        "baseline_4w_mean": round(baseline, 2),
        "week_amount": round(keep_amount, 2),
        "drop_pct": round(100 * (1 - keep_amount / baseline), 1),
        "removed_deals": len(drop),
    }
    anomaly = {
        "kind": "pipeline_drop",
        "entity": None,
        "entity_id": None,
        "system": "salesforce",
        "starts_at": starts,
        "ends_at": starts + pd.Timedelta(days=7),
        "detail": json.dumps(detail),
    }
    return nb.drop(index=drop).reset_index(drop=True), anomaly


def _stage_times(rng: np.random.Generator, created: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    jitter = rng.uniform(-0.03, 0.03, (len(created), 5))
    jitter[:, 0] = 0.0
    return created[:, None] + cycle[:, None] * (STAGE_FRAC[None, :5] + jitter)


def build(
    rng: np.random.Generator,
    size: Size,
    tl: Timeline,
    acc: pd.DataFrame,
    traits: Traits,
    people: pd.DataFrame,
    emp: pd.DataFrame,
    collapse_count: int = 2,
) -> DealsResult:
    h = tl.horizon
    nb = _new_business(rng, size, tl, traits)
    nb, drop_anomaly = plant_pipeline_drop(rng, nb, tl)
    n = len(nb)
    created, cycle, quality = nb["created"].to_numpy(), nb["cycle"].to_numpy(), nb["quality"].to_numpy()

    # Deal calls: more on longer, better-run deals; each call's interactivity follows the rep's quality.
    window = np.clip(np.minimum(created + cycle, h) - created, 1, None)
    weight = window * np.exp(0.5 * quality)
    n_calls = rng.poisson(weight / weight.sum() * size.deal_calls)
    call_opp = np.repeat(np.arange(n), n_calls)
    interactivity = np.clip(rng.normal(4.8 + 1.4 * quality[call_opp], 1.4), 0, 10).round(1)
    n_high = np.bincount(call_opp, weights=(interactivity >= HIGH_INTERACTIVITY), minlength=n)
    logit = -1.0 + 0.6 * np.minimum(n_high, 4) + SEGMENT_EFFECT[nb["seg"]] + SOURCE_EFFECT[nb["source"]]
    p_win = sigmoid(logit)
    won = rng.random(n) < p_win
    lost_stage = rng.choice(5, size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    frac_next = STAGE_FRAC[lost_stage + 1]
    lost_close = created + cycle * (
        STAGE_FRAC[lost_stage] + (frac_next - STAGE_FRAC[lost_stage]) * rng.uniform(0.2, 0.9, n)
    )
    planned_close = created + cycle
    eff_close = np.where(won, planned_close, lost_close)
    nb["won"], nb["p_win"], nb["n_high"], nb["n_calls"] = won, p_win, n_high, n_calls
    nb["lost_stage"], nb["eff_close"], nb["planned_close"] = lost_stage, eff_close, planned_close
    nb["type"] = "new_business"

    # Customers: first won new-business deal closed before now.
    won_closed = won & (eff_close <= h)
    first_win = pd.Series(np.where(won_closed, eff_close, np.inf)).groupby(nb["acc"].to_numpy()).min()
    cust_since = np.full(len(acc), np.nan)
    cust_since[first_win.index.to_numpy()] = np.where(
        np.isfinite(first_win.to_numpy()), first_win.to_numpy(), np.nan
    )
    is_exp = created > np.nan_to_num(cust_since[nb["acc"]], nan=np.inf)
    nb.loc[is_exp, "type"] = "expansion"
    nb.loc[is_exp, "amount"] = np.round(nb.loc[is_exp, "amount"] * 0.3, -2)
    first_win_row = np.full(len(acc), -1)
    fw = np.flatnonzero(won_closed & (eff_close == cust_since[nb["acc"]]))
    first_win_row[nb["acc"].to_numpy()[fw]] = fw
    arr0 = np.where(first_win_row >= 0, nb["amount"].to_numpy()[np.maximum(first_win_row, 0)], 0.0)

    # Self-serve customers buy by card soon after first touch, and never appear in Salesforce.
    ss = traits.self_serve & (traits.first_touch + 10 < h)
    cust_since[ss] = traits.first_touch[ss] + 10
    arr0[ss] = np.round(rng.uniform(1_200, 6_000, ss.sum()), -2)

    # Renewals and churn, one anniversary at a time.
    churn_logit = -2.3 - 1.0 * traits.sentiment + 0.9 * traits.pain + 1.1 * (~traits.exec_sponsor)
    p_churn = sigmoid(churn_logit)
    cust = np.flatnonzero(~np.isnan(cust_since))
    collapse = _pick_collapse(rng, cust, cust_since, h, collapse_count)
    churn_day = np.full(len(acc), np.nan)
    renewal_rows = []
    alive = np.ones(len(acc), dtype=bool)
    for j in (1, 2, 3):
        ann = cust_since + 365.0 * j
        active = ~np.isnan(cust_since) & alive & ~traits.self_serve & (ann - 90 <= h)
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            continue
        decided = ann[idx] <= h
        churns = decided & (rng.random(len(idx)) < p_churn[idx])
        churns |= decided & np.isin(idx, collapse) & (ann[idx] >= h - 320)
        churn_day[idx[churns]] = ann[idx[churns]]
        alive[idx[churns]] = False
        renewal_rows.append(
            pd.DataFrame({"acc": idx, "j": j, "ann": ann[idx], "decided": decided, "churn": churns})
        )
    ren = (
        pd.concat(renewal_rows, ignore_index=True)
        if renewal_rows
        else pd.DataFrame(columns=["acc", "j", "ann", "decided", "churn"])
    )
    collapse = np.array([a for a in collapse if not np.isnan(churn_day[a])], dtype="int64")

    # Expansions created after churn never happened; ones still open at churn are lost.
    cd = churn_day[nb["acc"]]
    nb = nb[~(created > np.nan_to_num(cd, nan=np.inf))].reset_index(drop=True)
    cd = churn_day[nb["acc"]]
    late = (nb["type"] == "expansion").to_numpy() & (
        nb["eff_close"].to_numpy() > np.nan_to_num(cd, nan=np.inf)
    )
    nb.loc[late, "won"] = False
    nb.loc[late, "eff_close"] = cd[late]
    nb.loc[late, "lost_stage"] = np.minimum(nb.loc[late, "lost_stage"], 3)

    # Renewal deals: open 90 days before the anniversary, amount = ARR so far plus uplift.
    exp_won = nb[(nb["type"] == "expansion") & nb["won"] & (nb["eff_close"] <= h)]
    exp_amount = np.zeros(len(ren))
    for acc_i, close, amt in zip(exp_won["acc"], exp_won["eff_close"], exp_won["amount"], strict=True):
        exp_amount[(ren["acc"].to_numpy() == acc_i) & (ren["ann"].to_numpy() > close)] += amt
    r = len(ren)
    ren_frame = pd.DataFrame(
        {
            "acc": ren["acc"].to_numpy(dtype="int64"),
            "seg": traits.segment[ren["acc"].to_numpy(dtype="int64")],
            "created": ren["ann"].to_numpy(dtype=float) - 90 + rng.uniform(-5, 5, r),
            "amount": np.round(
                (arr0[ren["acc"].to_numpy(dtype="int64")] * 1.05 ** ren["j"].to_numpy() + exp_amount)
                * rng.uniform(0.98, 1.06, r),
                -2,
            ),
            "source": -1,
            "cycle": 90.0,
            "quality": rng.normal(0, 1, r),
            "won": ~ren["churn"].to_numpy(dtype=bool),
            "p_win": 1 - p_churn[ren["acc"].to_numpy(dtype="int64")],
            "n_high": 0.0,
            "n_calls": 0,
            "lost_stage": rng.choice([3, 4], size=r),
            "eff_close": ren["ann"].to_numpy(dtype=float)
            - np.where(ren["churn"].to_numpy(dtype=bool), rng.uniform(0, 10, r), 0.0),
            "planned_close": ren["ann"].to_numpy(dtype=float),
            "type": "renewal",
        }
    )
    ren_frame["cycle"] = ren_frame["planned_close"] - ren_frame["created"]
    ren_frame = ren_frame[ren_frame["created"] < h - 0.01].reset_index(drop=True)
    r = len(ren_frame)
    opps = pd.concat([nb, ren_frame], ignore_index=True)
    opps["nb_row"] = np.concatenate([np.arange(len(nb)), np.full(r, -1)])

    result = _assemble(
        rng,
        tl,
        acc,
        traits,
        opps,
        emp,
        people,
        call_opp,
        interactivity,
        cust_since,
        churn_day,
        first_win_row,
        nb_len=n,
    )
    result.anomalies.append(drop_anomaly)
    # account lifecycle facts
    acc["customer_since"] = tl.ts(cust_since)
    acc["churned_at"] = tl.ts(churn_day)
    arr_now = arr0.copy()
    ren_won = ren_frame[ren_frame["won"] & (ren_frame["planned_close"] <= h)]
    last_ren = ren_won.groupby("acc")["amount"].last()
    arr_now[last_ren.index.to_numpy()] = last_ren.to_numpy()
    arr_now[~np.isnan(churn_day)] = 0.0
    acc["arr"] = np.where(np.isnan(cust_since), 0.0, arr_now)
    acc["status"] = np.where(
        ~np.isnan(churn_day), "churned", np.where(~np.isnan(cust_since), "customer", "prospect")
    )
    acc["updated_at"] = tl.ts(
        np.fmax(
            np.fmax(traits.first_touch, np.nan_to_num(cust_since, nan=-1)), np.nan_to_num(churn_day, nan=-1)
        )
    )

    drivers = np.stack([-1.0 * traits.sentiment, 0.9 * traits.pain, 1.1 * (~traits.exec_sponsor)], axis=1)
    driver_names = np.array(["low_product_sentiment", "support_pain", "no_exec_sponsor"], dtype=object)
    cust_ids = acc["account_id"].to_numpy(dtype=object)[cust]
    churned = ~np.isnan(churn_day[cust])
    driver = np.where(churned, driver_names[np.argmax(drivers[cust], axis=1)], "")
    driver[np.isin(cust, collapse)] = "health_collapse"
    result.labels.append(_labels("account", cust_ids, "churned", np.where(churned, "true", "false")))
    result.labels.append(_labels("account", cust_ids[churned], "churn_driver", driver[churned]))
    result.labels.append(
        _labels("account", cust_ids, "churn_probability", np.round(p_churn[cust], 4).astype(str))
    )
    result.labels.append(
        _labels(
            "account",
            acc["account_id"].to_numpy(dtype=object),
            "exec_sponsor",
            np.where(traits.exec_sponsor, "true", "false"),
        )
    )
    result.collapse = collapse
    return result


def _pick_collapse(
    rng: np.random.Generator, cust: np.ndarray, cust_since: np.ndarray, h: float, k: int
) -> np.ndarray:
    """Customers with a first or second anniversary 20..300 days before now: they collapse and churn."""
    ok = []
    for a in cust:
        for j in (1, 2):
            ann = cust_since[a] + 365 * j
            if h - 300 <= ann <= h - 20:
                ok.append(a)
                break
    ok_arr = np.array(sorted(ok), dtype="int64")
    if len(ok_arr) == 0:
        return ok_arr
    return np.sort(rng.choice(ok_arr, size=min(k, len(ok_arr)), replace=False))


def _labels(entity: str, entity_ids: np.ndarray, label: str, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": entity,
            "entity_id": np.asarray(entity_ids, dtype=object),
            "label": label,
            "value": np.asarray(values, dtype=object),
        }
    )


def _assemble(
    rng: np.random.Generator,
    tl: Timeline,
    acc: pd.DataFrame,
    traits: Traits,
    opps: pd.DataFrame,
    emp: pd.DataFrame,
    people: pd.DataFrame,
    call_opp: np.ndarray,
    interactivity: np.ndarray,
    cust_since: np.ndarray,
    churn_day: np.ndarray,
    first_win_row: np.ndarray,
    nb_len: int,
) -> DealsResult:
    h = tl.horizon
    m = len(opps)
    created = opps["created"].to_numpy(dtype=float)
    cycle = opps["cycle"].to_numpy(dtype=float)
    won = opps["won"].to_numpy(dtype=bool)
    eff_close = opps["eff_close"].to_numpy(dtype=float)
    closed = eff_close <= h
    times = _stage_times(rng, created, cycle)
    last_stage = np.where(won, 4, opps["lost_stage"].to_numpy())
    reached_now = (times <= h).sum(axis=1) - 1
    top = np.where(closed, last_stage, np.minimum(reached_now, last_stage))
    stage_now = np.where(closed, np.where(won, WON, LOST), top)
    pushed = rng.random(m) < 0.25
    push_days = np.where(pushed, rng.uniform(14, 45, m), 0.0)
    close_day = np.where(won | ~closed, opps["planned_close"].to_numpy(dtype=float), eff_close)
    amount = opps["amount"].to_numpy(dtype=float)

    # Order deals by creation so ids grow with time, as in Salesforce.
    order = np.argsort(created, kind="stable")
    inv = np.empty(m, dtype="int64")
    inv[order] = np.arange(m)
    opp_ids = canonical_ids("opp_", 1, m)[inv]
    sf_ids = ids.salesforce("opportunity", ids.sequence(rng, m, 3_000_000, 5_000))[inv]

    acc_pos = opps["acc"].to_numpy(dtype="int64")
    acc_names = acc["name"].str.rsplit(" ", n=1).str[0].to_numpy(dtype=object)
    otype = opps["type"].to_numpy(dtype=object)
    year = (tl.start + pd.to_timedelta(close_day, unit="D")).year.astype(str)
    label = np.where(
        otype == "new_business",
        "New Business",
        np.where(otype == "renewal", "Renewal FY" + np.asarray(year, dtype=object), "Expansion"),
    )
    owner = np.where(
        otype == "renewal",
        acc["csm_id"].to_numpy(dtype=object)[acc_pos],
        acc["owner_id"].to_numpy(dtype=object)[acc_pos],
    )
    src = opps["source"].to_numpy(dtype="int64")
    lead_source = np.where(otype == "new_business", LEAD_SOURCES[np.maximum(src, 0)], "Existing Customer")

    # History: one row per stage reached (plus the closing row), oldest first.
    n_rows = top + 1 + closed
    row_opp = np.repeat(np.arange(m), n_rows)
    row_rank = np.arange(len(row_opp)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    is_close_row = closed[row_opp] & (row_rank == n_rows[row_opp] - 1)
    row_stage = np.where(is_close_row, stage_now[row_opp], row_rank)
    row_time = np.where(is_close_row, eff_close[row_opp], times[row_opp, np.minimum(row_rank, 4)])
    row_time = np.minimum(row_time, h - 1e-4)
    early = row_stage < 3
    amt_factor = np.where(early, rng.uniform(0.8, 1.25, m)[row_opp], 1.0)
    row_amount = np.round(amount[row_opp] * amt_factor, -2)
    row_close = close_day[row_opp] - np.where(early & (row_stage != LOST), push_days[row_opp], 0.0)
    hist_order = np.lexsort((row_rank, row_time))
    hist = pd.DataFrame(
        {
            "history_id": canonical_ids("oph_", 1, len(row_opp)),
            "system_id": ids.salesforce(
                "opportunity_history", ids.sequence(rng, len(row_opp), 9_000_000, 3_000)
            ),
            "opportunity_id": opp_ids[row_opp][hist_order],
            "stage": STAGES[row_stage][hist_order],
            "amount": row_amount[hist_order],
            "close_date": tl.day(row_close[hist_order]),
            "probability": PROBABILITY[row_stage][hist_order],
            "changed_at": tl.ts(row_time[hist_order]),
        }
    )
    hist = stamp_frame(hist, hist["changed_at"].array)
    last_change = pd.Series(row_time).groupby(row_opp).max().reindex(range(m)).to_numpy()

    frame = pd.DataFrame(
        {
            "opportunity_id": opp_ids,
            "system_id": sf_ids,
            "account_id": acc["account_id"].to_numpy(dtype=object)[acc_pos],
            "owner_id": owner,
            "name": acc_names[acc_pos] + " - " + label,
            "type": otype,
            "amount": amount,
            "stage": STAGES[stage_now],
            "probability": PROBABILITY[stage_now],
            "close_date": tl.day(close_day),
            "is_closed": closed,
            "is_won": closed & won,
            "lead_source": lead_source,
            "forecast_category": FORECAST[stage_now],
            "closed_at": tl.ts(np.where(closed, eff_close, np.nan)),
        }
    )
    frame = stamp_frame(frame, tl.ts(created), tl.ts(last_change)).iloc[order].reset_index(drop=True)

    result = DealsResult(frame, hist.reset_index(drop=True), pd.DataFrame(), pd.DataFrame())
    nb_row = opps["nb_row"].to_numpy()
    nb_to_opp = np.full(nb_len, -1)
    nb_to_opp[nb_row[nb_row >= 0]] = np.flatnonzero(nb_row >= 0)
    call_pos = nb_to_opp[call_opp]
    keep = call_pos >= 0  # calls of deals dropped (expansions after churn) go too
    result.calls = _calls(
        rng,
        tl,
        acc,
        traits,
        opps,
        people,
        emp,
        opp_ids,
        owner,
        call_pos[keep],
        interactivity[keep],
        cust_since,
        churn_day,
        first_win_row,
        nb_to_opp,
        eff_close,
    )
    result.activities = _activities(rng, tl, acc, opps, people, opp_ids, owner, eff_close)
    result.labels.append(
        _labels("opportunity", opp_ids, "win_probability", np.round(opps["p_win"], 4).astype(str))
    )
    won_label = np.where(closed, np.where(won, "true", "false"), "")
    result.labels.append(_labels("opportunity", opp_ids[closed], "won", won_label[closed]))
    result.labels.append(
        _labels(
            "opportunity",
            opp_ids,
            "high_interactivity_calls",
            opps["n_high"].astype(int).astype(str).to_numpy(),
        )
    )
    return result


def _people_of(
    rng: np.random.Generator,
    people: pd.DataFrame,
    acc: pd.DataFrame,
    acc_pos: np.ndarray,
    exec_only: bool = False,
) -> np.ndarray:
    """A random person (positional index into ``people``) of each account in acc_pos."""
    code = pd.Index(acc["account_id"]).get_indexer(people["account_id"])
    if exec_only:
        is_exec = people["title"].isin(names.EXEC_CONTACT_TITLES).to_numpy()
        pos = group_sample(rng, np.where(is_exec, code, len(acc)), acc_pos)
        fallback = group_sample(rng, code, acc_pos)
        return np.where(pos >= 0, pos, fallback)
    return group_sample(rng, code, acc_pos)


def _calls(
    rng: np.random.Generator,
    tl: Timeline,
    acc: pd.DataFrame,
    traits: Traits,
    opps: pd.DataFrame,
    people: pd.DataFrame,
    emp: pd.DataFrame,
    opp_ids: np.ndarray,
    owner: np.ndarray,
    deal_pos: np.ndarray,
    deal_inter: np.ndarray,
    cust_since: np.ndarray,
    churn_day: np.ndarray,
    first_win_row: np.ndarray,
    nb_to_opp: np.ndarray,
    eff_close: np.ndarray,
) -> pd.DataFrame:
    h = tl.horizon
    created = opps["created"].to_numpy(dtype=float)
    quality = opps["quality"].to_numpy(dtype=float)
    acc_pos = opps["acc"].to_numpy(dtype="int64")
    end = np.minimum(eff_close, h - 0.02)
    start_d = created[deal_pos] + rng.random(len(deal_pos)) * np.maximum(
        end[deal_pos] - created[deal_pos], 0.01
    )
    kind = np.zeros(len(deal_pos), dtype="int64")  # 0 deal, 1 exec sponsor, 2 renewal

    # Exec-sponsor business reviews, quarterly while a sponsored account is a customer.
    spons = np.flatnonzero(traits.exec_sponsor & ~np.isnan(cust_since) & (first_win_row >= 0))
    until = np.fmin(np.nan_to_num(churn_day[spons], nan=h), h - 0.02)
    nq = np.maximum(0, np.floor((until - cust_since[spons] - 30) / 91).astype("int64") + 1)
    s_acc = np.repeat(spons, nq)
    s_rank = np.arange(len(s_acc)) - np.repeat(np.cumsum(nq) - nq, nq)
    s_day = cust_since[s_acc] + 30 + 91 * s_rank + rng.uniform(-10, 10, len(s_acc))
    s_day = np.minimum(s_day, h - 0.02)
    s_pos = nb_to_opp[first_win_row[s_acc]]
    ok = s_pos >= 0
    s_day, s_pos = s_day[ok], s_pos[ok]

    # Renewal calls.
    ren_pos = np.flatnonzero(opps["type"].to_numpy() == "renewal")
    rn = rng.poisson(1.3, len(ren_pos))
    r_pos = np.repeat(ren_pos, rn)
    r_day = created[r_pos] + rng.random(len(r_pos)) * np.maximum(end[r_pos] - created[r_pos], 0.01)
    ok = r_day < h
    r_pos, r_day = r_pos[ok], r_day[ok]

    pos = np.concatenate([deal_pos, s_pos, r_pos])
    day = np.concatenate([start_d, s_day, r_day])
    kind = np.concatenate([kind, np.ones(len(s_pos), "int64"), np.full(len(r_pos), 2)])
    q = quality[pos]
    inter = np.concatenate(
        [deal_inter, np.clip(rng.normal(5.5 + quality[np.concatenate([s_pos, r_pos])], 1.3), 0, 10)]
    )
    day = np.floor(day) + rng.uniform(0.55, 0.9, len(day))  # business hours (UTC-ish)
    day = np.minimum(day, h - 0.02)
    order = np.argsort(day, kind="stable")
    pos, day, kind, q, inter = pos[order], day[order], kind[order], q[order], inter[order].round(1)
    n = len(pos)
    duration = np.round(np.clip(rng.lognormal(np.log(35 * 60), 0.4, n), 300, 7200)).astype("int64")
    late = rng.random(n) < 0.12
    delay_h = np.where(late, rng.uniform(24, 96, n), rng.lognormal(np.log(1.5), 0.6, n))
    ready = day + duration / 86_400 + delay_h / 24
    # the most recent calls are always still being analysed at ``now`` (late-arriving analysis)
    pending = max(3, n // 100)
    ready[-pending:] = np.maximum(ready[-pending:], h + rng.uniform(2, 30, min(pending, n)) / 24)
    a = acc_pos[pos]
    p1 = _people_of(rng, people, acc, a, exec_only=False)
    p_exec = _people_of(rng, people, acc, a, exec_only=True)
    p2 = _people_of(rng, people, acc, a)
    pid = people["person_id"].to_numpy(dtype=object)
    two = rng.random(n) < 0.5
    participants = []
    for first, second, both, k in zip(p1, p2, two, kind, strict=True):
        lead = pid[first] if k != 1 else None
        group = [] if lead is None else [lead]
        if both and second >= 0 and (lead is None or pid[second] != lead):
            group.append(pid[second])
        participants.append(group)
    for i in np.flatnonzero(kind == 1):
        if p_exec[i] >= 0 and pid[p_exec[i]] not in participants[i]:
            participants[i].insert(0, pid[p_exec[i]])
    n_topics = rng.integers(1, 4, n)
    topic_idx = rng.integers(0, len(TOPICS) - 2, (n, 3))
    topics = []
    for i in range(n):
        t = list(dict.fromkeys(TOPICS[topic_idx[i, : n_topics[i]]].tolist()))
        if kind[i] == 1:
            t.append("Executive Alignment")
        elif kind[i] == 2:
            t.append("Renewal")
        topics.append(t)
    names_ = acc["name"].str.rsplit(" ", n=1).str[0].to_numpy(dtype=object)[a]
    title = np.where(
        kind == 1, "Executive sponsor QBR - ", np.where(kind == 2, "Renewal sync - ", "Discovery / demo - ")
    )
    frame = pd.DataFrame(
        {
            "call_id": canonical_ids("call_", 1, n),
            "system_id": ids.numeric(rng, n, 7_700_000_000_000_000_000, 10**12),
            "opportunity_id": opp_ids[pos],
            "account_id": acc["account_id"].to_numpy(dtype=object)[a],
            "owner_id": np.where(kind == 1, acc["csm_id"].to_numpy(dtype=object)[a], owner[pos]),
            "title": title.astype(object) + names_,
            "started_at": tl.ts(day),
            "duration_s": duration,
            "direction": pick(rng, ["Conference", "Outbound", "Inbound"], n, [0.8, 0.15, 0.05]),
            "participant_person_ids": pd.Series(participants, dtype=object),
            "talk_ratio": np.clip(rng.normal(0.55 - 0.05 * q, 0.1), 0.2, 0.9).round(2),
            "longest_monologue_s": np.round(rng.lognormal(np.log(110 - 15 * np.clip(q, -2, 2)), 0.4)).astype(
                "int64"
            ),
            "questions_asked": rng.poisson(np.clip(9 + 3 * q, 1, None)),
            "interactivity": inter,
            "patience": np.clip(rng.normal(0.9 + 0.2 * q, 0.3), 0.1, 3).round(2),
            "topics": pd.Series(topics, dtype=object),
            "analysis_ready_at": tl.ts(ready),
            "call_kind": np.array(["deal", "exec_sponsor", "renewal"], dtype=object)[kind],
        }
    )
    return stamp_frame(frame, tl.ts(day), tl.ts(np.minimum(ready, h)))


ACTIVITY_SUBJECTS = {
    "task": [
        "Follow up on proposal",
        "Send pricing",
        "Call back re: security review",
        "Prepare QBR deck",
        "Update mutual action plan",
    ],
    "event": ["Demo", "Discovery call", "Onsite workshop", "Procurement review"],
    "email": ["Re: next steps", "Pricing proposal", "Intro to Halcyon Data", "Security questionnaire"],
    "meeting": ["Intro meeting", "Technical deep dive", "Executive briefing"],
}


def _activities(
    rng: np.random.Generator,
    tl: Timeline,
    acc: pd.DataFrame,
    opps: pd.DataFrame,
    people: pd.DataFrame,
    opp_ids: np.ndarray,
    owner: np.ndarray,
    eff_close: np.ndarray,
) -> pd.DataFrame:
    h = tl.horizon
    m = len(opps)
    created = opps["created"].to_numpy(dtype=float)
    end = np.minimum(eff_close, h - 0.01)
    k = rng.poisson(3.0, m)
    pos = np.repeat(np.arange(m), k)
    day = created[pos] + rng.random(len(pos)) * np.maximum(end[pos] - created[pos], 0.01)
    day = np.minimum(np.floor(day) + rng.uniform(0.5, 0.95, len(day)), h - 0.01)
    order = np.argsort(day, kind="stable")
    pos, day = pos[order], day[order]
    n = len(pos)
    kinds = np.array(["task", "event", "email", "meeting"], dtype=object)
    kind = kinds[rng.choice(4, size=n, p=[0.45, 0.2, 0.25, 0.1])]
    system = np.where(np.isin(kind, ["task", "event"]), "salesforce", "hubspot")
    sys_id = np.empty(n, dtype=object)
    for kd, prefix_kind, start in (("task", "task", 7_000_000), ("event", "event", 8_000_000)):
        sel = kind == kd
        sys_id[sel] = ids.salesforce(prefix_kind, ids.sequence(rng, int(sel.sum()), start, 2_000))
    sel = system == "hubspot"
    sys_id[sel] = ids.numeric(rng, int(sel.sum()), 40_000_000_000, 5_000_000)
    subject = np.empty(n, dtype=object)
    for kd, options in ACTIVITY_SUBJECTS.items():
        sel = kind == kd
        subject[sel] = pick(rng, options, int(sel.sum()))
    a = opps["acc"].to_numpy(dtype="int64")[pos]
    person = _people_of(rng, people, acc, a)
    pid = people["person_id"].to_numpy(dtype=object)
    status = np.where(
        kind == "task",
        np.where((day > h - 7) & (rng.random(n) < 0.5), "Not Started", "Completed"),
        np.where(kind == "email", "Sent", "Completed"),
    )
    frame = pd.DataFrame(
        {
            "activity_id": canonical_ids("act_", 1, n),
            "system": system,
            "system_id": sys_id,
            "kind": kind,
            "account_id": acc["account_id"].to_numpy(dtype=object)[a],
            "person_id": pd.array(np.where(person >= 0, pid[np.maximum(person, 0)], None), dtype="str"),
            "opportunity_id": opp_ids[pos],
            "owner_id": owner[pos],
            "subject": subject,
            "occurred_at": tl.ts(day),
            "status": status,
        }
    )
    return stamp_frame(frame, tl.ts(day))
