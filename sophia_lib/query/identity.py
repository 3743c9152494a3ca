"""Who is asking: a hub-issued token, verified by JupyterHub itself, becomes an :class:`Identity`.

The caller's token goes to the hub's own API (``HubAuth.user_for_token``); the user's groups are
read with the query service's token (scopes ``read:users:name``, ``read:users:groups``) and become a
role through :func:`sophia_lib.roles.role_for_groups`, exactly as the hub decides scopes. Nothing the
client says about itself counts: no header, no environment variable, only the token.

A verified identity is reused for ``query.identity_cache_s`` seconds (keyed by the token's sha256),
so the cached read path does not wait on the hub; a revoked token stops working within that time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.query.errors import NoRoleError, NotAuthenticatedError, ServiceUnavailableError
from sophia_lib.roles import role_for_groups

DEFAULT_HUB_API = "http://127.0.0.1:8081/hub/api"
TOKEN_FIX = ("use the token the hub gave you: inside a JupyterHub server sophia_lib finds JUPYTERHUB_API_TOKEN; "
             "elsewhere create one at <hub>/hub/token and export SOPHIA_QUERY_TOKEN")


@dataclass(frozen=True)
class Identity:
    """A verified caller. ``kind`` and ``via`` leave room for the dashboards service passing a viewer's
    token and the scheduler passing a job's token with its declared audience (issues 7 and 8)."""

    user: str
    role: TRole
    groups: tuple[str, ...]
    kind: Literal["user", "viewer", "job"] = "user"
    via: str | None = None
    audience: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "role": self.role, "groups": list(self.groups), "kind": self.kind,
                "via": self.via, "audience": list(self.audience)}


class HubIdentity:
    """Turns tokens into identities by asking the hub."""

    def __init__(self, api_url: str, service_token: str, group_roles: Mapping[str, TRole],
                 required_scope: str | None = None, cache_s: float = 10.0, *,
                 trusted_services: tuple[str, ...] = ("dashboards", "scheduler"),
                 viewer_scope: str | None = "access:services!service=dashboards") -> None:
        from jupyterhub.services.auth import HubAuth

        self.api_url = api_url.rstrip("/")
        self.service_token = service_token
        self.group_roles = dict(group_roles)
        self.required_scope = required_scope
        self.cache_s = cache_s
        self.trusted_services = tuple(trusted_services)
        self.viewer_scope = viewer_scope
        self._auth = HubAuth(api_url=self.api_url, api_token=service_token, cache_max_age=0)
        self._http = httpx.AsyncClient(timeout=10)
        self._cache: dict[str, tuple[float, Identity]] = {}

    @classmethod
    def from_config(cls, config: SophiaConfig) -> HubIdentity:
        settings = config.query
        api_url = settings.hub_api_url or os.environ.get("JUPYTERHUB_API_URL") or DEFAULT_HUB_API
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if settings.hub_api_token is not None:
            from sophia_lib.secrets import resolve

            token = resolve(settings.hub_api_token, config)
        if not token:
            from sophia_lib.errors import ConfigError

            raise ConfigError("the query service has no hub token to look up users' groups with.",
                              fix="run it as a JupyterHub service (the hub sets JUPYTERHUB_API_TOKEN), or set "
                              "query.hub_api_token: {secret: NAME} to a service token with read:users:groups")
        required = settings.required_scope
        if required and os.environ.get("JUPYTERHUB_SERVICE_NAME"):
            required = required.replace("service=query", f"service={os.environ['JUPYTERHUB_SERVICE_NAME']}")
        return cls(api_url, token, config.hub.group_roles, required, settings.identity_cache_s,
                   trusted_services=tuple(settings.trusted_services), viewer_scope=settings.viewer_scope)

    async def identify(self, token: str | None, audience: str | None = None) -> Identity:
        """``audience`` (comma-separated hub groups, the ``X-Sophia-Audience`` header) counts only with the
        token of a trusted service (``query.trusted_services``): it then reads as a member of those groups.
        From anyone else it is ignored."""
        if not token:
            raise NotAuthenticatedError("no hub token came with the request.", fix=TOKEN_FIX)
        groups = tuple(sorted({g.strip() for g in (audience or "").split(",") if g.strip()}))
        key = hashlib.sha256("\0".join([token, *groups]).encode()).hexdigest()
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        identity = await self._verify(token, groups)
        if self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + self.cache_s, identity)
        return identity

    async def _verify(self, token: str, audience: tuple[str, ...] = ()) -> Identity:
        from jupyterhub.services.auth import check_scopes
        from tornado.web import HTTPError

        try:
            model = await self._auth.user_for_token(token, use_cache=False, sync=False)
        except HTTPError as exc:
            raise ServiceUnavailableError(f"the hub could not check the token: {exc.log_message or exc}.",
                                          fix=f"check that JupyterHub answers at {self.api_url}") from None
        if not model:
            raise NotAuthenticatedError("the hub does not accept this token (unknown, expired or revoked).",
                                        fix=TOKEN_FIX)
        name = model["name"]
        scopes = set(model.get("scopes") or [])
        kind: Literal["user", "viewer", "job"] = "user"
        if self.required_scope and not check_scopes(self.required_scope, scopes):
            if model.get("kind", "user") == "user" and self.viewer_scope and check_scopes(self.viewer_scope, scopes):
                kind = "viewer"  # a viewer's token the dashboards service obtained at sign-in (live mode)
            else:
                raise NotAuthenticatedError(f"the token of {name} lacks the scope {self.required_scope}.",
                                            fix="ask a hub admin to grant it to Sophia's groups (hub roles), or use "
                                            "a token created with it")
        if model.get("kind", "user") == "service":
            return self._service_audience(name, audience)
        if model.get("kind", "user") != "user":
            raise NoRoleError(f"{model.get('kind')} tokens ({name}) cannot read data.", fix="send a user's token")
        groups = await self._groups(name)
        role = role_for_groups(groups, self.group_roles)
        if role is None:
            sophia = ", ".join(sorted(self.group_roles)) or "(none configured)"
            raise NoRoleError(f"{name} is in no Sophia group, so has no data access.",
                              fix=f"ask an administrator to add {name} to one of: {sophia}")
        return Identity(name, role, tuple(sorted(groups)), kind=kind,
                        via="dashboards" if kind == "viewer" else None)

    def _service_audience(self, name: str, audience: tuple[str, ...]) -> Identity:
        """A trusted service reads as its declared audience (a dashboard rendered for a policy scope, a
        scheduled job's audience); any other service token reads nothing."""
        if name not in self.trusted_services:
            raise NoRoleError(f"service {name} is not trusted to read data.",
                              fix=f"add it to query.trusted_services (now: {', '.join(self.trusted_services)})")
        if not audience:
            raise NoRoleError(f"service {name} declared no audience.",
                              fix="send X-Sophia-Audience: the hub groups to read as (SOPHIA_QUERY_AUDIENCE)")
        role = role_for_groups(audience, self.group_roles)
        if role is None:
            raise NoRoleError(f"audience {', '.join(audience)} holds no Sophia group.",
                              fix=f"name one of: {', '.join(sorted(self.group_roles))}")
        return Identity(name, role, audience, kind="job", via=name, audience=audience)

    async def _groups(self, name: str) -> list[str]:
        url = f"{self.api_url}/users/{quote(name, safe='')}"
        try:
            response = await self._http.get(url, headers={"Authorization": f"token {self.service_token}"})
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"cannot reach the hub at {self.api_url}: {exc}.",
                                          fix="check that JupyterHub is running") from None
        if response.status_code != 200:
            raise ServiceUnavailableError(
                f"the hub refused to tell the query service {name}'s groups (HTTP {response.status_code}).",
                fix="grant the query service's hub role the scopes read:users:name and read:users:groups")
        groups = response.json().get("groups")
        if groups is None:
            raise ServiceUnavailableError(f"the hub's answer about {name} carries no groups.",
                                          fix="grant the query service's hub role the scope read:users:groups")
        return list(groups)

    async def close(self) -> None:
        await self._http.aclose()
