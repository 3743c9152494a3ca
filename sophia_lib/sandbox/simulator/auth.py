"""Credentials a simulated vendor accepts: OAuth2 tokens with expiry and refresh, API keys, basic auth."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Token:
    value: str
    client_id: str
    expires_at: float | None  # epoch seconds; None = does not expire
    scopes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


class InvalidGrant(Exception):
    """The refresh token (or code) is unknown, revoked or expired."""


class TokenStore:
    """Access and refresh tokens of one vendor.

    ``rotate_refresh`` mimics vendors (Salesforce with rotation, Notion) that hand out a
    new refresh token on every refresh and invalidate the old one.
    """

    def __init__(self, prefix: str, access_ttl_s: float | None = 3600.0, rotate_refresh: bool = False) -> None:
        self.prefix = prefix
        self.access_ttl_s = access_ttl_s
        self.rotate_refresh = rotate_refresh
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, Token] = {}
        self._lock = threading.Lock()

    def _new(self, kind: str) -> str:
        return f"{self.prefix}-{kind}-{secrets.token_urlsafe(18)}"

    def issue(
        self, client_id: str, scopes: tuple[str, ...] = (), with_refresh: bool = True
    ) -> tuple[Token, Token | None]:
        with self._lock:
            expires = time.time() + self.access_ttl_s if self.access_ttl_s else None
            access = Token(self._new("at"), client_id, expires, scopes)
            self._access[access.value] = access
            refresh = None
            if with_refresh:
                refresh = Token(self._new("rt"), client_id, None, scopes)
                self._refresh[refresh.value] = refresh
            return access, refresh

    def add_refresh_token(self, value: str, client_id: str, scopes: tuple[str, ...] = ()) -> None:
        """Seed a known refresh token (the demo credentials printed by `sophia sandbox serve`)."""
        with self._lock:
            self._refresh[value] = Token(value, client_id, None, scopes)

    def add_static(self, value: str, client_id: str = "static", scopes: tuple[str, ...] = ()) -> None:
        """Seed a non-expiring access token or API key (private-app tokens, API keys)."""
        with self._lock:
            self._access[value] = Token(value, client_id, None, scopes)

    def refresh(self, refresh_token: str, client_id: str | None = None) -> tuple[Token, Token]:
        with self._lock:
            old = self._refresh.get(refresh_token)
            if old is None or (client_id is not None and old.client_id != client_id):
                raise InvalidGrant("expired access/refresh token")
            expires = time.time() + self.access_ttl_s if self.access_ttl_s else None
            access = Token(self._new("at"), old.client_id, expires, old.scopes)
            self._access[access.value] = access
            new_refresh = old
            if self.rotate_refresh:
                del self._refresh[refresh_token]
                new_refresh = Token(self._new("rt"), old.client_id, None, old.scopes)
                self._refresh[new_refresh.value] = new_refresh
            return access, new_refresh

    def check(self, access_token: str | None) -> Token | None:
        """The live token, or None when unknown or expired."""
        if not access_token:
            return None
        with self._lock:
            token = self._access.get(access_token)
        if token is None or token.expired():
            return None
        return token

    def expire(self, access_token: str | None) -> None:
        """Expire an OAuth access token now (the token_expiry fault). Static keys never expire."""
        if not access_token:
            return
        with self._lock:
            token = self._access.get(access_token)
            if token is not None and token.expires_at is not None:
                token.expires_at = time.time() - 1


def bearer(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer …`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
