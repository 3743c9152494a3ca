"""Factors.ai touchpoints: marketing touches before and around deals, and weekly product-usage visits of
customers (which fall away for the health-collapse accounts before they churn)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen.accounts import Traits
from sophia_lib.sandbox.gen.org import COMPANY_DOMAIN
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.support import COLLAPSE_DAYS
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, group_sample, pick, stamp_frame

CHANNELS = np.array(
    ["organic", "paid_search", "paid_social", "email", "event", "direct", "referral"], dtype=object
)
FIRST_CHANNEL_OF_SOURCE = np.array([0, 3, 6, 4, 1])  # Inbound, Outbound, Partner, Event, Paid Search
CAMPAIGNS = {
    "organic": "SEO - Blog",
    "paid_search": "Google Ads - Analytics Workbench",
    "paid_social": "LinkedIn - RevOps",
    "email": "Nurture - Q{q}",
    "event": "SaaStr {y}",
    "direct": "",
    "referral": "Partner Referral",
}
PAGES = [
    "/",
    "/pricing",
    "/product/connectors",
    "/product/dashboards",
    "/customers",
    "/blog/revops-metrics",
    "/docs/getting-started",
    "/demo",
    "/security",
]
APP_PAGES = ["/dashboards", "/reports", "/metrics", "/notebooks", "/settings/connectors"]


def touchpoints(
    rng: np.random.Generator,
    size: Size,
    tl: Timeline,
    acc: pd.DataFrame,
    traits: Traits,
    people: pd.DataFrame,
    collapse: np.ndarray,
) -> pd.DataFrame:
    h = tl.horizon
    n_acc = len(acc)
    k = 1 + rng.poisson(size.touches_per_account - 1, n_acc)
    a = np.repeat(np.arange(n_acc), k)
    rank = np.arange(len(a)) - np.repeat(np.cumsum(k) - k, k)
    day = traits.first_touch[a] + np.where(rank == 0, 0.0, rng.exponential(60, len(a)))
    channel = np.where(
        rank == 0,
        FIRST_CHANNEL_OF_SOURCE[traits.lead_source[a]],
        rng.choice(len(CHANNELS), size=len(a), p=[0.3, 0.15, 0.1, 0.2, 0.05, 0.15, 0.05]),
    )
    url = pick(rng, PAGES, len(a))
    views = 1 + rng.poisson(2.5, len(a))
    keep = day < h
    a, day, channel, url, views, rank = a[keep], day[keep], channel[keep], url[keep], views[keep], rank[keep]

    # product usage: one weekly roll-up per customer; collapse accounts fade out before churn
    since = tl.days(acc["customer_since"])
    churn = tl.days(acc["churned_at"])
    end = np.fmin(np.nan_to_num(churn, nan=h), h)
    weeks = np.where(np.isnan(since), 0, np.maximum(0, np.floor((end - since) / 7))).astype("int64")
    ua = np.repeat(np.arange(n_acc), weeks)
    ur = np.arange(len(ua)) - np.repeat(np.cumsum(weeks) - weeks, weeks)
    uday = since[ua] + 7 * ur + rng.uniform(0, 1, len(ua))
    base = np.sqrt(acc["employee_count"].to_numpy(dtype=float))[ua] * np.exp(0.25 * traits.sentiment[ua]) * 3
    fade = np.isin(ua, collapse) & (uday > churn[ua] - COLLAPSE_DAYS)
    frac = np.clip((churn[ua] - uday) / COLLAPSE_DAYS, 0, 1)
    base = np.where(fade, base * (0.1 + 0.4 * frac), base)
    uviews = rng.poisson(base)

    all_a = np.concatenate([a, ua])
    all_day = np.concatenate([day, uday])
    all_channel = np.concatenate([CHANNELS[channel], np.full(len(ua), "direct", dtype=object)])
    all_url = np.concatenate(
        [
            ("https://www." + COMPANY_DOMAIN) + url.astype(str),
            ("https://app." + COMPANY_DOMAIN) + pick(rng, APP_PAGES, len(ua)).astype(str),
        ]
    )
    all_views = np.concatenate([views, uviews])
    is_first = np.concatenate([rank == 0, np.zeros(len(ua), dtype=bool)])
    order = np.lexsort((~is_first, all_day))
    all_a, all_day, all_channel, all_url, all_views = (
        x[order] for x in (all_a, all_day, all_channel, all_url, all_views)
    )
    n = len(all_a)
    code = pd.Index(acc["account_id"]).get_indexer(people["account_id"])
    person = group_sample(rng, code, all_a)
    anonymous = rng.random(n) < 0.4
    when = tl.start + pd.to_timedelta(all_day, unit="D")
    campaign = pd.Series([CAMPAIGNS[c] for c in all_channel], dtype=object)
    campaign = campaign.str.replace("{q}", "", regex=False) + np.where(
        all_channel == "email", when.quarter.astype(str), ""
    )
    campaign = campaign.str.replace("{y}", "", regex=False) + np.where(
        all_channel == "event", when.year.astype(str), ""
    )
    frame = pd.DataFrame(
        {
            "touch_id": canonical_ids("tch_", 1, n),
            "account_id": acc["account_id"].to_numpy(dtype=object)[all_a],
            "person_id": pd.array(
                np.where(
                    anonymous | (person < 0),
                    None,
                    people["person_id"].to_numpy(dtype=object)[np.maximum(person, 0)],
                ),
                dtype="str",
            ),
            "occurred_at": tl.ts(all_day),
            "channel": all_channel,
            "campaign": campaign.to_numpy(dtype=object),
            "page_url": all_url,
            "page_views": all_views.astype("int64"),
            "engagement_score": np.round(np.log1p(all_views) * 10 + rng.normal(0, 2, n), 1),
        }
    )
    return stamp_frame(frame, tl.ts(all_day))
