"""The ``entities`` transform step: employees, then accounts (whose owners are employees), then people
(who belong to accounts)."""

from __future__ import annotations

import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities.accounts import account_records, account_tables, resolve_accounts
from sophia_lib.transforms.entities.employees import employee_records, employee_tables, resolve_employees
from sophia_lib.transforms.entities.people import (
    gong_contact_links,
    people_tables,
    person_records,
    record_accounts,
    resolve_people,
)


def entities(ctx: TransformContext) -> None:
    """Write core.employees, core.employee_xref, core.accounts, core.account_xref, core.people and
    core.person_xref."""
    employees, employee_xref = employee_tables(resolve_employees(employee_records(ctx)))
    ctx.write("core", "employees", employees)
    ctx.write("core", "employee_xref", employee_xref)
    as_of = pd.Timestamp(ctx.as_of).tz_convert("UTC") if pd.Timestamp(ctx.as_of).tzinfo else \
        pd.Timestamp(ctx.as_of).tz_localize("UTC")
    accounts, account_xref = account_tables(resolve_accounts(account_records(ctx)), employee_xref, as_of)
    ctx.write("core", "accounts", accounts)
    ctx.write("core", "account_xref", account_xref)
    people = person_records(ctx)
    people, person_xref = people_tables(resolve_people(people, record_accounts(people, account_xref, accounts),
                                                      gong_contact_links(ctx)))
    ctx.write("core", "people", people)
    ctx.write("core", "person_xref", person_xref)
