"""The canonical synthetic company: the one truth every simulated vendor renders from.

A :class:`Company` is a set of pandas DataFrames, one per table below. The
generator (``sophia_lib.sandbox.generator``) builds it from a seed; ``advance``
mutates it; each vendor module in ``sophia_lib.sandbox.vendors`` renders the
tables it needs into that vendor's native records and serves them.

Contract (generator and vendor renderers both rely on it):

* Every table has ``created_at``, ``updated_at`` (tz-aware UTC ``Timestamp``) and
  ``deleted_at`` (``NaT`` while the row is live). ``updated_at`` moves on every
  change; a delete sets ``deleted_at`` and ``updated_at`` and keeps the row, so
  vendors can expose deletes the way they do (IsDeleted, archived, tombstones).
* Columns listed in :data:`SCHEMA` are always present with those names; the
  generator may add more, never rename or drop these.
* Per-system identities and the *mess* of real data (email case and whitespace,
  ``www.``/subdomain variants, duplicates, missing cross-system links) live in
  ``presence``: one row per (entity, system) appearance, with the variant values
  that system shows. A missing link is simply a missing presence row. The
  presence table *is* the ground-truth entity map.
* Ids: ``*_id`` columns are the canonical ids (strings). ``system_id`` values are
  in the vendor's own id style (Salesforce 18-char, HubSpot numeric strings,
  Slack ``U…``/``C…``, Notion UUIDs, Linear UUIDs, Asana numeric gids, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

TIMESTAMPS = ["created_at", "updated_at", "deleted_at"]

SYSTEMS = (
    "salesforce", "hubspot", "netsuite", "gong", "intercom", "slack",
    "asana", "linear", "notion", "looker", "factors",
)

SCHEMA: dict[str, list[str]] = {
    # Internal staff; appear as Salesforce/HubSpot/Gong/Slack/Asana/Linear/Notion users.
    "employees": ["employee_id", "first_name", "last_name", "email", "title", "department",
                  "team", "region", "manager_id", "hired_at", "is_active"],
    # Companies: prospects and customers.
    "accounts": ["account_id", "name", "domain", "industry", "segment", "region", "country",
                 "employee_count", "owner_id", "first_touch_at", "customer_since", "churned_at",
                 "annual_revenue"],
    # People at accounts (contacts and leads).
    "people": ["person_id", "account_id", "first_name", "last_name", "email", "phone", "title",
               "lifecycle_stage"],
    # One row per appearance of an entity in a system (ground-truth entity map + mess).
    # entity in {"account", "person", "employee"}; name/email/domain/phone as that system shows them
    # (may differ from the canonical ones); is_duplicate marks a second record of the same entity
    # in the same system.
    "presence": ["entity", "entity_id", "system", "system_id", "name", "email", "domain", "phone",
                 "is_duplicate"],
    # Salesforce opportunities (type: new_business | renewal | expansion).
    "opportunities": ["opportunity_id", "system_id", "account_id", "owner_id", "name", "type",
                      "amount", "stage", "probability", "close_date", "is_closed", "is_won",
                      "lead_source", "forecast_category"],
    # Every stage/amount/close-date change, oldest first (Salesforce OpportunityHistory).
    "opportunity_history": ["history_id", "system_id", "opportunity_id", "stage", "amount",
                            "close_date", "probability", "changed_at"],
    # Salesforce Task/Event and HubSpot engagements. kind in {"task","event","email","meeting"}.
    "activities": ["activity_id", "system", "system_id", "kind", "account_id", "person_id",
                   "opportunity_id", "owner_id", "subject", "occurred_at", "status"],
    # Gong calls; analysis (talk ratio etc.) only becomes available at analysis_ready_at (late).
    "calls": ["call_id", "system_id", "opportunity_id", "account_id", "owner_id", "title",
              "started_at", "duration_s", "direction", "participant_person_ids", "talk_ratio",
              "longest_monologue_s", "questions_asked", "interactivity", "patience",
              "topics", "analysis_ready_at"],
    # NetSuite invoices (transactions) and their lines; budgets per department and month.
    "invoices": ["invoice_id", "system_id", "tran_id", "account_id", "opportunity_id", "issued_on",
                 "due_on", "status", "total", "currency", "paid_on"],
    "invoice_lines": ["line_id", "system_id", "invoice_id", "line_no", "item", "quantity", "rate",
                      "amount", "department"],
    "budgets": ["budget_id", "system_id", "department", "month", "amount", "account_category"],
    # Intercom conversations (state: open | closed | snoozed); csat_rating 1..5 or NA.
    "conversations": ["conversation_id", "system_id", "person_id", "account_id", "assignee_id",
                      "title", "state", "priority", "csat_rating", "first_response_s", "closed_at",
                      "tags"],
    # Slack channels and messages (ts is Slack's "1700000000.000100" string, unique per channel).
    "channels": ["channel_id", "system_id", "name", "is_private", "is_archived", "topic"],
    "messages": ["message_id", "channel_id", "employee_id", "ts", "thread_ts", "text",
                 "reply_count", "mentions_account_id"],
    # Work management. system in {"asana","linear"}; state: todo|in_progress|done|canceled.
    "projects": ["project_id", "system", "system_id", "name", "team", "owner_id", "start_on",
                 "due_on", "status", "progress"],
    "cycles": ["cycle_id", "system_id", "team", "number", "starts_at", "ends_at"],
    "tasks": ["task_id", "system", "system_id", "project_id", "cycle_id", "title", "assignee_id",
              "state", "priority", "estimate", "started_at", "completed_at", "due_on"],
    # Notion pages (database_id set when the page is a row of a database).
    "notion_databases": ["database_id", "system_id", "title"],
    "pages": ["page_id", "system_id", "title", "author_id", "database_id", "last_edited_by_id",
              "last_edited_at", "word_count", "archived"],
    # Looker saved Looks over the same numbers (query: model, view, fields, filters as JSON text).
    "looks": ["look_id", "system_id", "title", "description", "model", "view", "fields", "filters"],
    # Factors.ai account-level web/marketing touchpoints (channel: organic|paid_search|paid_social|
    # email|event|direct|referral).
    "touchpoints": ["touch_id", "account_id", "person_id", "occurred_at", "channel", "campaign",
                    "page_url", "page_views", "engagement_score"],
    # Ground truth of planted things: kind in {"pipeline_drop","health_collapse","sync_outage",
    # "project_slip", ...}; entity/entity_id optional; starts_at/ends_at window; detail JSON text.
    "anomalies": ["anomaly_id", "kind", "entity", "entity_id", "system", "starts_at", "ends_at",
                  "detail"],
    # Labels for scoring models: churned (bool), churn_driver text, win drivers etc.
    "labels": ["entity", "entity_id", "label", "value"],
}


@dataclass
class Company:
    """The whole synthetic company at one moment (``now``)."""

    seed: int
    size: str
    now: pd.Timestamp
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def live(self, name: str) -> pd.DataFrame:
        """Rows not deleted."""
        frame = self.tables[name]
        return frame[frame["deleted_at"].isna()]

    def presence_of(self, entity: str, system: str) -> pd.DataFrame:
        """Appearances of one entity kind in one system."""
        p = self.tables["presence"]
        return p[(p["entity"] == entity) & (p["system"] == system)]

    def check_schema(self) -> None:
        """Raise if a contracted table or column is missing."""
        for name, columns in SCHEMA.items():
            if name not in self.tables:
                raise ValueError(f"company table {name!r} is missing")
            missing = [c for c in [*columns, *TIMESTAMPS] if c not in self.tables[name].columns]
            if missing:
                raise ValueError(f"company table {name!r} lacks columns {missing}")
