"""Sophia's four roles and how IdP groups map to them (``hub.group_roles`` in sophia.yaml).

The hub (scopes) and the query service (data policy) both decide a person's role here, from the
groups JupyterHub holds for them, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sophia_lib.config.typing import TRole

ROLES: tuple[TRole, ...] = ("super_user", "developer", "analyst", "executive_viewer")
"""Most privileged first: a person in several Sophia groups gets the first role of theirs in this order."""


def role_for_groups(groups: Iterable[str], group_roles: Mapping[str, TRole]) -> TRole | None:
    """The role a member of ``groups`` has, or None when no group of theirs is a Sophia group."""
    theirs = {group_roles[g] for g in groups if g in group_roles}
    return next((role for role in ROLES if role in theirs), None)


def groups_of_role(role: TRole, group_roles: Mapping[str, TRole]) -> list[str]:
    """The IdP groups that grant ``role``."""
    return sorted(g for g, r in group_roles.items() if r == role)
