"""Entity resolution scored against the sandbox's ground truth (``company.tables["presence"]``).

Pairwise over source records: precision = correct pairs / pairs the resolution made, recall = correct
pairs / true pairs. Thresholds from the issue: accounts and people ≥ 0.99 precision, ≥ 0.97 recall.
"""

from __future__ import annotations

import pandas as pd
import pytest

from sophia_lib.transforms.entities.scoring import Score, pairwise_score
from sophia_lib.warehouse import open_warehouse
from tests.transforms.conftest import Transformed

ENTITIES = {"account": ("account_xref", "account_key"), "person": ("person_xref", "person_key"),
            "employee": ("employee_xref", "employee_key")}
# NetSuite syncs no staff table at all, so its staff records cannot be linked by anything in the raw data:
# employees are scored on every system, with a floor, and on the systems that carry names or e-mails (Notion
# and Looker through their users streams), where the bar is the accounts' and people's.
EMPLOYEE_SYSTEMS_WITH_IDENTITY = {"salesforce", "hubspot", "gong", "slack", "intercom", "asana", "linear", "notion",
                                  "looker"}


def truth(company, entity: str) -> pd.DataFrame:
    """Live presence rows of ``entity``, with each record's id as the connector stores it. Factors' id is
    the account domain it reports: the presence row's shown domain, lowercased, scheme and ``www.``
    stripped (what the Factors API does), so no resolution logic enters the truth."""
    p = company.tables["presence"]
    p = p[(p["entity"] == entity) & p["deleted_at"].isna()].copy()
    factors = p["system"] == "factors"
    shown = p.loc[factors, "domain"].fillna(p.loc[factors, "system_id"]).str.strip().str.lower()
    shown = shown.str.replace(r"^[a-z]+://", "", regex=True).str.split("/").str[0].str.removeprefix("www.")
    p.loc[factors, "system_id"] = shown
    return p[["system", "system_id", "entity_id"]]


def scores(transformed: Transformed) -> dict[str, tuple[Score, dict[str, Score]]]:
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as r:
            xrefs = {e: r.query(f"select * from core.{t}").to_pandas() for e, (t, _) in ENTITIES.items()}
    finally:
        wh.close()
    out = {}
    for entity, (_, key) in ENTITIES.items():
        t = truth(transformed.company, entity)
        per_system = {s: pairwise_score(t[t["system"] == s], xrefs[entity], key) for s in sorted(t["system"].unique())}
        out[entity] = (pairwise_score(t, xrefs[entity], key), per_system)
    return out


@pytest.fixture(scope="module")
def figures(transformed: Transformed) -> dict[str, tuple[Score, dict[str, Score]]]:
    found = scores(transformed)
    for entity, (overall, per_system) in found.items():
        print(f"\n{entity}: {overall}")
        for system, score in per_system.items():
            print(f"  within {system}: {score}")
    return found


def test_accounts_meet_the_bar(figures) -> None:
    overall, _ = figures["account"]
    assert overall.records_found == overall.records, overall
    assert overall.precision >= 0.99 and overall.recall >= 0.97, overall


def test_people_meet_the_bar(figures) -> None:
    overall, per_system = figures["person"]
    assert overall.records_found == overall.records, overall
    assert overall.precision >= 0.99 and overall.recall >= 0.97, overall
    # duplicates inside one system are merged too
    for system, score in per_system.items():
        assert score.true_pairs > 0 and score.recall >= 0.97, (system, score)


def test_employees(figures, transformed: Transformed) -> None:
    overall, _ = figures["employee"]
    assert overall.precision >= 0.99, overall
    assert overall.recall >= 0.6, overall
    t = truth(transformed.company, "employee")
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as r:
            xref = r.query("select * from core.employee_xref").to_pandas()
    finally:
        wh.close()
    named = pairwise_score(t[t["system"].isin(EMPLOYEE_SYSTEMS_WITH_IDENTITY)], xref, "employee_key")
    print(f"\nemployee (systems with names or e-mails): {named}")
    assert named.precision >= 0.99 and named.recall >= 0.97, named
