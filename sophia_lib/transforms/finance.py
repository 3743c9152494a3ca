"""Core finance tables from NetSuite: invoices and their lines, budgets, and revenue per account and month.

Invoices are ``transaction`` rows of type ``CustInvc``; their lines are the ``transactionline`` rows with
``mainline = 'F'`` (the ``mainline = 'T'`` row repeats the header) and ``taxline = 'F'``. NetSuite books item
lines on the credit side, so their ``netamount`` and ``quantity`` are negative: they are flipped here.

Revenue (``core.revenue``) is derived from the invoices, because NetSuite's revenue-recognition schedules are
not synced:

* Each invoice covers a **service period** from its issue date: one month for monthly billing, twelve for
  annual. The cadence is read from the linked Salesforce opportunity (``custbody_sf_opportunity``: an invoice
  near 1/12 of the opportunity's annual amount is monthly) and, without one, from the gap to the same
  contract's neighbouring invoices (≤ 45 days: monthly; a customer without an opportunity is a self-serve
  monthly subscriber).
* Subscription lines are **recognised ratably** by day over the service period; one-off service lines
  (onboarding, implementation, training …) in the month they are invoiced.
* **MRR** at a month's end (``as_of`` for the current month) is, per contract (account + opportunity), the
  latest invoice's monthly equivalent while its service period (plus a short grace for late invoicing) still
  runs; ARR = 12 × MRR. Month-over-month ARR changes are the movements: new, expansion, contraction, churn,
  reactivation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.sales_keys import Xrefs, keyed

SYSTEM = "netsuite"
INVOICE_TYPES = ("CustInvc",)
EXPENSE_TYPES = ("VendBill", "ExpRept")
"""Transaction types read as actual spend by ``marts.budget_vs_actual`` when the connector is set to sync them
(option ``transaction_types``)."""
INVOICE_STATUS = {"A": "open", "B": "paid", "V": "void"}
SERVICE_ITEMS = r"(?i)onboarding|implementation|professional services|training|consulting|setup fee"
MONTH_DAYS = 365.25 / 12
PERIOD_DAYS = {"monthly": MONTH_DAYS, "annual": 365.25}
GRACE_DAYS = 5.0
MONTHLY_RATIO = 0.3
"""An invoice below this share of its opportunity's (annual) amount bills monthly."""
NEIGHBOUR_DAYS = 45.0

TRANSACTION_COLUMNS = ["id", "tranid", "type", "entity", "trandate", "duedate", "closedate", "status", "foreigntotal",
                       "foreignamountremaining", "currency", "exchangerate", "createddate", "lastmodifieddate",
                       "custbody_sf_opportunity"]
LINE_COLUMNS = ["transaction_id", "line_id", "linesequencenumber", "mainline", "taxline", "item", "memo", "quantity",
                "rate", "netamount", "department", "linecreateddate", "linelastmodifieddate"]
BUDGET_COLUMNS = ["id", "account", "department", "period", "amount", "currency", "datecreated", "lastmodifieddate"]


def finance_core(ctx: TransformContext) -> None:
    """Write core.invoices, core.invoice_lines, core.budgets, core.revenue and core.expense_lines."""
    xrefs = Xrefs.from_context(ctx)
    departments = _lookup(ctx, "department", "name")
    transactions = ctx.raw(SYSTEM, "transaction", TRANSACTION_COLUMNS)
    lines = ctx.raw(SYSTEM, "transactionline", LINE_COLUMNS)
    kind = transactions["type"].astype("string").str.strip()
    invoices = _invoices(ctx, xrefs, transactions[kind.isin(INVOICE_TYPES).fillna(False)])
    invoice_lines = _invoice_lines(lines, invoices, departments)
    invoices = _add_billing(ctx, invoices, invoice_lines)
    ctx.write("core", "invoices", invoices)
    ctx.write("core", "invoice_lines", invoice_lines)
    ctx.write("core", "expense_lines", _expense_lines(transactions[kind.isin(EXPENSE_TYPES).fillna(False)], lines,
                                                      departments))
    ctx.write("core", "budgets", _budgets(ctx, departments))
    ctx.write("core", "revenue", revenue(invoices, invoice_lines, pd.Timestamp(ctx.as_of)))


# --- invoices ------------------------------------------------------------------------------------------
def _invoices(ctx: TransformContext, xrefs: Xrefs, t: pd.DataFrame) -> pd.DataFrame:
    as_of = _utc_ts(ctx.as_of)
    total = pd.to_numeric(t["foreigntotal"], errors="coerce").astype("float64")
    remaining = pd.to_numeric(t["foreignamountremaining"], errors="coerce").astype("float64")
    rate = pd.to_numeric(t["exchangerate"], errors="coerce").astype("float64").fillna(1.0)
    code = t["status"].astype("string").str.split(":").str[-1].str.strip()
    status = code.map(INVOICE_STATUS).astype("string").fillna("open")
    issued, due, closed = _day(t["trandate"]), _day(t["duedate"]), _day(t["closedate"])
    paid = status.eq("paid")
    remaining = remaining.where(remaining.notna(), total.where(~paid, 0.0))
    status = status.mask(status.eq("open") & (due < as_of.tz_localize(None)).fillna(False), "overdue")
    customer = t["entity"].astype("string")
    account_key = xrefs.account(customer, SYSTEM)
    opportunity = t["custbody_sf_opportunity"].astype("string")
    opportunity = opportunity.where(opportunity.str.len() > 0)
    frame = pd.DataFrame({
        "invoice_key": keyed("inv_ns_", t["id"]),
        "netsuite_id": t["id"].astype("string"),
        "tran_id": t["tranid"].astype("string"),
        "account_key": account_key.fillna(keyed("acc_ns_unmapped_", customer)),
        "account_mapped": account_key.notna(),
        "netsuite_customer_id": customer,
        "opportunity_key": keyed("opp_sf_", opportunity),
        "salesforce_opportunity_id": opportunity,
        "issued_on": issued,
        "due_on": due,
        "paid_on": closed.where(paid),
        "status": status,
        "currency": t["currency"].astype("string"),
        "exchange_rate": rate,
        "total": total,
        "amount_paid": (total - remaining).round(2),
        "amount_remaining": remaining,
        "total_base": (total * rate).round(2),
        "days_to_pay": (closed - issued).dt.days.where(paid).astype("Int64"),
        "created_at": _utc(t["createddate"]),
        "updated_at": _utc(t["lastmodifieddate"]),
    })
    return frame.sort_values(["issued_on", "invoice_key"], kind="stable").reset_index(drop=True)


def _invoice_lines(lines: pd.DataFrame, invoices: pd.DataFrame, departments: pd.Series) -> pd.DataFrame:
    mainline = lines["mainline"].astype("boolean").fillna(False)
    taxline = lines["taxline"].astype("boolean").fillna(False)
    tid = lines["transaction_id"].astype("string")
    lines = lines[~mainline & ~taxline & tid.isin(invoices["netsuite_id"]).fillna(False)]
    tid = lines["transaction_id"].astype("string")
    header = lines[["transaction_id"]].astype("string").merge(
        invoices[["netsuite_id", "account_key", "issued_on"]], left_on="transaction_id", right_on="netsuite_id",
        how="left").set_axis(lines.index)
    item = lines["memo"].astype("string").fillna("item " + lines["item"].astype("string"))
    department_id = lines["department"].astype("string")
    frame = pd.DataFrame({
        "invoice_line_key": keyed("invl_ns_", tid + "_" + lines["line_id"].astype("string")),
        "invoice_key": keyed("inv_ns_", tid),
        "netsuite_transaction_id": tid,
        "line_id": lines["line_id"].astype("string"),
        "line_no": pd.to_numeric(lines["linesequencenumber"], errors="coerce").astype("Int64"),
        "account_key": header["account_key"].astype("string"),
        "issued_on": header["issued_on"].astype("datetime64[ns]"),
        "item_id": lines["item"].astype("string"),
        "item": item,
        "revenue_type": np.where(item.str.contains(SERVICE_ITEMS, regex=True).fillna(False).to_numpy(dtype=bool),
                                 "services", "subscription"),
        "quantity": -pd.to_numeric(lines["quantity"], errors="coerce").astype("float64"),
        "rate": pd.to_numeric(lines["rate"], errors="coerce").astype("float64"),
        "amount": -pd.to_numeric(lines["netamount"], errors="coerce").astype("float64"),
        "department_id": department_id,
        "department": _department_names(department_id, departments),
        "created_at": _utc(lines["linecreateddate"]),
        "updated_at": _utc(lines["linelastmodifieddate"]),
    })
    return frame.sort_values(["invoice_key", "line_no"], kind="stable").reset_index(drop=True)


def _add_billing(ctx: TransformContext, invoices: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """Subscription/services split, billing cadence and service period of every invoice."""
    split = lines.pivot_table(index="invoice_key", columns="revenue_type", values="amount", aggfunc="sum")
    has_lines = invoices["invoice_key"].isin(split.index)
    services = invoices["invoice_key"].map(split["services"] if "services" in split else pd.Series(dtype="float64"))
    services = services.astype("float64").fillna(0.0)
    subscription = (invoices["total"] - services).where(has_lines, invoices["total"])
    opps = ctx.raw("salesforce", "opportunity", ["id", "amount"])
    opps = opps.assign(id=opps["id"].astype("string")).drop_duplicates("id").set_index("id")["amount"]
    opp_amount = invoices["salesforce_opportunity_id"].map(opps)
    billing = billing_cadence(invoices, subscription, pd.to_numeric(opp_amount, errors="coerce").astype("float64"))
    days = billing.map(PERIOD_DAYS).astype("float64")
    start = invoices["issued_on"]
    end = cotermed(invoices["account_key"], billing, start, start + pd.to_timedelta(days, unit="D"))
    return invoices.assign(
        subscription_amount=subscription.round(2), services_amount=services.round(2), billing=billing,
        service_start=start, service_end=end,
        mrr=np.where(billing.eq("monthly"), subscription, subscription / 12.0).round(2))


def cotermed(account: pd.Series, billing: pd.Series, start: pd.Series, end: pd.Series) -> pd.Series:
    """Annual add-ons end with the annual term already running (co-terming): an annual invoice issued while
    an earlier annual term of the account has more than a month left ends when the first such term ends.
    Repeated until stable, since an add-on's own end is only known once it is co-termed."""
    annual = billing.eq("annual").fillna(False) & start.notna()
    a = pd.DataFrame({"account": account[annual], "start": start[annual], "end": end[annual],
                      "row": np.flatnonzero(annual.to_numpy())})
    raw_end = a["end"].copy()
    for _ in range(10):
        pairs = a.merge(a, on="account", suffixes=("", "_earlier"))
        pairs = pairs[(pairs["start_earlier"] < pairs["start"])
                      & (pairs["end_earlier"] - pairs["start"] > pd.Timedelta(days=31))]
        running = pairs.groupby("row")["end_earlier"].min()
        running = running.reindex(a["row"]).set_axis(a.index)
        new_end = running.where(running < raw_end, raw_end)
        if new_end.equals(a["end"]):
            break
        a["end"] = new_end
    out = end.copy()
    out.iloc[a["row"].to_numpy()] = a["end"].to_numpy()
    return out


def billing_cadence(invoices: pd.DataFrame, subscription: pd.Series, opportunity_amount: pd.Series) -> pd.Series:
    """``monthly`` or ``annual`` per invoice (see the module docstring)."""
    ratio = subscription / opportunity_amount.where(opportunity_amount > 0)
    contract = invoices["account_key"].astype("string") + "|" + invoices["salesforce_opportunity_id"].fillna("")
    order = invoices.assign(_c=contract).sort_values(["_c", "issued_on"], kind="stable")
    gap = order.groupby("_c", sort=False)["issued_on"].diff().dt.total_seconds() / 86_400
    nearest = pd.concat([gap, gap.groupby(order["_c"], sort=False).shift(-1)], axis=1).min(axis=1)
    nearest = nearest.reindex(invoices.index)
    by_gap = (nearest <= NEIGHBOUR_DAYS).fillna(False) | invoices["salesforce_opportunity_id"].isna()
    monthly = (ratio < MONTHLY_RATIO).where(ratio.notna(), by_gap)
    return pd.Series(np.where(monthly.astype(bool), "monthly", "annual"), index=invoices.index, dtype="string")


# --- revenue -------------------------------------------------------------------------------------------
def recognition_schedule(invoices: pd.DataFrame) -> pd.DataFrame:
    """Recognised revenue per invoice and calendar month (every month the invoice touches, future ones too):
    subscription ratably by day over the service period, services in the month of issue."""
    s = invoices["service_start"].to_numpy(dtype="datetime64[ns]")
    e = invoices["service_end"].to_numpy(dtype="datetime64[ns]")
    first = s.astype("datetime64[M]")
    span = ((e - np.timedelta64(1, "s")).astype("datetime64[M]") - first).astype("int64") + 1
    span = np.where(np.isnat(s) | np.isnat(e), 0, np.maximum(span, 1))
    row = np.repeat(np.arange(len(invoices)), span)
    step = np.arange(len(row)) - np.repeat(np.cumsum(span) - span, span)
    month = first[row] + step.astype("timedelta64[M]")
    m_start, m_end = month.astype("datetime64[ns]"), (month + 1).astype("datetime64[ns]")
    overlap = (np.minimum(e[row], m_end) - np.maximum(s[row], m_start)).astype("int64").clip(0)
    length = (e[row] - s[row]).astype("int64")
    share = np.where(length > 0, overlap / np.where(length > 0, length, 1), 0.0)
    subscription = invoices["subscription_amount"].to_numpy(dtype="float64")[row] * share
    services = np.where(step == 0, invoices["services_amount"].to_numpy(dtype="float64")[row], 0.0)
    return pd.DataFrame({
        "invoice_key": invoices["invoice_key"].to_numpy()[row],
        "account_key": invoices["account_key"].to_numpy()[row],
        "month": m_start,
        "subscription_revenue": subscription,
        "services_revenue": services,
    })


def revenue(invoices: pd.DataFrame, lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """``core.revenue``: one row per account and month from its first invoice to the month of ``as_of``."""
    cols = ["account_key", "month", "recognized_revenue", "subscription_revenue", "services_revenue",
            "invoiced_amount", "invoices_issued", "mrr", "arr", "previous_arr", "movement", "new_arr",
            "expansion_arr", "contraction_arr", "churned_arr", "reactivation_arr", "is_active", "cohort_month",
            "months_since_start"]
    live = invoices[invoices["status"].ne("void") & invoices["issued_on"].notna()]
    if live.empty:
        kinds = {"account_key": "string", "month": "datetime64[ns]", "cohort_month": "datetime64[ns]",
                 "movement": "string", "is_active": "bool", "invoices_issued": "int64", "months_since_start": "Int64"}
        return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, "float64")) for c in cols})
    now = _utc_ts(as_of).tz_localize(None)
    grid = _account_months(live, now)
    sched = recognition_schedule(live).groupby(["account_key", "month"], as_index=False)[
        ["subscription_revenue", "services_revenue"]].sum()
    issued = live.assign(month=live["issued_on"].dt.to_period("M").dt.to_timestamp()).groupby(
        ["account_key", "month"], as_index=False).agg(invoiced_amount=("total", "sum"),
                                                      invoices_issued=("invoice_key", "size"))
    mrr = _mrr(live, grid, now)
    frame = grid.merge(sched, on=["account_key", "month"], how="left").merge(
        issued, on=["account_key", "month"], how="left").merge(mrr, on=["account_key", "month"], how="left")
    for col in ("subscription_revenue", "services_revenue", "invoiced_amount", "mrr"):
        frame[col] = frame[col].astype("float64").fillna(0.0).round(2)
    frame["invoices_issued"] = frame["invoices_issued"].fillna(0).astype("int64")
    frame["recognized_revenue"] = (frame["subscription_revenue"] + frame["services_revenue"]).round(2)
    frame["arr"] = (frame["mrr"] * 12).round(2)
    frame = frame.sort_values(["account_key", "month"], kind="stable").reset_index(drop=True)
    frame = frame.assign(**arr_movements(frame))
    return frame[cols]


def _account_months(invoices: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    by_account = invoices.groupby("account_key")["issued_on"].min()
    first = by_account.to_numpy(dtype="datetime64[M]")
    last = np.datetime64(now.strftime("%Y-%m"), "M")
    n = np.maximum((last - first).astype("int64") + 1, 1)
    keys = np.repeat(by_account.index.to_numpy(), n)
    start = np.repeat(first, n)
    step = np.arange(len(keys)) - np.repeat(np.cumsum(n) - n, n)
    return pd.DataFrame({"account_key": keys, "month": (start + step.astype("timedelta64[M]")).astype(
        "datetime64[ns]")})


def _mrr(invoices: pd.DataFrame, grid: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Per account and month: the MRR of the contracts still running at the month's end (or ``now``)."""
    contract = invoices["account_key"] + "|" + invoices["salesforce_opportunity_id"].fillna("")
    inv = pd.DataFrame({"account_key": invoices["account_key"], "contract": contract,
                        "issued": invoices["issued_on"].astype("datetime64[ns]"),
                        "ends": (invoices["service_end"] + pd.Timedelta(days=GRACE_DAYS)).astype("datetime64[ns]"),
                        "mrr": invoices["mrr"].astype("float64")})
    # several invoices of one contract on one day add up (e.g. split billing)
    inv = inv.groupby(["account_key", "contract", "issued"], as_index=False).agg(ends=("ends", "max"),
                                                                                   mrr=("mrr", "sum"))
    points = grid.merge(inv[["account_key", "contract"]].drop_duplicates(), on="account_key")
    month_end = (points["month"].dt.to_period("M") + 1).dt.to_timestamp() - pd.Timedelta(seconds=1)
    points["at"] = month_end.where(month_end < now, now).astype("datetime64[ns]")
    points = points.sort_values("at", kind="stable")
    found = pd.merge_asof(points, inv.drop(columns="account_key").sort_values("issued", kind="stable"),
                          left_on="at", right_on="issued", by="contract", direction="backward")
    running = (found["ends"] > found["at"]).fillna(False)
    found["mrr"] = found["mrr"].where(running, 0.0).fillna(0.0)
    return found.groupby(["account_key", "month"], as_index=False)["mrr"].sum()


def arr_movements(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Month-over-month ARR movement columns for ``frame`` sorted by account and month (``arr`` set)."""
    acct = frame["account_key"]
    arr = frame["arr"]
    prev = arr.groupby(acct, sort=False).shift(1).fillna(0.0)
    active = arr > 0
    seen_before = active.astype("int64").groupby(acct, sort=False).cumsum() - active.astype("int64") > 0
    delta = arr - prev
    new = active & (prev <= 0) & ~seen_before
    reactivation = active & (prev <= 0) & seen_before
    churn = ~active & (prev > 0)
    expansion = active & (prev > 0) & (delta > 0.005)
    contraction = active & (prev > 0) & (delta < -0.005)
    movement = np.select([new, reactivation, churn, expansion, contraction],
                         ["new", "reactivation", "churn", "expansion", "contraction"],
                         np.where(active, "flat", "inactive"))
    first_active = frame["month"].where(active).groupby(acct, sort=False).transform("min")
    since = (frame["month"].dt.year - first_active.dt.year) * 12 + frame["month"].dt.month - first_active.dt.month
    return {
        "previous_arr": prev.round(2),
        "movement": pd.Series(movement, index=frame.index, dtype="string"),
        "new_arr": arr.where(new, 0.0),
        "expansion_arr": delta.where(expansion, 0.0).round(2),
        "contraction_arr": (-delta).where(contraction, 0.0).round(2),
        "churned_arr": prev.where(churn, 0.0),
        "reactivation_arr": arr.where(reactivation, 0.0),
        "is_active": active,
        "cohort_month": first_active,
        "months_since_start": since.astype("Int64"),
    }


# --- expenses and budgets ------------------------------------------------------------------------------
def _expense_lines(t: pd.DataFrame, lines: pd.DataFrame, departments: pd.Series) -> pd.DataFrame:
    """Lines of vendor bills and expense reports (only where the connector syncs those types)."""
    tid = lines["transaction_id"].astype("string")
    header = t.assign(id=t["id"].astype("string")).drop_duplicates("id").set_index("id")
    mainline = lines["mainline"].astype("boolean").fillna(False)
    lines = lines[~mainline & tid.isin(header.index).fillna(False)]
    tid = lines["transaction_id"].astype("string")
    department_id = lines["department"].astype("string")
    return pd.DataFrame({
        "expense_line_key": keyed("exp_ns_", tid + "_" + lines["line_id"].astype("string")),
        "netsuite_transaction_id": tid,
        "transaction_type": tid.map(header["type"]).astype("string"),
        "booked_on": _day(tid.map(header["trandate"])),
        "department_id": department_id,
        "department": _department_names(department_id, departments),
        "amount": pd.to_numeric(lines["netamount"], errors="coerce").astype("float64").abs(),
    }).reset_index(drop=True)


def _budgets(ctx: TransformContext, departments: pd.Series) -> pd.DataFrame:
    b = ctx.raw(SYSTEM, "budget", BUDGET_COLUMNS)
    department_id = b["department"].astype("string")
    gl = _lookup(ctx, "account", "accountsearchdisplayname")
    account_id = b["account"].astype("string")
    month, source = budget_months(b, _lookup(ctx, "accountingperiod", "startdate"))
    return pd.DataFrame({
        "budget_key": keyed("bud_ns_", b["id"]),
        "netsuite_id": b["id"].astype("string"),
        "department_id": department_id,
        "department": _department_names(department_id, departments),
        "gl_account_id": account_id,
        "account_category": account_id.map(gl).astype("string").fillna("account " + account_id),
        "period_id": b["period"].astype("string"),
        "month": month,
        "month_source": source,
        "amount": pd.to_numeric(b["amount"], errors="coerce").astype("float64"),
        "currency": b["currency"].astype("string"),
        "created_at": _utc(b["datecreated"]),
        "updated_at": _utc(b["lastmodifieddate"]),
    }).sort_values(["month", "department_id", "gl_account_id"], kind="stable").reset_index(drop=True)


def budget_months(b: pd.DataFrame, period_starts: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The month of each budget row: from NetSuite's ``accountingperiod`` where that lookup is synced, else
    inferred. The inference assumes monthly periods with consecutive internal ids (how NetSuite numbers a
    year's periods set up together) and anchors them on the entry dates: a month's budget is entered in the
    weeks before it, so the median of (entry month + 1 − period id) over all rows fixes the offset."""
    period = b["period"].astype("string")
    known = _day(period.map(period_starts)).dt.to_period("M").dt.to_timestamp()
    if known.notna().all() or b.empty:
        return known, pd.Series("accountingperiod", index=b.index, dtype="string")
    pid = pd.to_numeric(period, errors="coerce")
    entered = _utc(b["datecreated"]).dt.tz_localize(None).dt.to_period("M")
    index = (entered.dt.year * 12 + entered.dt.month - 1) + 1
    offset = float((index - pid).median())
    inferred_index = (pid + offset).round()
    years, months = np.divmod(inferred_index.fillna(0).to_numpy(dtype="int64"), 12)
    inferred = pd.to_datetime(pd.DataFrame({"year": years, "month": months + 1, "day": 1}), errors="coerce")
    inferred = pd.Series(inferred.to_numpy(), index=b.index).where(pid.notna())
    month = known.fillna(inferred)
    source = pd.Series(np.where(known.notna(), "accountingperiod", "inferred"), index=b.index, dtype="string")
    return month, source


# --- small helpers -------------------------------------------------------------------------------------
def _lookup(ctx: TransformContext, table: str, column: str) -> pd.Series:
    """A NetSuite lookup table (``department``, ``account``, ``accountingperiod``) as id → ``column``; empty
    when the connector does not sync it."""
    frame = ctx.raw(SYSTEM, table, ["id", column])
    frame = frame[frame["id"].notna()].drop_duplicates("id")
    return pd.Series(frame[column].to_numpy(), index=frame["id"].astype("string").to_numpy())


def _department_names(ids: pd.Series, names: pd.Series) -> pd.Series:
    return ids.map(names).astype("string").fillna("department " + ids)


def _day(values: pd.Series) -> pd.Series:
    """Dates (NetSuite sends days without a time zone) as naive midnight timestamps."""
    stamps = pd.to_datetime(values, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_localize(None)
    return stamps.dt.floor("D").astype("datetime64[ns]")


def _utc(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce", utc=True)
    return stamps.astype("datetime64[ns, UTC]")


def _utc_ts(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
