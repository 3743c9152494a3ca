"""Internal staff: the users, owners and admins of every system resolved into ``core.employees``.

Rules, strongest first: the same normalised e-mail (``email``); the same normalised full name where
that name carries at most one work e-mail across systems (``name``). Notion and Looker users come from their
``users`` tables (Notion bots are not staff and are left out); an author or owner id missing from those tables
(a removed member, or a workspace that does not share e-mails) becomes an employee of its own (``single_source``).
"""

from __future__ import annotations

import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities.cluster import star_edges
from sophia_lib.transforms.entities.normalise import normalise_email, person_name_key
from sophia_lib.transforms.entities.people import unambiguous_names
from sophia_lib.transforms.entities.records import as_bool, concat, json_first, records
from sophia_lib.transforms.entities.resolve import Matches, resolve, source_list, survive, xref

PRIORITY = ("salesforce", "hubspot", "gong", "slack", "intercom", "asana", "linear", "netsuite", "notion",
            "looker")
COLUMNS = ("system_id", "email", "first_name", "last_name", "full_name", "title", "department", "team",
           "region", "is_active")
CONFIDENCE = {"email": 0.99, "name": 0.9}
EMPLOYEE_COLUMNS = ["employee_key", "full_name", "email", "title", "department", "team", "region", "is_active",
                    "source_systems"]
TZ_REGIONS = {"America": "NA", "US": "NA", "Canada": "NA", "Europe": "EMEA", "Africa": "EMEA", "Asia": "APAC",
              "Australia": "APAC", "Pacific": "APAC"}


def _split_name(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = full.astype("string").str.strip().str.split(r"\s+", n=1, regex=True)
    return parts.str[0], parts.str[1]


def employee_records(ctx: TransformContext) -> pd.DataFrame:
    """Every staff record of every system, in the shape of :data:`COLUMNS`."""
    parts = []
    sf = ctx.raw("salesforce", "user", ["id", "email", "first_name", "last_name", "name", "title", "department",
                                        "division", "is_active", "user_type"])
    sf = sf[sf["user_type"].isna() | (sf["user_type"] == "Standard")]
    parts.append(records("salesforce", sf, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "full_name": "name", "title": "title", "department": "department", "team": "division",
        "is_active": as_bool(sf["is_active"])}))
    hs = ctx.raw("hubspot", "owners", ["id", "email", "first_name", "last_name", "type", "archived", "teams"])
    hs = hs[hs["type"].isna() | (hs["type"] == "PERSON")]
    parts.append(records("hubspot", hs, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "team": json_first(hs["teams"], "name"), "is_active": ~as_bool(hs["archived"]).fillna(False)}))
    gong = ctx.raw("gong", "users", ["id", "email_address", "first_name", "last_name", "title", "active"])
    parts.append(records("gong", gong, COLUMNS, {
        "system_id": "id", "email": "email_address", "first_name": "first_name", "last_name": "last_name",
        "title": "title", "is_active": as_bool(gong["active"])}))
    slack = ctx.raw("slack", "users", ["id", "real_name", "email", "title", "first_name", "last_name", "deleted",
                                       "is_bot", "tz"])
    slack = slack[~as_bool(slack["is_bot"]).fillna(False) & (slack["id"] != "USLACKBOT")]
    region = slack["tz"].astype("string").str.split("/").str[0].map(TZ_REGIONS)
    parts.append(records("slack", slack, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "full_name": "real_name", "title": "title", "region": region,
        "is_active": ~as_bool(slack["deleted"]).fillna(False)}))
    ic = ctx.raw("intercom", "admins", ["id", "name", "email", "job_title"])
    first, last = _split_name(ic["name"])
    parts.append(records("intercom", ic, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": first, "last_name": last, "full_name": "name",
        "title": "job_title"}))
    asana = ctx.raw("asana", "users", ["gid", "name", "email"])
    first, last = _split_name(asana["name"])
    parts.append(records("asana", asana, COLUMNS, {
        "system_id": "gid", "email": "email", "first_name": first, "last_name": last, "full_name": "name"}))
    linear = ctx.raw("linear", "users", ["id", "name", "email", "active"])
    first, last = _split_name(linear["name"])
    parts.append(records("linear", linear, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": first, "last_name": last, "full_name": "name",
        "is_active": as_bool(linear["active"])}))
    ns = ctx.raw("netsuite", "employee", ["id", "firstname", "lastname", "email", "title", "isinactive"])
    parts.append(records("netsuite", ns, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "firstname", "last_name": "lastname", "title": "title",
        "is_active": ~as_bool(ns["isinactive"]).fillna(False)}))
    parts += _id_only_users(ctx)
    frame = concat(parts, COLUMNS)
    frame["email"] = normalise_email(frame["email"])
    full = (frame["first_name"].astype("string").fillna("") + " "
            + frame["last_name"].astype("string").fillna("")).str.strip()
    frame["full_name"] = frame["full_name"].astype("string").fillna(full.where(full.str.len() > 0))
    return frame


def _id_only_users(ctx: TransformContext) -> list[pd.DataFrame]:
    """Notion and Looker users known by id only (page authors/editors, Look owners), unless a users table
    with names and e-mails exists for them."""
    out = []
    notion_users = ctx.raw("notion", "users", ["id", "type", "name", "email"])
    bots = set(notion_users.loc[notion_users["type"] == "bot", "id"].dropna())
    notion_users = notion_users[notion_users["type"] != "bot"]
    first, last = _split_name(notion_users["name"])
    out.append(records("notion", notion_users, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": first, "last_name": last, "full_name": "name"}))
    pages = ctx.raw("notion", "pages", ["created_by_id", "last_edited_by_id"])
    dbs = ctx.raw("notion", "databases", ["created_by_id", "last_edited_by_id"])
    ids = pd.concat([pages["created_by_id"], pages["last_edited_by_id"], dbs["created_by_id"],
                     dbs["last_edited_by_id"]], ignore_index=True).dropna().drop_duplicates()
    ids = ids[~ids.isin(set(notion_users["id"].dropna()) | bots)]
    out.append(records("notion", pd.DataFrame({"id": ids}), COLUMNS, {"system_id": "id"}))
    looker_users = ctx.raw("looker", "users", ["id", "first_name", "last_name", "email", "is_disabled"])
    out.append(records("looker", looker_users, COLUMNS, {
        "system_id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name",
        "is_active": ~as_bool(looker_users["is_disabled"]).fillna(False)}))
    looks = ctx.raw("looker", "looks", ["user_id"])
    ids = looks["user_id"].dropna().drop_duplicates()
    ids = ids[~ids.isin(set(looker_users["id"].dropna()))]
    out.append(records("looker", pd.DataFrame({"id": ids}), COLUMNS, {"system_id": "id"}))
    return out


def resolve_employees(frame: pd.DataFrame) -> pd.DataFrame:
    """Records with ``employee_key``, ``match_rule`` and ``confidence``."""
    matches = Matches()
    matches.add("email", star_edges(frame["email"]))
    name = person_name_key(None, None, frame["full_name"])
    matches.add("name", star_edges(unambiguous_names(name, frame["email"])))
    return resolve(frame, matches, prefix="emp_", key="employee_key", priority=PRIORITY, confidence=CONFIDENCE)


def employee_tables(resolved: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``core.employees`` and ``core.employee_xref``."""
    attrs = ["full_name", "email", "title", "department", "team", "region", "is_active"]
    table = survive(resolved, "employee_key", attrs)
    table["source_systems"] = source_list(resolved, "employee_key", PRIORITY)
    table = table.reset_index()
    for c in ["employee_key", "full_name", "email", "title", "department", "team", "region", "source_systems"]:
        table[c] = table[c].astype("string")
    table["is_active"] = table["is_active"].astype("boolean")
    return table[EMPLOYEE_COLUMNS], xref(resolved, "employee_key", with_confidence=False)
