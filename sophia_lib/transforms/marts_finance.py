"""Finance marts: revenue and ARR by account, the monthly ARR bridge, budget vs actual, and cash (invoicing,
collections, receivables, DSO). Tidy fact tables with a date column and dimensions; ratios come with the
additive columns they are made of, so the metric layer can re-aggregate them at any grain."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext

ACCOUNT_DIMENSIONS = ["name", "segment", "region", "country", "industry", "owner_employee_key"]
DSO_WINDOW_DAYS = 90
MOVEMENTS = ["new_arr", "expansion_arr", "contraction_arr", "churned_arr", "reactivation_arr"]


def finance_marts(ctx: TransformContext) -> None:
    """Write marts.revenue, marts.arr, marts.budget_vs_actual and marts.cash."""
    accounts = account_dimensions(ctx.table("core.accounts"))
    rev = revenue_mart(ctx.table("core.revenue"), accounts)
    ctx.write("marts", "revenue", rev)
    ctx.write("marts", "arr", arr_bridge(rev))
    ctx.write("marts", "budget_vs_actual", budget_vs_actual(
        ctx.table("core.budgets"), ctx.table("core.expense_lines"), ctx.table("core.invoice_lines"),
        pd.Timestamp(ctx.as_of)))
    ctx.write("marts", "cash", cash(ctx.table("core.invoices"), accounts, pd.Timestamp(ctx.as_of)))


def account_dimensions(accounts: pd.DataFrame) -> pd.DataFrame:
    """account_key → name, segment, region, … (``Unknown`` where the account or the value is missing)."""
    dims = accounts.drop_duplicates("account_key").set_index("account_key")
    out = pd.DataFrame(index=dims.index)
    for col in ACCOUNT_DIMENSIONS:
        out[col] = dims[col].astype("string") if col in dims else pd.Series(pd.NA, index=dims.index, dtype="string")
    return out.rename(columns={"name": "account_name"})


def with_dimensions(frame: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    out = frame.join(accounts, on="account_key")
    for col in ("segment", "region", "country", "industry"):
        out[col] = out[col].fillna("Unknown")
    return out


def revenue_mart(revenue: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """``marts.revenue``: core.revenue (account × month) with the account's dimensions."""
    return with_dimensions(revenue, accounts).reset_index(drop=True)


def arr_bridge(rev: pd.DataFrame) -> pd.DataFrame:
    """``marts.arr``: month × segment × region ARR bridge: opening ARR + movements = closing ARR, and logos."""
    keys = ["month", "segment", "region"]
    frame = rev.assign(
        opening_arr=rev["previous_arr"], closing_arr=rev["arr"],
        customers=rev["is_active"].astype("int64"),
        new_customers=rev["movement"].eq("new").astype("int64"),
        churned_customers=rev["movement"].eq("churn").astype("int64"),
        reactivated_customers=rev["movement"].eq("reactivation").astype("int64"),
    )
    cols = ["opening_arr", *MOVEMENTS, "closing_arr", "customers", "new_customers", "churned_customers",
            "reactivated_customers", "recognized_revenue", "invoiced_amount"]
    out = frame.groupby(keys, as_index=False)[cols].sum()
    out["net_new_arr"] = (out["new_arr"] + out["expansion_arr"] + out["reactivation_arr"]
                          - out["contraction_arr"] - out["churned_arr"]).round(2)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def budget_vs_actual(budgets: pd.DataFrame, expenses: pd.DataFrame, invoice_lines: pd.DataFrame,
                     as_of: pd.Timestamp) -> pd.DataFrame:
    """``marts.budget_vs_actual``: department × month. Budgets are NetSuite's (expense budgets per GL account);
    actual spend is the lines of synced vendor bills and expense reports (null when NetSuite expense
    transactions are not synced — the default connector reads invoices only); ``invoiced_revenue`` is the
    invoice lines booked to the department in the month."""
    keys = ["month", "department_id", "department"]
    budget = budgets.groupby(keys, as_index=False).agg(budget_amount=("amount", "sum"))
    by_category = budgets.pivot_table(index=keys, columns="account_category", values="amount", aggfunc="sum")
    by_category.columns = ["budget_" + _slug(c) for c in by_category.columns]
    budget = budget.merge(by_category.reset_index(), on=keys, how="left")
    spend = expenses.assign(month=_month(expenses["booked_on"])).groupby(keys, as_index=False).agg(
        actual_spend=("amount", "sum"))
    revenue = invoice_lines.assign(month=_month(invoice_lines["issued_on"])).groupby(keys, as_index=False).agg(
        invoiced_revenue=("amount", "sum"))
    plain = {"month": "datetime64[ns]", "department_id": object, "department": object}
    out = budget.astype(plain).merge(spend.astype(plain), on=keys, how="outer").merge(
        revenue.astype(plain), on=keys, how="outer").astype({"department_id": "string", "department": "string"})
    out["budget_amount"] = out["budget_amount"].fillna(0.0)
    out["invoiced_revenue"] = out["invoiced_revenue"].fillna(0.0).round(2)
    if expenses.empty:
        out["actual_spend"] = np.nan
    else:
        out["actual_spend"] = out["actual_spend"].fillna(0.0)
    out["spend_variance"] = (out["actual_spend"] - out["budget_amount"]).round(2)
    out["spend_variance_pct"] = (out["spend_variance"] / out["budget_amount"].where(out["budget_amount"] != 0))
    now = _utc_naive(as_of)
    out["is_future"] = out["month"] > now.to_period("M").to_timestamp()
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def cash(invoices: pd.DataFrame, accounts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """``marts.cash``: month × segment × region: invoiced, collected, receivables at month end (open and
    overdue), and DSO = receivables ÷ invoiced in the trailing 90 days × 90."""
    inv = invoices[invoices["status"].ne("void") & invoices["issued_on"].notna()]
    inv = with_dimensions(inv[["account_key", "issued_on", "due_on", "paid_on", "total", "days_to_pay"]],
                          accounts)
    now = _utc_naive(as_of)
    if inv.empty:
        return pd.DataFrame(columns=["month", "segment", "region", "invoices_issued", "invoiced_amount",
                                     "invoices_paid", "collected_amount", "receivables", "overdue_receivables",
                                     "invoiced_trailing_90d", "dso_days", "avg_days_to_pay"])
    months = pd.period_range(inv["issued_on"].min(), now, freq="M")
    month_start = months.to_timestamp()
    month_end = np.minimum((months + 1).to_timestamp(), now)
    dims = inv[["segment", "region"]].drop_duplicates()
    grid = dims.merge(pd.DataFrame({"month": month_start, "at": month_end}), how="cross")
    issued = inv.assign(month=_month(inv["issued_on"])).groupby(["month", "segment", "region"], as_index=False).agg(
        invoices_issued=("total", "size"), invoiced_amount=("total", "sum"))
    paid = inv[inv["paid_on"].notna()]
    collected = paid.assign(month=_month(paid["paid_on"])).groupby(["month", "segment", "region"], as_index=False).agg(
        invoices_paid=("total", "size"), collected_amount=("total", "sum"), days_to_pay_sum=("days_to_pay", "sum"))
    # receivables at each month end: issued before it and not yet paid by then (invoices × month ends, per dims)
    pairs = inv[["segment", "region", "issued_on", "due_on", "paid_on", "total"]].merge(
        grid, on=["segment", "region"])
    open_then = (pairs["issued_on"] < pairs["at"]) & ~(pairs["paid_on"] < pairs["at"]).fillna(False)
    overdue = open_then & (pairs["due_on"] < pairs["at"]).fillna(False)
    recent = (pairs["issued_on"] < pairs["at"]) & (pairs["issued_on"] >= pairs["at"] - pd.Timedelta(
        days=DSO_WINDOW_DAYS))
    pairs = pairs.assign(receivables=pairs["total"].where(open_then, 0.0),
                         overdue_receivables=pairs["total"].where(overdue, 0.0),
                         invoiced_trailing_90d=pairs["total"].where(recent, 0.0))
    ar = pairs.groupby(["month", "segment", "region"], as_index=False)[
        ["receivables", "overdue_receivables", "invoiced_trailing_90d"]].sum()
    out = grid.drop(columns="at").merge(issued, on=["month", "segment", "region"], how="left").merge(
        collected, on=["month", "segment", "region"], how="left").merge(ar, on=["month", "segment", "region"],
                                                                         how="left")
    for col in ("invoices_issued", "invoices_paid"):
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("invoiced_amount", "collected_amount", "receivables", "overdue_receivables", "invoiced_trailing_90d",
                "days_to_pay_sum"):
        out[col] = out[col].astype("float64").fillna(0.0).round(2)
    out["dso_days"] = (out["receivables"] / out["invoiced_trailing_90d"].where(out["invoiced_trailing_90d"] > 0)
                       * DSO_WINDOW_DAYS).round(1)
    out["avg_days_to_pay"] = (out["days_to_pay_sum"] / out["invoices_paid"].where(out["invoices_paid"] > 0)).round(1)
    return out.sort_values(["month", "segment", "region"], kind="stable").reset_index(drop=True)


def _month(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.to_period("M").dt.to_timestamp().astype("datetime64[ns]")


def _slug(value: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")


def _utc_naive(value: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
