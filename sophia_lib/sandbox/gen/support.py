"""Intercom conversations. Volume and CSAT follow each customer's hidden support pain and sentiment; the
health-collapse accounts get a spike of angry, low-CSAT conversations in the weeks before they churn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids, org
from sophia_lib.sandbox.gen.accounts import Traits
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, group_sample, pick, stamp_frame

TITLES = [
    "Sync failing for Salesforce connector",
    "How do I share a dashboard?",
    "Invoice question",
    "Report is slow to load",
    "SSO login loop",
    "Feature request: scheduled exports",
    "Wrong numbers in pipeline report",
    "Need help with onboarding",
    "API rate limit errors",
    "Cannot invite teammates",
    "Data missing after sync",
    "Question about pricing tiers",
]
TAGS = np.array(
    [
        "billing",
        "bug",
        "how-to",
        "feature-request",
        "integration",
        "outage",
        "onboarding",
        "performance",
        "sso",
    ],
    dtype=object,
)
COLLAPSE_DAYS = 60.0


def conversations(
    rng: np.random.Generator,
    size: Size,
    tl: Timeline,
    acc: pd.DataFrame,
    traits: Traits,
    people: pd.DataFrame,
    emp: pd.DataFrame,
    collapse: np.ndarray,
) -> pd.DataFrame:
    h = tl.horizon
    since = tl.days(acc["customer_since"])
    churn = tl.days(acc["churned_at"])
    begin = np.where(np.isnan(since), traits.first_touch, since)
    end = np.fmin(np.nan_to_num(churn, nan=h), h)
    tenure = np.maximum(end - begin, 0.0)
    # prospects ask a little (pre-sales chat); customers much more, scaled by pain
    weight = tenure * np.where(np.isnan(since), 0.05, 1.0) * np.exp(0.7 * traits.pain)
    weight *= np.array([0.7, 1.0, 1.6])[traits.segment]
    spike = int(round(size.conversations * 0.004)) + 8  # per collapsing account
    base_n = max(size.conversations - spike * len(collapse), 0)
    counts = rng.multinomial(base_n, weight / weight.sum())
    a = np.repeat(np.arange(len(acc)), counts)
    day = begin[a] + rng.random(len(a)) * tenure[a]
    csat_mean = 4.2 + 0.45 * traits.sentiment[a] - 0.5 * traits.pain[a]
    in_spike = np.zeros(len(a), dtype=bool)
    # planted: support spike + CSAT crash before each collapse churn
    sa = np.repeat(collapse, spike)
    sday = churn[sa] - COLLAPSE_DAYS + rng.random(len(sa)) * (COLLAPSE_DAYS - 1)
    a = np.concatenate([a, sa])
    day = np.concatenate([day, sday])
    csat_mean = np.concatenate([csat_mean, np.full(len(sa), 1.4)])
    in_spike = np.concatenate([in_spike, np.ones(len(sa), dtype=bool)])
    # collapse accounts' regular conversations in the window also go sour
    sour = np.isin(a, collapse) & (day > churn[a] - COLLAPSE_DAYS)
    csat_mean = np.where(sour, 1.6, csat_mean)
    day = np.minimum(day, h - 0.01)
    order = np.argsort(day, kind="stable")
    a, day, csat_mean, in_spike = a[order], day[order], csat_mean[order], in_spike[order]
    n = len(a)

    code = pd.Index(acc["account_id"]).get_indexer(people["account_id"])
    person = group_sample(rng, code, a)
    support = org.of_team(emp, "Support")
    assignee = emp["employee_id"].to_numpy(dtype=object)[support[rng.integers(0, len(support), n)]]
    response = np.round(rng.lognormal(np.log(np.where(in_spike, 3 * 3600, 1200)), 0.8)).astype("int64")
    resolve = day + response / 86_400 + rng.lognormal(np.log(0.8), 0.9, n)
    recent = resolve > h
    state = np.where(recent, pick(rng, ["open", "snoozed"], n, [0.8, 0.2]), "closed")
    rated = (state == "closed") & (rng.random(n) < np.where(in_spike, 0.8, 0.45))
    csat = np.clip(np.round(rng.normal(csat_mean, 0.8)), 1, 5).astype("int64")
    n_tags = rng.integers(1, 3, n)
    tag_idx = rng.integers(0, len(TAGS), (n, 2))
    tags = [list(dict.fromkeys(TAGS[tag_idx[i, : n_tags[i]]].tolist())) for i in range(n)]
    for i in np.flatnonzero(in_spike):
        tags[i] = ["bug", "outage"] if i % 2 else ["bug", "performance"]
    frame = pd.DataFrame(
        {
            "conversation_id": canonical_ids("cnv_", 1, n),
            "system_id": ids.numeric(rng, n, 1_900_000_000, 50_000),
            "person_id": pd.array(
                np.where(person >= 0, people["person_id"].to_numpy(dtype=object)[person], None), dtype="str"
            ),
            "account_id": acc["account_id"].to_numpy(dtype=object)[a],
            "assignee_id": assignee,
            "title": pick(rng, TITLES, n),
            "state": state,
            "priority": np.where(in_spike | (rng.random(n) < 0.12), "priority", "not_priority"),
            "csat_rating": pd.Series(csat, dtype="Int64").where(rated, pd.NA),
            "first_response_s": pd.array(np.where(response / 86_400 + day <= h, response, -1), dtype="Int64"),
            "closed_at": tl.ts(np.where(state == "closed", resolve, np.nan)),
            "tags": pd.Series(tags, dtype=object),
        }
    )
    frame["first_response_s"] = frame["first_response_s"].where(frame["first_response_s"] >= 0, pd.NA)
    frame = stamp_frame(frame, tl.ts(day), tl.ts(np.where(state == "closed", resolve, day)))
    return frame
