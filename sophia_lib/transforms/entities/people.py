"""People at accounts (contacts, leads, end users) from every system resolved into ``core.people``.

Rules, strongest first:

* ``email``: the same normalised e-mail (trimmed, lowercased).
* ``crm_id``: a Gong call party tagged with a Salesforce Contact id links that contact to the party's
  e-mail.
* ``name_at_account``: the same normalised full name at the same account, where that name carries at most
  one work e-mail at the account (two people called Ann Lee with different work addresses stay two people;
  a work and a free-mail address are one person's).

Salesforce Leads (``raw_salesforce.lead``, where synced; converted ones are left out, their contact
stands for them) are person records too, without an account link.

A person's account is the one their own records name (Salesforce ``account_id``, HubSpot's associated
company, Intercom's company, the Factors account), in system priority; else the account whose domain is
their e-mail's (never for free-mail addresses).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities.cluster import star_edges
from sophia_lib.transforms.entities.normalise import email_domain, normalise_email, person_name_key
from sophia_lib.transforms.entities.records import as_bool, as_timestamp, concat, records
from sophia_lib.transforms.entities.resolve import Matches, resolve, source_list, survive, system_ids, xref

PRIORITY = ("salesforce", "hubspot", "intercom", "factors")
COLUMNS = ("system_id", "email", "first_name", "last_name", "full_name", "phone", "title", "lifecycle_stage",
           "account_system", "account_id", "created_at", "updated_at")
CONFIDENCE = {"email": 0.99, "crm_id": 0.97, "name_at_account": 0.9}
PEOPLE_COLUMNS = ["person_key", "account_key", "first_name", "last_name", "full_name", "email", "phone", "title",
                  "lifecycle_stage", "salesforce_id", "hubspot_id", "intercom_id", "source_systems", "created_at",
                  "updated_at"]


def _const(value: str, n: int) -> pd.Series:
    return pd.Series([value] * n, dtype="string")


def person_records(ctx: TransformContext) -> pd.DataFrame:
    parts = []
    sf = ctx.raw("salesforce", "contact", ["id", "account_id", "first_name", "last_name", "name", "email", "phone",
                                           "title", "lifecycle_stage_c", "created_date", "last_modified_date",
                                           "is_deleted"])
    sf = sf[~as_bool(sf["is_deleted"]).fillna(False)]
    parts.append(records("salesforce", sf, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "full_name": "name", "phone": "phone", "title": "title", "lifecycle_stage": "lifecycle_stage_c",
        "account_system": _const("salesforce", len(sf)), "account_id": "account_id", "created_at": "created_date",
        "updated_at": "last_modified_date"}))
    lead = ctx.raw("salesforce", "lead", ["id", "first_name", "last_name", "name", "email", "phone", "title",
                                          "status", "is_converted", "created_date", "last_modified_date",
                                          "is_deleted"])
    lead = lead[~as_bool(lead["is_deleted"]).fillna(False) & ~as_bool(lead["is_converted"]).fillna(False)]
    parts.append(records("salesforce", lead, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "full_name": "name", "phone": "phone", "title": "title", "lifecycle_stage": "status",
        "created_at": "created_date", "updated_at": "last_modified_date"}))
    hs = ctx.raw("hubspot", "contacts", ["id", "associatedcompanyid", "email", "firstname", "lastname", "jobtitle",
                                         "lifecyclestage", "phone", "createdate", "lastmodifieddate", "archived"])
    hs = hs[~as_bool(hs["archived"]).fillna(False)]
    parts.append(records("hubspot", hs, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "firstname", "last_name": "lastname", "phone": "phone",
        "title": "jobtitle", "lifecycle_stage": "lifecyclestage", "account_system": _const("hubspot", len(hs)),
        "account_id": "associatedcompanyid", "created_at": "createdate", "updated_at": "lastmodifieddate"}))
    ic = ctx.raw("intercom", "contacts", ["id", "role", "email", "name", "phone", "company_ids", "created_at",
                                          "updated_at"])
    parts_ = ic["name"].astype("string").str.strip().str.split(r"\s+", n=1, regex=True)
    parts.append(records("intercom", ic, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": parts_.str[0], "last_name": parts_.str[1],
        "full_name": "name", "phone": "phone", "lifecycle_stage": "role",
        "account_system": _const("intercom", len(ic)),
        "account_id": ic["company_ids"].astype("string").str.extract(r'"([^"]+)"', expand=False),
        "created_at": "created_at", "updated_at": "updated_at"}))
    parts.append(_factors_people(ctx))
    frame = concat(parts, COLUMNS)
    frame["created_at"] = as_timestamp(frame["created_at"])
    frame["updated_at"] = as_timestamp(frame["updated_at"])
    frame["email"] = normalise_email(frame["email"])
    full = (frame["first_name"].astype("string").fillna("") + " "
            + frame["last_name"].astype("string").fillna("")).str.strip()
    frame["full_name"] = frame["full_name"].astype("string").fillna(full.where(full.str.len() > 0))
    return frame


def _factors_people(ctx: TransformContext) -> pd.DataFrame:
    """Identified Factors visitors (``user_name`` an e-mail): one record per user id, at its account domain."""
    ev = ctx.raw("factors", "journey_events", ["user_id", "user_name", "is_anonymous", "account_domain",
                                               "timestamp"])
    ev = ev[~as_bool(ev["is_anonymous"]).fillna(True) & ev["user_id"].notna()]
    ev = ev[normalise_email(ev["user_name"]).notna()]
    seen = ev.sort_values(["user_id", "timestamp"]).groupby("user_id").agg(
        email=("user_name", "last"), account_domain=("account_domain", "last"), first=("timestamp", "min"),
        last=("timestamp", "max")).reset_index()
    return records("factors", seen, COLUMNS, {
        "system_id": "user_id", "email": "email", "account_system": _const("factors", len(seen)),
        "account_id": "account_domain", "created_at": "first", "updated_at": "last"})


def gong_contact_links(ctx: TransformContext) -> pd.DataFrame:
    """``(email, salesforce_id)`` of external Gong call parties tagged with a Salesforce Contact."""
    calls = ctx.raw("gong", "calls_extensive", ["parties"])["parties"].dropna().astype("string")
    if calls.empty:
        return pd.DataFrame({"email": pd.Series(dtype="string"), "salesforce_id": pd.Series(dtype="string")})
    pattern = (r'"emailAddress":\s*"(?P<email>[^"]*)"[^{}]*?"context":\s*\[\{"system":\s*"Salesforce",\s*'
               r'"objects":\s*\[\{"objectType":\s*"Contact",\s*"objectId":\s*"(?P<salesforce_id>[^"]+)"')
    found = calls.str.extractall(pattern).reset_index(drop=True)
    found["email"] = normalise_email(found["email"])
    return found.dropna().drop_duplicates()


def person_matches(frame: pd.DataFrame, account_key: pd.Series, gong: pd.DataFrame) -> Matches:
    matches = Matches()
    matches.add("email", star_edges(frame["email"]))
    if len(gong):
        rows = pd.DataFrame({"row": np.arange(len(frame)), "system": frame["system"].to_numpy(),
                             "system_id": frame["system_id"].astype("string").to_numpy(),
                             "email": frame["email"].to_numpy()})
        sf = gong.merge(rows[rows["system"] == "salesforce"], left_on="salesforce_id", right_on="system_id")
        by_mail = sf[["email_x", "row"]].merge(rows.dropna(subset=["email"]), left_on="email_x", right_on="email",
                                               suffixes=("_sf", "_m"))
        by_mail = by_mail[by_mail["row_sf"] != by_mail["row_m"]]
        matches.add("crm_id", (by_mail["row_sf"].to_numpy(dtype=np.int64), by_mail["row_m"].to_numpy(dtype=np.int64)))
    name = person_name_key(frame["first_name"], frame["last_name"], frame["full_name"])
    key = (account_key.astype("string") + "|" + name).reset_index(drop=True)
    matches.add("name_at_account", star_edges(unambiguous_names(key, frame["email"])))
    return matches


def unambiguous_names(key: pd.Series, email: pd.Series) -> pd.Series:
    """``key`` where all records holding it carry at most one work e-mail (free-mail addresses don't
    count: one person often has a work and a private address; two work addresses mean two people)."""
    work = email.reset_index(drop=True).where(email_domain(email.reset_index(drop=True)).notna())
    counts = pd.DataFrame({"key": key.reset_index(drop=True), "email": work}).groupby("key")["email"].nunique()
    return key.reset_index(drop=True).where(key.reset_index(drop=True).map(counts).fillna(0) <= 1)


def record_accounts(frame: pd.DataFrame, account_xref: pd.DataFrame, accounts: pd.DataFrame) -> pd.Series:
    """Each record's account key: the account its own record names, else its e-mail domain's account."""
    index = account_xref.drop_duplicates(["system", "system_id"]).set_index(["system", "system_id"])["account_key"]
    named = pd.MultiIndex.from_arrays([frame["account_system"].astype("string"),
                                       frame["account_id"].astype("string")])
    direct = pd.Series(index.reindex(named).to_numpy(), dtype="string")
    by_domain = accounts.dropna(subset=["domain"]).drop_duplicates("domain", keep=False)
    by_domain = by_domain.set_index("domain")["account_key"]
    via_email = email_domain(frame["email"].reset_index(drop=True)).map(by_domain).astype("string")
    return direct.fillna(via_email)


def resolve_people(frame: pd.DataFrame, account_key: pd.Series, gong: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True).assign(account_key=account_key.to_numpy())
    matches = person_matches(frame, frame["account_key"], gong)
    return resolve(frame, matches, prefix="per_", key="person_key", priority=PRIORITY, confidence=CONFIDENCE)


def people_tables(resolved: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``core.people`` and ``core.person_xref``."""
    resolved = resolved.copy()
    resolved["_recent"] = resolved["updated_at"].rank(ascending=False, method="first").fillna(len(resolved) + 1)
    attrs = ["account_key", "first_name", "last_name", "full_name", "email", "phone", "title", "lifecycle_stage"]
    table = survive(resolved, "person_key", attrs, order=("_rank", "_recent"))
    times = resolved.groupby("person_key").agg(created_at=("created_at", "min"), updated_at=("updated_at", "max"))
    table = table.join(times)
    for system in ("salesforce", "hubspot", "intercom"):
        table[f"{system}_id"] = system_ids(resolved, "person_key", system)
    table["source_systems"] = source_list(resolved, "person_key", PRIORITY)
    table = table.reset_index()
    for c in PEOPLE_COLUMNS:
        if c not in ("created_at", "updated_at"):
            table[c] = table[c].astype("string")
    return table[PEOPLE_COLUMNS], xref(resolved, "person_key")
