"""Policy scopes: everyone with the same role and policy attributes (e.g. region) sees the same data,
so a dashboard is rendered once per scope, not once per viewer.

A scope is declared to the query service as a list of hub groups (one group granting the role, plus
the attribute groups such as ``sophia-region-emea``); the service derives role and row filters from
them exactly as it does for a person in those groups.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.roles import groups_of_role, role_for_groups


@dataclass(frozen=True)
class Scope:
    key: str
    role: TRole
    groups: tuple[str, ...]

    @property
    def slug(self) -> str:
        """A folder name: readable and unique (``executive_viewer-region-emea-1a2b3c``)."""
        readable = re.sub(r"[^a-z0-9]+", "-", self.key.lower()).strip("-")[:60]
        return f"{readable}-{hashlib.sha256(self.key.encode()).hexdigest()[:6]}"

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "role": self.role, "groups": list(self.groups)}


def _policy(config: SophiaConfig):  # -> sophia_lib.query.policy.Policy
    from sophia_lib.query.policy import load_policy

    return load_policy(config.query.policy)


def scope_for(config: SophiaConfig, groups: Iterable[str]) -> Scope | None:
    """The scope of a person in ``groups``; None when no group of theirs is a Sophia group."""
    groups = sorted(set(groups))
    role = role_for_groups(groups, config.hub.group_roles)
    if role is None:
        return None
    policy = _policy(config)
    prefixes = [a.group_prefix for a in policy.attributes.values()]
    attribute_groups = sorted(g for g in groups if any(g.startswith(p) and len(g) > len(p) for p in prefixes))
    role_group = groups_of_role(role, config.hub.group_roles)[0]
    declared = tuple([role_group, *attribute_groups])
    return Scope(policy.scope(role, declared).key, role, declared)


def audience_scopes(config: SophiaConfig, audience: Iterable[str], seen: Iterable[Iterable[str]] = ()) -> list[Scope]:
    """The scopes to render a dashboard for: each audience group on its own, and every scope seen among
    its viewers (from their groups) that belongs to the audience (super users see every dashboard)."""
    audience = set(audience)
    found: dict[str, Scope] = {}
    for group in sorted(audience):
        scope = scope_for(config, [group])
        if scope is not None:
            found.setdefault(scope.key, scope)
    for groups in seen:
        groups = list(groups)
        scope = scope_for(config, groups)
        if scope is not None and (scope.role == "super_user" or audience & set(groups)):
            found.setdefault(scope.key, scope)
    return sorted(found.values(), key=lambda s: s.key)
