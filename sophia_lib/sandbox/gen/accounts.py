"""Accounts (prospects and customers) and the people who work at them, with the hidden traits that drive
later behaviour (sentiment, support pain, exec sponsorship, lead source)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import names, org
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, group_sample, pick, stamp_frame

SEGMENTS = np.array(["SMB", "Mid-Market", "Enterprise"], dtype=object)
LEAD_SOURCES = np.array(["Inbound", "Outbound", "Partner", "Event", "Paid Search"], dtype=object)


@dataclass
class Traits:
    """Hidden per-account drivers, aligned with the accounts frame (positional)."""

    segment: np.ndarray  # 0 SMB, 1 Mid-Market, 2 Enterprise
    lead_source: np.ndarray  # index into LEAD_SOURCES
    sentiment: np.ndarray  # product sentiment, N(0, 1)
    pain: np.ndarray  # support pain, correlated with low sentiment
    exec_sponsor: np.ndarray  # bool
    monthly_billing: np.ndarray  # bool
    self_serve: np.ndarray  # bool: buys by card, never in Salesforce
    first_touch: np.ndarray  # days since start


def accounts(
    rng: np.random.Generator, size: Size, tl: Timeline, emp: pd.DataFrame
) -> tuple[pd.DataFrame, Traits]:
    n = size.accounts
    heads = np.array(names.COMPANY_HEAD, dtype=object)
    tails = np.array([""] + names.COMPANY_TAIL, dtype=object)
    kinds = np.array(names.COMPANY_KIND, dtype=object)
    combo = rng.choice(len(heads) * len(tails) * len(kinds), size=n, replace=False)
    h, rest = np.divmod(combo, len(tails) * len(kinds))
    t, k = np.divmod(rest, len(kinds))
    base = pd.Series(heads[h]) + pd.Series(tails[t])
    country_idx = rng.choice(len(names.COUNTRIES), size=n, p=[c[4] for c in names.COUNTRIES])
    country = np.array([c[0] for c in names.COUNTRIES], dtype=object)[country_idx]
    region = np.array([c[1] for c in names.COUNTRIES], dtype=object)[country_idx]
    legal = np.array([c[2] for c in names.COUNTRIES], dtype=object)[country_idx]
    tld = np.array([c[3] for c in names.COUNTRIES], dtype=object)[country_idx]
    name = base + " " + pd.Series(kinds[k]) + " " + pd.Series(legal)
    domain = base.str.lower() + pd.Series(kinds[k]).str.lower() + "." + pd.Series(tld)

    segment = rng.choice(3, size=n, p=[0.5, 0.32, 0.18])
    emp_median = np.array([60.0, 450.0, 6000.0])[segment]
    employee_count = np.maximum(5, np.round(emp_median * rng.lognormal(0, 0.55, n))).astype("int64")
    revenue = np.round(employee_count * rng.uniform(120_000, 380_000, n), -3)
    lead_source = rng.choice(len(LEAD_SOURCES), size=n, p=[0.34, 0.26, 0.14, 0.12, 0.14])
    first_touch = (tl.horizon - 25) * rng.random(n) ** 0.85
    sentiment = rng.normal(0, 1, n)
    pain = np.clip(-0.6 * sentiment + rng.normal(0, 0.8, n), -3, 3)

    # Owner: an account executive of the segment's team (active or not: departed reps keep old books).
    ae_pool = org.of_team(emp, "SMB", "Mid-Market", "Enterprise", active_only=False)
    ae_team = emp["team"].to_numpy()[ae_pool]
    seg_code_of_team = {"Enterprise": 2, "Mid-Market": 1, "SMB": 0}
    team_code = np.array([seg_code_of_team[x] for x in ae_team])
    owner_pos = ae_pool[group_sample(rng, team_code, segment)]
    sdr_pool = org.of_team(emp, "SDR", active_only=False)
    sdr_pos = sdr_pool[rng.integers(0, len(sdr_pool), n)]
    csm_pool = org.of_team(emp, "CSM", active_only=False)
    csm_pos = csm_pool[rng.integers(0, len(csm_pool), n)]
    eids = emp["employee_id"].to_numpy(dtype=object)

    traits = Traits(
        segment=segment,
        lead_source=lead_source,
        sentiment=sentiment,
        pain=pain,
        exec_sponsor=rng.random(n) < np.array([0.45, 0.6, 0.75])[segment],
        monthly_billing=rng.random(n) < np.array([0.75, 0.5, 0.25])[segment],
        self_serve=(rng.random(n) < 0.03) & (segment == 0),
        first_touch=first_touch,
    )
    frame = pd.DataFrame(
        {
            "account_id": canonical_ids("acc_", 1, n),
            "name": name.to_numpy(dtype=object),
            "domain": domain.to_numpy(dtype=object),
            "industry": pick(rng, names.INDUSTRIES, n),
            "segment": SEGMENTS[segment],
            "region": region,
            "country": country,
            "employee_count": employee_count,
            "owner_id": eids[owner_pos],
            "first_touch_at": tl.ts(first_touch),
            "customer_since": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
            "churned_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
            "annual_revenue": revenue,
            "lead_source": LEAD_SOURCES[lead_source],
            "sdr_id": eids[sdr_pos],
            "csm_id": eids[csm_pos],
            "arr": np.zeros(n),
            "status": "prospect",
        }
    )
    frame = stamp_frame(frame, tl.ts(first_touch))
    return frame, traits


def people(
    rng: np.random.Generator, size: Size, tl: Timeline, acc: pd.DataFrame, traits: Traits
) -> pd.DataFrame:
    """Contacts/leads, ~``people_per_account`` per account (more at bigger companies)."""
    factor = np.array([0.6, 1.1, 2.0])[traits.segment]
    counts = np.maximum(1, rng.poisson(size.people_per_account * factor / 1.0))
    owner = np.repeat(np.arange(len(acc)), counts)
    n = len(owner)
    rank = np.arange(n) - np.repeat(
        np.cumsum(counts) - counts, counts
    )  # 0 for the first person of each account
    first = pick(rng, names.FIRST, n)
    last = pick(rng, names.LAST, n)
    f = pd.Series(first).str.lower()
    la = pd.Series(last).str.lower()
    pattern = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    local = np.where(pattern == 0, f + "." + la, np.where(pattern == 1, f.str[0] + la, f))
    local = pd.Series(local)
    domains = acc["domain"].to_numpy(dtype=object)[owner]
    key = local + "@" + pd.Series(domains)
    dup = key.groupby(key).cumcount()
    local = local.where(dup == 0, local + (dup + 1).astype(str))
    email = local + "@" + pd.Series(domains)
    created = traits.first_touch[owner] + np.where(rank == 0, 0.0, rng.exponential(90, n))
    created = np.minimum(created, tl.horizon - rng.uniform(0.1, 5, n))
    phone = (
        pd.Series(rng.integers(200, 999, n).astype(str))
        + "-555-"
        + pd.Series(np.char.zfill(rng.integers(0, 10_000, n).astype(str), 4))
    )
    frame = pd.DataFrame(
        {
            "person_id": canonical_ids("per_", 1, n),
            "account_id": acc["account_id"].to_numpy(dtype=object)[owner],
            "first_name": first,
            "last_name": last,
            "email": email.to_numpy(dtype=object),
            "phone": ("+1-" + phone).to_numpy(dtype=object),
            "title": pick(rng, names.CONTACT_TITLES, n),
            "lifecycle_stage": pick(
                rng, ["subscriber", "lead", "marketingqualifiedlead"], n, [0.3, 0.5, 0.2]
            ),
        }
    )
    return stamp_frame(frame, tl.ts(created))
