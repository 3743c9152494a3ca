"""policy.yaml: the shipped policy loads; bad or unsafe policies are refused naming the key and the fix."""

from __future__ import annotations

import pytest
import yaml

from sophia_lib.query.errors import ForbiddenError, PolicyError
from sophia_lib.query.policy import DEFAULT_POLICY, load_policy, parse_policy

BASE = yaml.safe_load(DEFAULT_POLICY.read_text())


def _with(role: str, **rules) -> dict:
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["roles"][role] = {**data["roles"][role], **rules}
    return data


def test_shipped_policy_matches_the_roles_described_in_the_issue() -> None:
    policy = load_policy()
    analyst, viewer, su = (policy.scope(r, []) for r in ("analyst", "executive_viewer", "super_user"))
    assert analyst.allows("core", "people") and analyst.allows("marts", "x") and not analyst.allows("raw_x", "y")
    assert viewer.allows("marts", "x") and not viewer.allows("core", "accounts")
    assert su.allows("raw_hubspot", "contacts")
    people = ["person_key", "email", "phone", "first_name", "last_name", "full_name", "title"]
    masks = analyst.table_rules("core", "people", people, "p").masks
    assert set(masks) == {"email", "phone", "first_name", "last_name", "full_name"}
    assert masks["email"] == "hash"
    assert not analyst.table_rules("core", "employees", ["email", "full_name"], "p").masks
    assert set(viewer.table_rules("marts", "x", ["contact_email", "amount"], "p").masks) == {"contact_email"}
    assert not su.table_rules("core", "people", people, "p").masks


def test_attributes_come_from_group_names_and_bind_as_parameters() -> None:
    scope = load_policy().scope("executive_viewer", ["sophia-executives", "sophia-region-emea", "sophia-region-apac"])
    assert scope.attributes == {"region": ("apac", "emea")}
    rules = scope.table_rules("marts", "pipeline", ["region", "amount"], "t_")
    assert sorted(rules.params.values()) == ["apac", "emea"]
    assert "emea" not in rules.predicates[0].sql()  # bound, never formatted into the SQL
    assert scope.key != load_policy().scope("executive_viewer", ["sophia-executives"]).key


def test_missing_column_denies_by_default() -> None:
    data = _with("analyst", row_filters=[{"tables": ["marts.*"], "predicate": "team = :team"}])
    scope = parse_policy(data).scope("analyst", ["sophia-team-a"])
    with pytest.raises(ForbiddenError, match="needs column"):
        scope.table_rules("marts", "no_team_here", ["amount"], "t_")
    no_attribute = parse_policy(data).scope("analyst", [])
    assert no_attribute.table_rules("marts", "t", ["team"], "t_").predicates[0].sql() == "FALSE"


@pytest.mark.parametrize(("data", "needle"), [
    (_with("analyst", datasets=["raw_*.*"]), "only super_user may read"),
    (_with("developer", datasets=["*.*"]), "only super_user may read"),
    (_with("analyst", datasets=["people"]), "must be schema.table"),
    (_with("analyst", masks=[{"columns": ["email"], "style": "scramble"}]), "roles.analyst.masks.0.style"),
    (_with("analyst", row_filters=[{"tables": ["marts.*"], "predicate": "region = :country"}]), ":country"),
    (_with("analyst", row_filters=[{"tables": ["marts.*"], "predicate": "select 1"}]), "one condition"),
    (_with("analyst", row_filters=[{"tables": ["marts.*"], "predicate": "region = ("}]), "not valid SQL"),
    (_with("analyst", datasets=["core.*"], typo=1), "typo"),
    ({"roles": {"analyst": {"datasets": ["core.*"]}}}, "no entry for role(s) super_user"),
    ({"roles": {**BASE["roles"], "viewer": {}}}, "roles.viewer"),
    ([1, 2], "must be a mapping"),
])
def test_invalid_policies_are_refused_with_the_key_and_fix(data, needle: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert needle in str(caught.value)


def test_unreadable_or_malformed_file(tmp_path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "policy.yaml"
    bad.write_text("roles:\n  analyst: [\n")
    with pytest.raises(PolicyError, match="not valid YAML at line"):
        load_policy(bad)
