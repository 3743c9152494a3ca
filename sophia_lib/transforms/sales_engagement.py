"""Core engagement tables: Salesforce activities, Gong calls and Factors touchpoints, mapped to
opportunities, accounts, people and employees (see :mod:`sophia_lib.transforms.sales`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities.normalise import normalise_domain, normalise_email
from sophia_lib.transforms.sales_keys import Xrefs, by_id, day, keyed, utc


# --- activities ----------------------------------------------------------------------------------------
def activities(ctx: TransformContext, xrefs: Xrefs, opps: pd.DataFrame) -> pd.DataFrame:
    """Salesforce Tasks and Events (HubSpot engagements are not synced by the HubSpot connector)."""
    tasks = ctx.raw("salesforce", "task", ["id", "subject", "status", "priority", "activity_date", "who_id", "what_id",
                                           "account_id", "owner_id", "task_subtype", "is_closed",
                                           "completed_date_time", "created_date"])
    events = ctx.raw("salesforce", "event", ["id", "subject", "start_date_time", "end_date_time", "activity_date",
                                             "duration_in_minutes", "who_id", "what_id", "account_id", "owner_id",
                                             "event_subtype", "created_date"])
    task_kind = np.where(tasks["task_subtype"].astype("string").str.lower().eq("email").fillna(False), "email", "task")
    frames = [
        pd.DataFrame({
            "id": tasks["id"], "kind": task_kind, "subject": tasks["subject"], "status": tasks["status"],
            "occurred_at": utc(tasks["completed_date_time"]).fillna(utc(tasks["activity_date"]))
            .fillna(utc(tasks["created_date"])),
            "due_on": day(tasks["activity_date"]), "duration_min": np.nan, "who_id": tasks["who_id"],
            "what_id": tasks["what_id"], "account_id": tasks["account_id"], "owner_id": tasks["owner_id"],
            "is_closed": tasks["is_closed"].astype("boolean"), "created_at": utc(tasks["created_date"]),
        }),
        pd.DataFrame({
            "id": events["id"], "kind": "event", "subject": events["subject"],
            "status": np.where(utc(events["start_date_time"]) <= pd.Timestamp(ctx.as_of), "Completed", "Scheduled"),
            "occurred_at": utc(events["start_date_time"]).fillna(utc(events["activity_date"])),
            "due_on": day(events["activity_date"]), "duration_min": events["duration_in_minutes"].astype("float64"),
            "who_id": events["who_id"], "what_id": events["what_id"], "account_id": events["account_id"],
            "owner_id": events["owner_id"], "is_closed": pd.Series(True, index=events.index, dtype="boolean"),
            "created_at": utc(events["created_date"]),
        }),
    ]
    a = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    key_of_sf = by_id(opps[opps["salesforce_id"].notna()], "salesforce_id")
    opp_key = a["what_id"].map(key_of_sf["opportunity_key"]).astype("string")
    account_key = xrefs.account(a["account_id"], "salesforce")
    account_key = account_key.fillna(a["what_id"].map(key_of_sf["account_key"]).astype("string"))
    return pd.DataFrame({
        "activity_key": keyed("act_sf_", a["id"]),
        "system": "salesforce",
        "system_id": a["id"].astype("string"),
        "kind": a["kind"].astype("string"),
        "account_key": account_key,
        "person_key": xrefs.person(a["who_id"], "salesforce"),
        "opportunity_key": opp_key,
        "owner_employee_key": xrefs.employee(a["owner_id"], "salesforce"),
        "occurred_at": a["occurred_at"],
        "due_on": a["due_on"],
        "subject": a["subject"].astype("string"),
        "status": a["status"].astype("string"),
        "is_closed": a["is_closed"],
        "duration_min": a["duration_min"].astype("float64"),
        "account_salesforce_id": a["account_id"].astype("string"),
        "person_salesforce_id": a["who_id"].astype("string"),
        "related_salesforce_id": a["what_id"].astype("string"),
        "owner_salesforce_id": a["owner_id"].astype("string"),
        "created_at": a["created_at"],
    }).sort_values("occurred_at", kind="stable").reset_index(drop=True)


# --- calls ---------------------------------------------------------------------------------------------
def calls(ctx: TransformContext, xrefs: Xrefs, opps: pd.DataFrame) -> pd.DataFrame:
    """Gong calls joined with their extensive record (CRM context and Gong's interaction analysis)."""
    calls = ctx.raw("gong", "calls", ["id", "url", "title", "scheduled", "started", "duration", "primary_user_id",
                                      "direction", "system", "scope", "media", "purpose"])
    ext = ctx.raw("gong", "calls_extensive", [
        "id", "analysis_ready", "crm_account_id", "crm_opportunity_id", "party_count", "external_party_count",
        "topics", "call_outcome", "questions_company", "questions_non_company", "talk_ratio", "longest_monologue_s",
        "interactivity", "patience", "question_rate"])
    c = calls.merge(ext, on="id", how="left")
    key_of_sf = by_id(opps[opps["salesforce_id"].notna()], "salesforce_id")
    account_key = xrefs.account(c["crm_account_id"], "salesforce").fillna(xrefs.account(c["crm_account_id"], "gong"))
    account_key = account_key.fillna(c["crm_opportunity_id"].map(key_of_sf["account_key"]).astype("string"))
    topics = c["topics"].astype("string").str.replace(r'[\[\]"]', "", regex=True).str.replace(r",\s*", ",", regex=True)
    return pd.DataFrame({
        "call_key": keyed("call_gong_", c["id"]),
        "gong_id": c["id"].astype("string"),
        "title": c["title"].astype("string"),
        "url": c["url"].astype("string"),
        "account_key": account_key,
        "opportunity_key": c["crm_opportunity_id"].map(key_of_sf["opportunity_key"]).astype("string"),
        "owner_employee_key": xrefs.employee(c["primary_user_id"], "gong"),
        "account_salesforce_id": c["crm_account_id"].astype("string"),
        "opportunity_salesforce_id": c["crm_opportunity_id"].astype("string"),
        "owner_gong_id": c["primary_user_id"].astype("string"),
        "scheduled_at": utc(c["scheduled"]),
        "started_at": utc(c["started"]),
        "duration_s": c["duration"].astype("Int64"),
        "direction": c["direction"].astype("string"),
        "conference_system": c["system"].astype("string"),
        "scope": c["scope"].astype("string"),
        "media": c["media"].astype("string"),
        "purpose": c["purpose"].astype("string"),
        "participant_count": c["party_count"].astype("Int64"),
        "external_participant_count": c["external_party_count"].astype("Int64"),
        "analysis_ready": c["analysis_ready"].astype("boolean").fillna(False),
        "talk_ratio": c["talk_ratio"].astype("float64"),
        "longest_monologue_s": c["longest_monologue_s"].astype("float64"),
        "questions_asked": c["questions_company"].astype("Int64"),
        "questions_received": c["questions_non_company"].astype("Int64"),
        "question_rate": c["question_rate"].astype("float64"),
        "interactivity": c["interactivity"].astype("float64"),
        "patience": c["patience"].astype("float64"),
        "topics": topics.where(topics.str.len() > 0),
        "call_outcome": c["call_outcome"].astype("string"),
    }).sort_values("started_at", kind="stable").reset_index(drop=True)


# --- touchpoints ---------------------------------------------------------------------------------------
def touchpoints(ctx: TransformContext, xrefs: Xrefs) -> pd.DataFrame:
    """Factors journey events: marketing-site visits (``kind = 'marketing'``) and product sessions
    (``'product'``, the app host), with the visitor's person where Factors knows the e-mail."""
    ev = ctx.raw("factors", "journey_events", [
        "event_id", "account_domain", "timestamp", "user_id", "user_name", "is_anonymous", "event_name",
        "display_name", "page_url", "channel", "campaign", "source", "medium", "page_count", "engagement_score"])
    domain = normalise_domain(ev["account_domain"])
    account_key = xrefs.account(ev["account_domain"], "factors").fillna(xrefs.account(domain, "factors"))
    account_key = account_key.fillna(xrefs.account_by_domain(domain))
    anonymous = ev["is_anonymous"].astype("boolean").fillna(True)
    email = normalise_email(ev["user_name"].where(~anonymous))
    person_key = xrefs.person(ev["user_id"], "factors").fillna(xrefs.person_by_email(email))
    host = ev["page_url"].astype("string").str.replace(r"^[a-z]+://", "", regex=True).str.split("/").str[0]
    product = ev["display_name"].astype("string").eq("App Session").fillna(False) | host.str.startswith("app.").fillna(
        False)
    campaign = ev["campaign"].astype("string")
    return pd.DataFrame({
        "touchpoint_key": keyed("tch_factors_", ev["event_id"]),
        "system": "factors",
        "system_id": ev["event_id"].astype("string"),
        "account_key": account_key,
        "person_key": person_key,
        "account_domain": domain,
        "visitor_id": ev["user_id"].astype("string"),
        "is_anonymous": anonymous,
        "occurred_at": utc(ev["timestamp"]),
        "kind": np.where(product.to_numpy(dtype=bool), "product", "marketing"),
        "channel": ev["channel"].astype("string"),
        "campaign": campaign.where(campaign.str.len() > 0),
        "source": ev["source"].astype("string"),
        "medium": ev["medium"].astype("string"),
        "page_url": ev["page_url"].astype("string"),
        "page_views": ev["page_count"].astype("Int64"),
        "engagement_score": ev["engagement_score"].astype("float64"),
    }).sort_values(["occurred_at", "touchpoint_key"], kind="stable").reset_index(drop=True)
