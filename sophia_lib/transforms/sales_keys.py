"""Source ids → the entity step's keys (accounts, people, employees), and the sales tables' own keys.

A key is a stable string built from the source id (``opp_sf_0065e…``), never a row number, so a row keeps
its key across refreshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sophia_lib.transforms.context import TransformContext


def keyed(prefix: str, ids: pd.Series) -> pd.Series:
    """``prefix`` + the source id (``<NA>`` stays ``<NA>``)."""
    return (prefix + ids.astype("string")).astype("string")


def slug(values: pd.Series) -> pd.Series:
    """``New Business`` → ``new_business``."""
    return values.astype("string").str.strip().str.lower().str.replace(r"[^a-z0-9]+", "_", regex=True)


def by_id(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` indexed by ``column`` (first row of each value), for ``Series.map`` lookups."""
    return frame.drop_duplicates(column).set_index(column)


@dataclass
class Xrefs:
    """The entity step's cross-references, as lookups from (system, source id) to a key."""

    accounts: pd.DataFrame
    people: pd.DataFrame
    employees: pd.DataFrame
    account_domains: pd.Series
    person_emails: pd.Series

    @classmethod
    def from_context(cls, ctx: TransformContext) -> Xrefs:
        accounts = ctx.table("core.accounts")
        people = ctx.table("core.people")
        domains = accounts[accounts["domain"].notna()].drop_duplicates("domain").set_index("domain")["account_key"]
        emails = people[people["email"].notna()].drop_duplicates("email").set_index("email")["person_key"]
        return cls(_index(ctx.table("core.account_xref"), "account_key"),
                   _index(ctx.table("core.person_xref"), "person_key"),
                   _index(ctx.table("core.employee_xref"), "employee_key"), domains, emails)

    def account(self, ids: pd.Series, system: str) -> pd.Series:
        return _lookup(self.accounts, ids, system)

    def person(self, ids: pd.Series, system: str) -> pd.Series:
        return _lookup(self.people, ids, system)

    def employee(self, ids: pd.Series, system: str) -> pd.Series:
        return _lookup(self.employees, ids, system)

    def account_by_domain(self, domains: pd.Series) -> pd.Series:
        return domains.astype("string").map(self.account_domains).astype("string")

    def person_by_email(self, emails: pd.Series) -> pd.Series:
        return emails.astype("string").map(self.person_emails).astype("string")


def _index(xref: pd.DataFrame, key: str) -> pd.DataFrame:
    """(system, system_id) → key, one key per source id (the first, if a source id were listed twice)."""
    x = xref[["system", "system_id", key]].dropna(subset=["system_id", key])
    x = x.assign(system=x["system"].astype("string"), system_id=x["system_id"].astype("string"))
    return x.drop_duplicates(["system", "system_id"]).rename(columns={key: "key"})


def _lookup(index: pd.DataFrame, ids: pd.Series, system: str) -> pd.Series:
    table = index.loc[index["system"] == system].set_index("system_id")["key"]
    return ids.astype("string").map(table).astype("string")


def lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """``keys.map(values)`` for a uniquely indexed ``values``, keeping its dtype even when it is empty
    (pandas cannot map through an empty datetime Series)."""
    out = values.reindex(pd.Index(keys.to_numpy(dtype=object, na_value=None)))
    out.index = keys.index
    return out


def utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, errors="coerce")


def day(values: pd.Series) -> pd.Series:
    """Dates as midnight timestamps without a zone (Arrow ``timestamp``; a calendar day, not an instant)."""
    stamps = pd.to_datetime(values, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.dt.normalize()
