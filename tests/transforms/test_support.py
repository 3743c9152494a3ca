"""core.conversations and marts.support from Intercom, checked against the sandbox company's conversations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sophia_lib.transforms.support import first_of_list, joined_list
from tests.transforms.test_finance import Built, built_at_company_now, entity_of


@pytest.fixture(scope="module")
def built(transformed: Any) -> Built:
    return built_at_company_now(transformed)


@pytest.fixture(scope="module")
def matched(built: Built) -> pd.DataFrame:
    ctx, company = built
    conv = ctx.table("core.conversations")
    truth = company.live("conversations")
    m = conv.merge(truth, left_on="intercom_id", right_on="system_id", suffixes=("", "_truth"))
    assert len(m) == len(conv) == len(truth)
    return m


def test_each_conversation_maps_to_its_account_person_and_assignee(built: Built, matched: pd.DataFrame) -> None:
    ctx, company = built
    m = matched
    assert m["conversation_key"].is_unique
    right_account = (entity_of(ctx, company, m["account_key"]) == m["account_id"]).mean()
    presence = company.tables["presence"]
    person = presence[(presence["entity"] == "person") & (presence["system"] == "intercom")]
    person_of_contact = person.drop_duplicates("system_id").set_index("system_id")["entity_id"]
    xref = ctx.table("core.person_xref")
    intercom = xref[xref["system"] == "intercom"].drop_duplicates("person_key").set_index("person_key")["system_id"]
    right_person = (m["person_key"].map(intercom).map(person_of_contact) == m["person_id"])[m["person_key"].notna()]
    emp = ctx.table("core.employee_xref")
    emp = emp[emp["system"] == "intercom"].drop_duplicates("employee_key").set_index("employee_key")["system_id"]
    staff = presence[(presence["entity"] == "employee") & (presence["system"] == "intercom")]
    admin_of = staff.drop_duplicates("system_id").set_index("system_id")["entity_id"]
    right_assignee = (m["assignee_employee_key"].map(emp).map(admin_of) == m["assignee_id"]).mean()
    print(f"conversations → account {right_account:.3f}, person {right_person.mean():.3f} "
          f"(of {len(right_person)} with a person), assignee {right_assignee:.3f}")
    assert right_account >= 0.98
    assert right_person.mean() >= 0.97 and len(right_person) >= 0.9 * len(m)
    assert right_assignee >= 0.98


def test_conversation_facts_equal_truth(matched: pd.DataFrame) -> None:
    m = matched
    assert (m["state"] == m["state_truth"]).all()
    assert (m["priority"] == m["priority_truth"]).all()
    assert (m["first_response_s"].fillna(-1) == m["first_response_s_truth"].fillna(-1)).all()
    closed = m["closed_at_truth"].notna()
    assert (m["closed_at"].notna() == closed).all()
    assert ((m.loc[closed, "closed_at"] - m.loc[closed, "closed_at_truth"]).abs() < pd.Timedelta(seconds=1)).all()
    assert (m["csat_rating"].fillna(-1) == m["csat_rating_truth"].fillna(-1)).all()
    assert (m["tags"].fillna("") == m["tags_truth"].map(",".join)).all()
    assert (m["time_to_close_s"].dropna() >= 0).all()


def test_support_mart_counts_and_csat_equal_truth(built: Built) -> None:
    ctx, company = built
    mart = ctx.table("marts.support")
    truth = company.live("conversations")
    per_day = truth.groupby(truth["created_at"].dt.tz_localize(None).dt.floor("D")).size()
    ours = mart.groupby("date")["conversations"].sum()
    assert ours.reindex(per_day.index).tolist() == per_day.tolist()
    rated = truth[(truth["state"] == "closed") & truth["csat_rating"].notna()]["csat_rating"].astype(float)
    assert mart["csat_responses"].sum() == len(rated)
    assert np.isclose(mart["csat_sum"].sum() / mart["csat_responses"].sum(), rated.mean())
    assert np.isclose(mart["csat_satisfied"].sum() / mart["csat_responses"].sum(), (rated >= 4).mean())
    answered = truth["first_response_s"].dropna().astype(float)
    assert np.isclose(mart["first_response_s_sum"].sum() / mart["first_responses"].sum(), answered.mean())
    assert set(mart["priority"]) <= {"priority", "not_priority", "unknown"}
    assert (mart["week"].dt.day_of_week == 0).all()


def test_list_columns_parse() -> None:
    raw = pd.Series(['["a1", "b2"]', "[]", None, '["x"]'], dtype="string")
    assert first_of_list(raw).tolist() == ["a1", pd.NA, pd.NA, "x"]
    assert joined_list(raw).tolist() == ["a1,b2", pd.NA, pd.NA, "x"]
