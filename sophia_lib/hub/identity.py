"""Who the code in this kernel runs as, according to the hub (not according to the environment).

Inside a user's server JupyterHub sets ``JUPYTERHUB_API_URL`` and a hub-issued ``JUPYTERHUB_API_TOKEN``;
asking the hub who owns that token is the only answer that counts (the query door asks the same way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from sophia_lib.config.typing import HubConfig, TRole
from sophia_lib.errors import SophiaError
from sophia_lib.roles import role_for_groups


@dataclass(frozen=True)
class HubUser:
    name: str
    groups: tuple[str, ...]
    role: TRole | None
    scopes: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} ({self.role or 'no Sophia role'}; groups: {', '.join(self.groups) or 'none'})"


def whoami(group_roles: dict[str, TRole] | None = None, timeout_s: float = 10) -> HubUser:
    """The hub's answer for this server's token; SophiaError outside a hub-spawned server."""
    url, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise SophiaError("not running in a hub-spawned server (JUPYTERHUB_API_URL/JUPYTERHUB_API_TOKEN unset).",
                          fix="open a notebook from the hub; locally there is no hub identity")
    response = httpx.get(f"{url.rstrip('/')}/user", headers={"Authorization": f"token {token}"}, timeout=timeout_s)
    if response.status_code != 200:
        raise SophiaError(f"the hub refused this server's token ({response.status_code}).",
                          fix="restart your server from the hub home page")
    model = response.json()
    groups = tuple(model.get("groups") or ())
    mapping = group_roles if group_roles is not None else HubConfig().group_roles
    return HubUser(model["name"], groups, role_for_groups(groups, mapping), tuple(model.get("scopes") or ()))
