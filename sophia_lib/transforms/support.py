"""Core support conversations from Intercom, mapped to accounts, people and the teammates who handle them.

A conversation's account is its Intercom company (through ``core.account_xref``) and, when Intercom has no
company on it, the account of its first contact. Response and close times are Intercom's own statistics
(``time_to_admin_reply``, ``last_close_at``), so they agree with what the support team sees in Intercom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.sales_keys import Xrefs, keyed

SYSTEM = "intercom"
CONVERSATION_COLUMNS = [
    "id", "title", "state", "open", "priority", "created_at", "updated_at", "waiting_since", "snoozed_until",
    "admin_assignee_id", "team_assignee_id", "company_id", "contact_ids", "source_type", "source_author_type",
    "source_author_id", "tag_names", "rating", "rating_remark", "time_to_assignment", "time_to_admin_reply",
    "time_to_first_close", "median_time_to_reply", "first_admin_reply_at", "last_close_at", "count_reopens",
    "count_conversation_parts",
]
SATISFIED_RATING = 4
"""CSAT ratings at or above this (on Intercom's 1–5 scale) count as satisfied."""


def support_core(ctx: TransformContext) -> None:
    """Write core.conversations."""
    ctx.write("core", "conversations", conversations(ctx, Xrefs.from_context(ctx)))


def conversations(ctx: TransformContext, xrefs: Xrefs) -> pd.DataFrame:
    c = ctx.raw(SYSTEM, "conversations", CONVERSATION_COLUMNS)
    contact = first_of_list(c["contact_ids"])
    author_is_contact = c["source_author_type"].astype("string").isin(["user", "lead", "contact"]).fillna(False)
    contact = contact.fillna(c["source_author_id"].astype("string").where(author_is_contact))
    person_key = xrefs.person(contact, SYSTEM)
    people = ctx.table("core.people")
    person_account = people.drop_duplicates("person_key").set_index("person_key")["account_key"]
    company_key = xrefs.account(c["company_id"], SYSTEM)
    account_key = company_key.fillna(person_key.map(person_account).astype("string"))
    state = c["state"].astype("string").str.lower()
    created, updated = _utc(c["created_at"]), _utc(c["updated_at"])
    closed = _utc(c["last_close_at"]).where(state.eq("closed"))
    first_response = pd.to_numeric(c["time_to_admin_reply"], errors="coerce").astype("Int64")
    reply_at = _utc(c["first_admin_reply_at"])
    first_response = first_response.fillna(((reply_at - created).dt.total_seconds()).round().astype("Int64"))
    rating = pd.to_numeric(c["rating"], errors="coerce").astype("Int64")
    rating = rating.where(rating.between(1, 5))
    frame = pd.DataFrame({
        "conversation_key": keyed("cnv_ic_", c["id"]),
        "intercom_id": c["id"].astype("string"),
        "account_key": account_key,
        "account_source": pd.Series(np.where(company_key.notna(), "company", np.where(
            account_key.notna(), "contact", "unmapped")), index=c.index, dtype="string"),
        "person_key": person_key,
        "assignee_employee_key": xrefs.employee(c["admin_assignee_id"], SYSTEM),
        "intercom_company_id": c["company_id"].astype("string"),
        "intercom_contact_id": contact,
        "intercom_admin_id": c["admin_assignee_id"].astype("string"),
        "intercom_team_id": c["team_assignee_id"].astype("string"),
        "title": c["title"].astype("string"),
        "state": state,
        "is_open": state.ne("closed"),
        "priority": c["priority"].astype("string").str.lower(),
        "is_priority": c["priority"].astype("string").str.lower().eq("priority").fillna(False),
        "source_type": c["source_type"].astype("string"),
        "created_at": created,
        "updated_at": updated,
        "first_response_at": reply_at,
        "closed_at": closed,
        "first_response_s": first_response,
        "time_to_close_s": ((closed - created).dt.total_seconds()).round().astype("Int64"),
        "time_to_first_close_s": pd.to_numeric(c["time_to_first_close"], errors="coerce").astype("Int64"),
        "count_reopens": pd.to_numeric(c["count_reopens"], errors="coerce").astype("Int64"),
        "csat_rating": rating,
        "csat_satisfied": (rating >= SATISFIED_RATING).astype("boolean"),
        "csat_remark": c["rating_remark"].astype("string"),
        "tags": joined_list(c["tag_names"]),
    })
    return frame.sort_values(["created_at", "conversation_key"], kind="stable").reset_index(drop=True)


def first_of_list(values: pd.Series) -> pd.Series:
    """The first id of a JSON list column (``["a", "b"]`` → ``a``)."""
    text = values.astype("string").str.extract(r'^\s*\[\s*"?([^",\]\s]+)', expand=False)
    return text.astype("string")


def joined_list(values: pd.Series) -> pd.Series:
    """A JSON list of strings as ``a,b`` (``[]`` → ``<NA>``)."""
    text = values.astype("string").str.replace(r'^\s*\[|\]\s*$|"', "", regex=True)
    text = text.str.replace(r"\s*,\s*", ",", regex=True).str.strip()
    return text.where(text.str.len() > 0).astype("string")


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", utc=True).astype("datetime64[ns, UTC]")
