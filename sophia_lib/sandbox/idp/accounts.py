"""Who can log in (users) and who may ask for tokens (clients); the demo set."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEMO_CLIENT_ID = "sophia-hub"
#: Demo-only secret of the demo client; printed by ``sophia sandbox serve``.
DEMO_CLIENT_SECRET = "sophia-hub-demo-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/hub/oauth_callback"

#: ``openid`` yields an ID token; ``profile``: name, preferred_username; ``email``: email; ``groups``: groups.
SUPPORTED_SCOPES = ("openid", "profile", "email", "groups", "offline_access")
CLAIMS_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "profile": ("name", "preferred_username", "given_name", "family_name"),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}
_SUB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sophia:sandbox:idp")


@dataclass(frozen=True)
class IdpUser:
    """A person who can log in. ``sub`` defaults to a stable UUID derived from the username."""

    username: str
    password: str
    name: str
    email: str
    groups: tuple[str, ...] = ()
    sub: str = ""

    def __post_init__(self) -> None:
        if not self.sub:
            object.__setattr__(self, "sub", str(uuid.uuid5(_SUB_NAMESPACE, self.username)))

    def claims(self, scopes: Iterable[str]) -> dict[str, Any]:
        """The user's claims released for these scopes (``sub`` always)."""
        given, _, family = self.name.partition(" ")
        every: dict[str, Any] = {
            "name": self.name,
            "preferred_username": self.username,
            "given_name": given,
            "family_name": family or given,
            "email": self.email,
            "email_verified": True,
            "groups": list(self.groups),
        }
        out: dict[str, Any] = {"sub": self.sub}
        for scope in scopes:
            for claim in CLAIMS_BY_SCOPE.get(scope, ()):
                out[claim] = every[claim]
        return out


@dataclass(frozen=True)
class IdpClient:
    """A registered relying party. Redirect URIs are matched exactly (no prefix or wildcard)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    require_pkce: bool = False
    name: str = ""


def demo_users(domain: str = "sophia.example") -> tuple[IdpUser, ...]:
    """The demo people, one per Sophia role, one with two roles and one with none (refused by the hub)."""

    def user(username: str, name: str, *groups: str) -> IdpUser:
        return IdpUser(username, f"{username}-demo", name, f"{username}@{domain}", tuple(groups))

    return (
        user("ada", "Ada Lovelace", "sophia-super-users"),
        user("alan", "Alan Turing", "sophia-analysts"),
        user("erin", "Erin Exec", "sophia-executives"),
        user("dev", "Dev Builder", "sophia-developers"),
        user("grace", "Grace Hopper", "sophia-analysts", "sophia-developers"),
        user("nobody", "No Body", "staff"),
    )


def demo_client(redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
                post_logout_redirect_uris: Iterable[str] = ()) -> IdpClient:
    """The hub's registration: client_id ``sophia-hub`` with the demo secret."""
    return IdpClient(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, tuple(redirect_uris), tuple(post_logout_redirect_uris),
                     name="Sophia hub")
