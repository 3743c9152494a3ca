"""Notion databases and pages, and the Looker saved Looks over the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, pick, stamp_frame

DATABASES = [  # title, teams that write there, share of pages
    ("Meeting Notes", None, 0.3),
    ("Customer Accounts", "CSM Enterprise Mid-Market SMB", 0.15),
    ("Engineering RFCs", "Platform Data Apps Infra", 0.12),
    ("Product Specs", "Product", 0.1),
    ("Incident Postmortems", "Infra Platform Support", 0.05),
    ("OKRs", "Leadership", 0.03),
]
LOOSE_TITLES = [
    "Team Wiki",
    "Onboarding Guide",
    "Holiday Calendar",
    "Brand Guidelines",
    "Sales Playbook",
    "Support Runbook",
    "Engineering Handbook",
    "Pricing FAQ",
]


def notion(
    rng: np.random.Generator, size: Size, tl: Timeline, emp: pd.DataFrame, acc: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    h = tl.horizon
    nd = len(DATABASES)
    dbs = stamp_frame(
        pd.DataFrame(
            {
                "database_id": canonical_ids("ndb_", 1, nd),
                "system_id": ids.uuids(rng, nd),
                "title": [d[0] for d in DATABASES],
            }
        ),
        tl.ts(np.full(nd, -200.0)),
    )
    n = size.pages
    share = np.array([d[2] for d in DATABASES] + [1 - sum(d[2] for d in DATABASES)])
    db = rng.choice(nd + 1, size=n, p=share / share.sum())
    created = (h - 1) * rng.random(n) ** 0.9
    teams = emp["team"].to_numpy()
    author = np.empty(n, dtype="int64")
    editor = np.empty(n, dtype="int64")
    for k in range(nd + 1):
        sel = db == k
        aud = DATABASES[k][1] if k < nd else None
        pool = np.arange(len(emp)) if aud is None else np.flatnonzero(np.isin(teams, aud.split()))
        author[sel] = pool[rng.integers(0, len(pool), int(sel.sum()))]
        editor[sel] = pool[rng.integers(0, len(pool), int(sel.sum()))]
    same = rng.random(n) < 0.6
    editor = np.where(same, author, editor)
    edited = np.minimum(created + rng.exponential(20, n) * (rng.random(n) < 0.7), h - 0.001)
    order = np.argsort(created, kind="stable")
    db, created, author, editor, edited = (
        db[order],
        created[order],
        author[order],
        editor[order],
        edited[order],
    )
    day_str = np.asarray(tl.day(created).strftime("%Y-%m-%d"), dtype=object)
    acc_short = acc["name"].str.rsplit(" ", n=1).str[0].to_numpy(dtype=object)
    titles = np.select(
        [db == 0, db == 1, db == 2, db == 3, db == 4, db == 5],
        [
            pick(rng, ["Weekly sync", "1:1", "Pipeline review", "Sprint planning", "Retro"], n)
            + " "
            + day_str,
            acc_short[rng.integers(0, len(acc), n)] + " - account plan",
            "RFC: "
            + pick(
                rng,
                [
                    "Incremental sync cursors",
                    "Metric layer caching",
                    "Multi-tenant warehouse",
                    "Alerting engine",
                    "Row-level security",
                ],
                n,
            ),
            "Spec: " + pick(rng, ["Scheduled exports", "Dashboard sharing", "Notebook templates", "SSO"], n),
            "Postmortem " + day_str,
            "OKRs " + pick(rng, ["Sales", "Engineering", "CS", "Company"], n),
        ],
        default=pick(rng, LOOSE_TITLES, n),
    )
    eids = emp["employee_id"].to_numpy(dtype=object)
    pages = pd.DataFrame(
        {
            "page_id": canonical_ids("pag_", 1, n),
            "system_id": ids.uuids(rng, n),
            "title": titles,
            "author_id": eids[author],
            "database_id": pd.array(
                np.where(db < nd, dbs["database_id"].to_numpy(dtype=object)[np.minimum(db, nd - 1)], None),
                dtype="str",
            ),
            "last_edited_by_id": eids[editor],
            "last_edited_at": tl.ts(edited),
            "word_count": np.round(rng.lognormal(np.log(450), 0.9, n)).astype("int64"),
            "archived": rng.random(n) < 0.04,
        }
    )
    return dbs, stamp_frame(pages, tl.ts(created), tl.ts(edited))


LOOKS = [
    (
        "Pipeline by stage",
        "Open pipeline amount by opportunity stage",
        "opportunities",
        ["opportunities.stage", "opportunities.total_amount"],
        {"opportunities.is_closed": "No"},
    ),
    (
        "Bookings by month",
        "Closed-won amount by close month",
        "opportunities",
        ["opportunities.close_month", "opportunities.total_amount"],
        {"opportunities.is_won": "Yes"},
    ),
    (
        "New pipeline by week",
        "Amount of new opportunities created per week",
        "opportunities",
        ["opportunities.created_week", "opportunities.total_amount"],
        {"opportunities.type": "-renewal"},
    ),
    (
        "Win rate by segment",
        "Won / closed by account segment",
        "opportunities",
        ["accounts.segment", "opportunities.win_rate"],
        {"opportunities.is_closed": "Yes"},
    ),
    (
        "ARR by month",
        "Invoiced recurring revenue, annualised",
        "invoices",
        ["invoices.issued_month", "invoices.arr"],
        {"invoices.status": "-voided"},
    ),
    (
        "Support volume",
        "Conversations opened per week",
        "conversations",
        ["conversations.created_week", "conversations.count"],
        {},
    ),
    (
        "CSAT trend",
        "Average CSAT rating per month",
        "conversations",
        ["conversations.created_month", "conversations.average_csat"],
        {"conversations.csat_rating": "NOT NULL"},
    ),
    (
        "Collections",
        "Overdue invoice total by account",
        "invoices",
        ["accounts.name", "invoices.overdue_total"],
        {"invoices.status": "overdue"},
    ),
]


def looks(rng: np.random.Generator, tl: Timeline) -> pd.DataFrame:
    n = len(LOOKS)
    frame = pd.DataFrame(
        {
            "look_id": canonical_ids("lok_", 1, n),
            "system_id": (np.arange(1, n + 1) * 3 + 11).astype(str).astype(object),
            "title": [x[0] for x in LOOKS],
            "description": [x[1] for x in LOOKS],
            "model": "sophia_revenue",
            "view": [x[2] for x in LOOKS],
            "fields": [json.dumps(x[3]) for x in LOOKS],
            "filters": [json.dumps(x[4]) for x in LOOKS],
        }
    )
    created = np.sort(rng.uniform(0, tl.horizon - 30, n))
    return stamp_frame(frame, tl.ts(created))
