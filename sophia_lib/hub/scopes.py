"""The four Sophia roles as JupyterHub scope sets, and the scopes each hub service gets.

The sets are nested — executive viewer ⊂ analyst ⊂ developer ⊂ super user — so the union of the roles
of a person's groups (how JupyterHub combines roles) is always the scope set of their most privileged
role, the same role :func:`sophia_lib.roles.role_for_groups` gives the query service. Super users are
also JupyterHub admins (through ``admin_groups``). docs/security.md ("Hub roles and scopes") lists these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sophia_lib.config.typing import TRole
from sophia_lib.roles import ROLES, groups_of_role

PUBLISH = "custom:sophia:dashboards:publish"
SOURCES_READ = "custom:sophia:sources:read"
HEALTH_READ = "custom:sophia:health:read"

CUSTOM_SCOPES: dict[str, dict[str, str]] = {
    PUBLISH: {"description": "Publish one's notebooks as dashboards for a named audience."},
    SOURCES_READ: {"description": "Read data source definitions, sync runs and raw-store status."},
    HEALTH_READ: {"description": "Read data health: freshness, failed syncs, quarantines, schema events."},
}

# Every signed-in person, whatever their role (JupyterHub's default ``user`` role, narrowed from ``self``).
EVERYONE: tuple[str, ...] = ("read:users!user",)

_EXECUTIVE = (*EVERYONE, "access:services!service=dashboards")
_ANALYST = (*_EXECUTIVE, "servers!user", "access:servers!user", "users:activity!user",
            "access:services!service=query", PUBLISH)
_DEVELOPER = (*_ANALYST, "tokens!user", SOURCES_READ)
_SUPER_USER = (*_DEVELOPER, HEALTH_READ)

ROLE_SCOPES: dict[TRole, tuple[str, ...]] = {
    "executive_viewer": _EXECUTIVE,
    "analyst": _ANALYST,
    "developer": _DEVELOPER,
    "super_user": _SUPER_USER,
}

SERVER_TOKEN_SCOPES: tuple[str, ...] = (
    "users:activity!user", "access:servers!server", "access:services!service=query",
    "access:services!service=dashboards", "read:users:name!user", "read:users:groups!user",
)
"""Scopes of a user server's ``JUPYTERHUB_API_TOKEN`` (the token ``sophia_lib`` in a kernel sends to the
query door, and ``sophia publish`` to the dashboards service); JupyterHub grants only the part its owner holds."""

SERVICE_SCOPES: dict[str, tuple[str, ...]] = {
    "query": ("read:users:name", "read:users:groups"),
    "dashboards": ("read:users:name", "read:users:groups", "access:services!service=query"),
    "scheduler": ("read:users:name", "read:users:groups", "access:services!service=query"),
    "idle-culler": ("list:users", "read:users:activity", "read:servers", "delete:servers"),
    "prometheus": ("read:metrics",),
}


def role_name(role: TRole) -> str:
    """JupyterHub's name for a Sophia role: ``sophia-executive-viewer`` …"""
    return "sophia-" + role.replace("_", "-")


def load_roles(group_roles: Mapping[str, TRole], services: list[str]) -> list[dict[str, Any]]:
    """``c.JupyterHub.load_roles``: the narrowed default user role, one role per Sophia role bound to its
    IdP groups, and one role per declared service."""
    roles: list[dict[str, Any]] = [{
        "name": "user",
        "description": "Every signed-in person: read their own user. Everything else comes from a Sophia role.",
        "scopes": list(EVERYONE),
    }]
    for role in reversed(ROLES):
        roles.append({
            "name": role_name(role),
            "description": f"Sophia {role.replace('_', ' ')}",
            "scopes": list(ROLE_SCOPES[role]),
            "groups": groups_of_role(role, group_roles),
        })
    for service in services:
        roles.append({
            "name": f"sophia-service-{service}",
            "description": f"What the {service} service needs",
            "scopes": list(SERVICE_SCOPES[service]),
            "services": [service],
        })
    return roles
