"""Companies (prospects and customers) from every system resolved into ``core.accounts``.

Rules, strongest first:

* ``crm_id``: a cross-system id names the record — a NetSuite customer invoiced against a Salesforce
  opportunity (``transaction.custbody_sf_opportunity`` → that opportunity's account), a HubSpot company's
  Salesforce sync property (``salesforceaccountid``, where the connector syncs it), an Intercom company
  whose ``company_id`` is a Salesforce, HubSpot or NetSuite id.
* ``domain``: the same registrable domain (website, URL, Factors account domain), free-mail excluded.
* ``name``: the same company-name key (case, punctuation and legal forms folded) for a record without a
  domain, where the key belongs to one cluster only.
* ``fuzzy_name``: for a record still alone and without a domain, a character-trigram similarity ≥ 0.9 to
  one cluster sharing its first name token (blocking keeps this linear).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities.cluster import star_edges
from sophia_lib.transforms.entities.fuzzy import best_matches
from sophia_lib.transforms.entities.normalise import FREE_MAIL_DOMAINS, company_name_key, normalise_domain
from sophia_lib.transforms.entities.records import as_bool, as_timestamp, concat, json_first, records
from sophia_lib.transforms.entities.resolve import (
    Matches,
    most_common,
    resolve,
    source_list,
    survive,
    system_ids,
    xref,
)

PRIORITY = ("salesforce", "hubspot", "netsuite", "intercom", "factors")
COLUMNS = ("system_id", "name", "website", "industry", "segment", "region", "country", "employee_count",
           "annual_revenue", "owner_system", "owner_id", "customer_since", "churned_at", "created_at",
           "updated_at", "link_system", "link_id")
CONFIDENCE = {"crm_id": 1.0, "domain": 0.98, "name": 0.9, "fuzzy_name": 0.8}
ACCOUNT_COLUMNS = ["account_key", "name", "domain", "industry", "segment", "region", "country", "employee_count",
                   "annual_revenue", "owner_employee_key", "is_customer", "customer_since", "churned_at",
                   "first_touch_at", "salesforce_id", "hubspot_id", "netsuite_id", "intercom_id", "source_systems",
                   "created_at", "updated_at"]
FUZZY_THRESHOLD = 0.9


def account_records(ctx: TransformContext) -> pd.DataFrame:
    parts = []
    sf = ctx.raw("salesforce", "account", [
        "id", "name", "website", "industry", "segment_c", "region_c", "billing_country", "number_of_employees",
        "annual_revenue", "owner_id", "customer_since_c", "churn_date_c", "created_date", "last_modified_date",
        "is_deleted"])
    sf = sf[~as_bool(sf["is_deleted"]).fillna(False)]
    parts.append(records("salesforce", sf, COLUMNS, {
        "system_id": "id", "name": "name", "website": "website", "industry": "industry", "segment": "segment_c",
        "region": "region_c", "country": "billing_country", "employee_count": "number_of_employees",
        "annual_revenue": "annual_revenue", "owner_system": pd.Series(["salesforce"] * len(sf), dtype="string"),
        "owner_id": "owner_id", "customer_since": as_timestamp(sf["customer_since_c"]),
        "churned_at": as_timestamp(sf["churn_date_c"]), "created_at": "created_date",
        "updated_at": "last_modified_date"}))
    hs = ctx.raw("hubspot", "companies", [
        "id", "name", "domain", "industry", "country", "numberofemployees", "annualrevenue", "hubspot_owner_id",
        "createdate", "hs_lastmodifieddate", "archived", "salesforceaccountid"])
    hs = hs[~as_bool(hs["archived"]).fillna(False)]
    parts.append(records("hubspot", hs, COLUMNS, {
        "system_id": "id", "name": "name", "website": "domain", "industry": enum_label(hs["industry"]),
        "country": "country",
        "employee_count": "numberofemployees", "annual_revenue": "annualrevenue",
        "owner_system": pd.Series(["hubspot"] * len(hs), dtype="string"), "owner_id": "hubspot_owner_id",
        "created_at": "createdate", "updated_at": "hs_lastmodifieddate",
        "link_system": hs["salesforceaccountid"].notna().map({True: "salesforce", False: None}),
        "link_id": "salesforceaccountid"}))
    ns = ctx.raw("netsuite", "customer", ["id", "companyname", "url", "isperson", "firstsaledate", "datecreated",
                                          "lastmodifieddate"])
    ns = ns[~as_bool(ns["isperson"]).fillna(False)]
    link = _netsuite_salesforce_links(ctx, ns["id"])
    parts.append(records("netsuite", ns, COLUMNS, {
        "system_id": "id", "name": "companyname", "website": "url",
        "customer_since": as_timestamp(ns["firstsaledate"]), "created_at": "datecreated",
        "updated_at": "lastmodifieddate", "link_system": link.notna().map({True: "salesforce", False: None}),
        "link_id": link}))
    ic = ctx.raw("intercom", "companies", ["id", "company_id", "name", "website", "industry", "size",
                                           "custom_attributes", "remote_created_at", "created_at", "updated_at"])
    parts.append(records("intercom", ic, COLUMNS, {
        "system_id": "id", "name": "name", "website": "website", "industry": "industry",
        "segment": json_first(ic["custom_attributes"], "segment"),
        "region": json_first(ic["custom_attributes"], "region"), "employee_count": "size",
        "created_at": ic["remote_created_at"].fillna(ic["created_at"]), "updated_at": "updated_at",
        "link_system": pd.Series(["any"] * len(ic), dtype="string"), "link_id": "company_id"}))
    parts.append(_factors_accounts(ctx))
    frame = concat(parts, COLUMNS)
    frame["domain"] = normalise_domain(frame["website"])
    frame["domain"] = frame["domain"].where(~frame["domain"].isin(FREE_MAIL_DOMAINS))
    frame["name_key"] = company_name_key(frame["name"])
    for c in ["customer_since", "churned_at", "created_at", "updated_at"]:
        frame[c] = as_timestamp(frame[c])
    return frame


def enum_label(values: pd.Series) -> pd.Series:
    """HubSpot's enumeration values as labels: ``PROFESSIONAL_SERVICES`` → ``Professional Services``
    (words of up to two letters stay upper-case: ``IT_SERVICES`` → ``IT Services``)."""
    s = values.astype("string")
    enum = s.str.fullmatch(r"[A-Z0-9_]+").fillna(False).astype(bool)
    words = s.str.replace("_", " ", regex=False).str.title()
    words = words.str.replace(r"\b([A-Za-z]{1,2})\b", lambda m: m.group(1).upper(), regex=True)
    return s.where(~enum, words)


def _netsuite_salesforce_links(ctx: TransformContext, customer_ids: pd.Series) -> pd.Series:
    """The Salesforce account of each NetSuite customer, through the opportunity its invoices name (the
    most frequent one where invoices disagree)."""
    tx = ctx.raw("netsuite", "transaction", ["entity", "custbody_sf_opportunity"]).dropna()
    opp = ctx.raw("salesforce", "opportunity", ["id", "account_id"]).dropna()
    joined = tx.merge(opp, left_on="custbody_sf_opportunity", right_on="id")
    if joined.empty:
        return pd.Series([None] * len(customer_ids), dtype="string")
    counts = joined.groupby(["entity", "account_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["entity", "n", "account_id"], ascending=[True, False, True])
    best = counts.drop_duplicates("entity").set_index("entity")["account_id"]
    return customer_ids.reset_index(drop=True).map(best).astype("string")


def _factors_accounts(ctx: TransformContext) -> pd.DataFrame:
    """One record per account domain Factors reports, first and last seen as its created/updated times."""
    events = ctx.raw("factors", "journey_events", ["account_domain", "timestamp"]).dropna(subset=["account_domain"])
    seen = events.groupby("account_domain")["timestamp"].agg(["min", "max"]).reset_index()
    return records("factors", seen, COLUMNS, {"system_id": "account_domain", "website": "account_domain",
                                              "created_at": "min", "updated_at": "max"})


def account_matches(frame: pd.DataFrame) -> Matches:
    matches = Matches()
    _crm_links(frame, matches)
    matches.add("domain", star_edges(frame["domain"]))
    no_domain = frame["domain"].isna()
    # a name key counts only where every record holding it has no domain or the same one
    domains_per_name = frame.groupby("name_key")["domain"].nunique()
    shared = frame["name_key"].map(domains_per_name).fillna(0) <= 1
    by_name = frame["name_key"].where(shared)
    edges = star_edges(by_name)
    matches.add("name", edges)
    linked = np.zeros(len(frame), dtype=bool)
    for a, b in [e for rule in matches.edges.values() for e in rule]:
        linked[a] = True
        linked[b] = True
    alone = no_domain.to_numpy() & ~linked & frame["name_key"].notna().to_numpy()
    if alone.any():
        a, b = best_matches(frame["name_key"], alone, ~alone & frame["name_key"].notna().to_numpy(),
                            FUZZY_THRESHOLD)
        matches.add("fuzzy_name", (a, b))
    return matches


def _crm_links(frame: pd.DataFrame, matches: Matches) -> None:
    """Edges from records that name another system's id (``link_system``/``link_id``)."""
    target = pd.DataFrame({"row": np.arange(len(frame)), "system": frame["system"].to_numpy(),
                           "sid": frame["system_id"].astype("string").to_numpy()})
    sf = target["system"] == "salesforce"
    # Salesforce ids: case-sensitive 15-character ids are the first 15 of the 18-character ones
    target.loc[sf, "sid15"] = target.loc[sf, "sid"].str[:15]
    links = pd.DataFrame({"row": np.arange(len(frame)), "link_system": frame["link_system"].to_numpy(),
                          "link_id": frame["link_id"].astype("string").to_numpy()}).dropna()
    if links.empty:
        return
    specific = links[links["link_system"] != "any"]
    hit = specific.merge(target, left_on=["link_system", "link_id"], right_on=["system", "sid"])
    by15 = specific.assign(l15=specific["link_id"].str[:15]).merge(
        target[sf], left_on=["link_system", "l15"], right_on=["system", "sid15"])
    anywhere = links[links["link_system"] == "any"].merge(target, left_on="link_id", right_on="sid")
    pairs = pd.concat([hit[["row_x", "row_y"]], by15[["row_x", "row_y"]], anywhere[["row_x", "row_y"]]])
    pairs = pairs[pairs["row_x"] != pairs["row_y"]].drop_duplicates()
    matches.add("crm_id", (pairs["row_y"].to_numpy(dtype=np.int64), pairs["row_x"].to_numpy(dtype=np.int64)))


def resolve_accounts(frame: pd.DataFrame) -> pd.DataFrame:
    return resolve(frame, account_matches(frame), prefix="acct_", key="account_key", priority=PRIORITY,
                   confidence=CONFIDENCE)


def account_tables(resolved: pd.DataFrame, employee_xref: pd.DataFrame,
                   as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``core.accounts`` and ``core.account_xref``."""
    owner = employee_xref.set_index(["system", "system_id"])["employee_key"]
    resolved = resolved.copy()
    owners = pd.MultiIndex.from_arrays([resolved["owner_system"].astype("string"),
                                        resolved["owner_id"].astype("string")])
    resolved["owner_employee_key"] = owner.reindex(owners).to_numpy()
    resolved["_recent"] = resolved["updated_at"].rank(ascending=False, method="first").fillna(len(resolved) + 1)
    attrs = ["name", "domain", "industry", "segment", "region", "country", "employee_count", "annual_revenue",
             "owner_employee_key", "customer_since", "churned_at"]
    table = survive(resolved, "account_key", attrs, order=("_rank", "_recent"))
    table["name"] = most_common(resolved, "account_key", "name").reindex(table.index)
    times = resolved.groupby("account_key").agg(created_at=("created_at", "min"), updated_at=("updated_at", "max"))
    table = table.join(times)
    table["first_touch_at"] = table["created_at"]
    table["is_customer"] = table["customer_since"].notna() & (
        table["churned_at"].isna() | (table["churned_at"] > as_of))
    for system in ("salesforce", "hubspot", "netsuite", "intercom"):
        table[f"{system}_id"] = system_ids(resolved, "account_key", system)
    table["source_systems"] = source_list(resolved, "account_key", PRIORITY)
    table = table.reset_index()
    return _typed(table)[ACCOUNT_COLUMNS], xref(resolved, "account_key")


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    for c in ["account_key", "name", "domain", "industry", "segment", "region", "country", "owner_employee_key",
              "salesforce_id", "hubspot_id", "netsuite_id", "intercom_id", "source_systems"]:
        table[c] = table[c].astype("string")
    table["employee_count"] = pd.to_numeric(table["employee_count"], errors="coerce").astype("Int64")
    table["annual_revenue"] = pd.to_numeric(table["annual_revenue"], errors="coerce").astype("float64")
    table["is_customer"] = table["is_customer"].astype("boolean")
    for c in ["customer_since", "churned_at", "first_touch_at", "created_at", "updated_at"]:
        table[c] = as_timestamp(table[c])
    return table
