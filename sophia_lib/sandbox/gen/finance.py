"""NetSuite: subscription invoices after each won deal (monthly or annual billing), lines, and budgets.

Every won deal starts a 12-month term (expansions run to the end of the current term). Annual billers get
one invoice at the start of the term; monthly billers one per month until the term ends, the customer
churns, or ``now``. Customers who churn pay later (a weak planted signal).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.accounts import Traits
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, stamp_frame

ITEMS = [  # item, share of the subscription amount, department
    ("Platform Subscription", 0.55, "Sales"),
    ("Connector Pack", 0.12, "Sales"),
    ("Additional Seats", 0.15, "Sales"),
    ("Premium Support", 0.08, "Customer Success"),
    ("Data Volume Tier", 0.06, "Sales"),
    ("Sandbox Environment", 0.04, "Engineering"),
]
SERVICES = ("Onboarding Services", "Customer Success")
DEPARTMENTS = ["Executive", "Sales", "Marketing", "Customer Success", "Engineering", "Product", "Finance"]
CATEGORIES = ["Salaries", "Software", "Travel", "Contractors", "Programs"]


def invoices(
    rng: np.random.Generator, size: Size, tl: Timeline, acc: pd.DataFrame, traits: Traits, opps: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    h = tl.horizon
    won = opps[opps["is_won"]]
    acc_index = pd.Index(acc["account_id"])
    a = acc_index.get_indexer(won["account_id"])
    start = tl.days(won["close_date"]) + 1
    since = tl.days(acc["customer_since"])
    churn = tl.days(acc["churned_at"])
    term_start = np.where(won["type"].to_numpy() == "expansion", since[a], start)
    # expansions run to the end of the term they land in
    term_idx = np.floor((start - since[a]) / 365.0)
    term_end = np.where(
        won["type"].to_numpy() == "expansion", since[a] + 365.0 * (term_idx + 1), start + 365.0
    )
    term_start = np.where(won["type"].to_numpy() == "expansion", start, term_start)
    contracts = pd.DataFrame(
        {
            "acc": a,
            "opp": won["opportunity_id"].to_numpy(dtype=object),
            "start": term_start,
            "end": term_end,
            "amount": won["amount"].to_numpy(dtype=float),
            "first": won["type"].to_numpy() == "new_business",
        }
    )
    ss = np.flatnonzero(traits.self_serve & ~np.isnan(since))
    contracts = pd.concat(
        [
            contracts,
            pd.DataFrame(
                {
                    "acc": ss,
                    "opp": None,
                    "start": since[ss],
                    "end": np.inf,
                    "amount": acc["arr"].to_numpy()[ss],
                    "first": False,
                }
            ),
        ],
        ignore_index=True,
    )
    stop = np.fmin(
        contracts["end"].to_numpy(), np.fmin(np.nan_to_num(churn[contracts["acc"]], nan=np.inf), h)
    )
    monthly = traits.monthly_billing[contracts["acc"]] | contracts["opp"].isna().to_numpy()
    months = np.where(monthly, np.ceil(np.maximum(stop - contracts["start"].to_numpy(), 0) / 30.4), 1).astype(
        "int64"
    )
    months = np.where(contracts["start"].to_numpy() < h, np.maximum(months, 1), 0)
    c = np.repeat(np.arange(len(contracts)), months)
    k = np.arange(len(c)) - np.repeat(np.cumsum(months) - months, months)
    issued = contracts["start"].to_numpy()[c] + 30.4 * k
    keep = issued < h
    c, k, issued = c[keep], k[keep], issued[keep]
    total = np.where(monthly[c], contracts["amount"].to_numpy()[c] / 12.0, contracts["amount"].to_numpy()[c])
    acc_c = contracts["acc"].to_numpy()[c]
    churner = ~np.isnan(churn[acc_c])
    pay_days = rng.lognormal(np.log(np.where(churner, 38.0, 22.0)), 0.45)
    paid = issued + pay_days
    order = np.argsort(issued, kind="stable")
    c, k, issued, total, acc_c, paid = (
        c[order],
        k[order],
        issued[order],
        total[order],
        acc_c[order],
        paid[order],
    )
    n = len(c)
    issued_day = tl.day(issued)
    due = issued + 30
    status = np.where(paid <= h, "paid", np.where(due < h, "overdue", "open"))
    # Lines: the subscription split over items, plus one-off onboarding on a customer's first invoice.
    n_lines = np.clip(rng.poisson(size.invoice_lines_per_invoice - 1, n) + 1, 1, len(ITEMS) * 4)
    inv_of_line = np.repeat(np.arange(n), n_lines)
    line_no = np.arange(len(inv_of_line)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
    item_idx = (line_no - 1) % len(ITEMS)
    share = np.array([i[1] for i in ITEMS])[item_idx] * rng.uniform(0.5, 1.5, len(inv_of_line))
    share_sum = np.bincount(inv_of_line, weights=share, minlength=n)
    line_amount = np.round(total[inv_of_line] * share / share_sum[inv_of_line], 2)
    # put rounding residue on line 1 so lines add up to the invoice total exactly
    totals = np.round(total, 2)
    resid = totals - np.bincount(inv_of_line, weights=line_amount, minlength=n)
    line_amount[line_no == 1] += np.round(resid, 2)
    qty = np.where(item_idx == 2, rng.integers(5, 80, len(inv_of_line)), 1)
    tier = (line_no - 1) // len(ITEMS)
    item = np.array([i[0] for i in ITEMS], dtype=object)[item_idx]
    item = np.where(tier > 0, item + " - Region " + (tier + 1).astype(str), item)
    dept = np.array([i[2] for i in ITEMS], dtype=object)[item_idx]
    inv_sys = ids.sequence(rng, n, 80_000, 40)
    inv = pd.DataFrame(
        {
            "invoice_id": canonical_ids("inv_", 1, n),
            "system_id": inv_sys.astype(str).astype(object),
            "tran_id": np.char.add("INV", (10_000 + np.arange(1, n + 1)).astype(str)).astype(object),
            "account_id": acc["account_id"].to_numpy(dtype=object)[acc_c],
            "opportunity_id": pd.array(contracts["opp"].to_numpy(dtype=object)[c], dtype="str"),
            "issued_on": issued_day,
            "due_on": tl.day(due),
            "status": status,
            "total": totals,
            "currency": "USD",
            "paid_on": tl.day(np.where(paid <= h, paid, np.nan)),
            "billing": np.where(monthly[c], "monthly", "annual"),
        }
    )
    inv = stamp_frame(inv, tl.ts(issued), tl.ts(np.where(paid <= h, paid, issued)))
    qty_f = qty.astype(float)
    lines = pd.DataFrame(
        {
            "line_id": canonical_ids("inl_", 1, len(inv_of_line)),
            "system_id": np.char.add(
                np.char.add(inv_sys[inv_of_line].astype(str), "_"), line_no.astype(str)
            ).astype(object),
            "invoice_id": inv["invoice_id"].to_numpy(dtype=object)[inv_of_line],
            "line_no": line_no,
            "item": item,
            "quantity": qty,
            "rate": np.round(line_amount / qty_f, 4),
            "amount": line_amount,
            "department": dept,
        }
    )
    lines = stamp_frame(lines, tl.ts(issued[inv_of_line]))
    return inv, lines


def budgets(rng: np.random.Generator, tl: Timeline, n_employees: int) -> pd.DataFrame:
    """Monthly budget per department and category, two years back through the end of next quarter."""
    months = pd.date_range(
        tl.start.tz_localize(None).to_period("M").to_timestamp(),
        (tl.now.tz_localize(None) + pd.offsets.QuarterEnd(2)).to_period("M").to_timestamp(),
        freq="MS",
    )
    d, c, m = np.meshgrid(
        np.arange(len(DEPARTMENTS)), np.arange(len(CATEGORIES)), np.arange(len(months)), indexing="ij"
    )
    d, c, m = d.ravel(), c.ravel(), m.ravel()
    dept_scale = np.array([0.05, 0.22, 0.14, 0.13, 0.32, 0.09, 0.05])[d]
    cat_scale = np.array([0.7, 0.1, 0.04, 0.08, 0.08])[c]
    growth = 1.0 + 0.02 * m
    amount = np.round(
        n_employees * 14_000 * dept_scale * cat_scale * growth * rng.uniform(0.9, 1.1, len(d)), -2
    )
    n = len(d)
    created = tl.days(pd.DatetimeIndex(months[m]).tz_localize("UTC")) - 20
    frame = pd.DataFrame(
        {
            "budget_id": canonical_ids("bud_", 1, n),
            "system_id": ids.numeric(rng, n, 5_000, 3),
            "department": np.array(DEPARTMENTS, dtype=object)[d],
            "month": months[m],
            "amount": amount,
            "account_category": np.array(CATEGORIES, dtype=object)[c],
        }
    )
    return stamp_frame(
        frame, tl.ts(np.clip(created, -30, tl.horizon - 30))
    )  # future months: planned last month
