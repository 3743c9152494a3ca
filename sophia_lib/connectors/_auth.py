"""Credentials on the wire: static keys, OAuth2 refresh-token and client-credentials flows, logins.

dlt has no refresh-token flow; this is the one shared implementation. Tokens are refreshed ahead of
expiry (``skew_s``) and, through :class:`~sophia_lib.connectors._http.VendorSession`, once on a 401.
A rotated refresh token is handed to ``on_rotate`` at once, so the credential store always holds the
live one, even if the sync later fails.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from sophia_lib.connectors._http import Auth, body_json
from sophia_lib.connectors.errors import SourceAuthError, SourceUnavailableError


class HeaderAuth(Auth):
    """Fixed headers: API keys, personal tokens, private-app tokens, Basic auth."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = dict(headers)

    @classmethod
    def bearer(cls, token: str) -> HeaderAuth:
        return cls({"Authorization": f"Bearer {token}"})

    @classmethod
    def basic(cls, user: str, password: str) -> HeaderAuth:
        return cls({"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})

    def apply(self, request: requests.PreparedRequest) -> None:
        request.headers.update(self.headers)


class TokenAuth(Auth):
    """Base of token flows: keeps the access token and its expiry; subclasses fetch tokens."""

    def __init__(self, vendor: str, *, scheme: str = "Bearer", skew_s: float = 60.0,
                 default_expires_in: float = 3600.0, timeout: float = 15.0) -> None:
        self.vendor = vendor
        self.scheme = scheme
        self.skew_s = skew_s
        self.default_expires_in = default_expires_in
        self.timeout = timeout
        self.access_token: str | None = None
        self.expires_at = 0.0
        self.token_response: dict[str, Any] = {}
        self._lock = threading.Lock()

    def fetch(self) -> dict[str, Any]:
        """Ask the vendor for a token; return its JSON answer."""
        raise NotImplementedError

    def apply(self, request: requests.PreparedRequest) -> None:
        if self.access_token is None or time.time() >= self.expires_at - self.skew_s:
            self.refresh()
        request.headers["Authorization"] = f"{self.scheme} {self.access_token}" if self.scheme else str(
            self.access_token)

    def refresh(self, force: bool = False) -> bool:
        with self._lock:
            if not force and self.access_token is not None and time.time() < self.expires_at - self.skew_s:
                return True
            answer = self.fetch()
            token = answer.get("access_token")
            if not token:
                raise SourceAuthError(self.vendor, f"the token endpoint answered without an access_token: {answer}")
            self.access_token = str(token)
            expires_in = answer.get("expires_in")
            self.expires_at = time.time() + (float(expires_in) if expires_in else self.default_expires_in)
            self.token_response = answer
            return True

    def _post(self, url: str, data: Mapping[str, Any], headers: Mapping[str, str] | None = None,
              as_json: bool = False) -> dict[str, Any]:
        """POST to a token endpoint: form-encoded (OAuth's default) or a JSON body (Notion)."""
        body = {"json": dict(data)} if as_json else {"data": data}
        try:
            response = requests.post(url, headers=dict(headers or {}), timeout=self.timeout, **body)
        except requests.RequestException as exc:
            raise SourceUnavailableError(self.vendor, f"token endpoint unreachable: {exc}", attempts=1,
                                         elapsed_s=0) from None
        answer = body_json(response)
        if response.status_code >= 500:
            raise SourceUnavailableError(self.vendor, f"token endpoint HTTP {response.status_code}", attempts=1,
                                         elapsed_s=0)
        if response.status_code >= 400 or not isinstance(answer, dict):
            detail = answer if answer is not None else response.text[:200]
            raise SourceAuthError(self.vendor, f"the token endpoint refused the credentials: {detail}")
        return answer


class OAuth2RefreshAuth(TokenAuth):
    """OAuth2 refresh-token grant (authorization-code apps: Salesforce, HubSpot, NetSuite, …).

    ``client_auth`` is ``"post"`` (id and secret in the form) or ``"basic"`` (HTTP Basic).
    ``on_rotate(new_refresh_token)`` is called whenever the vendor hands out a new refresh token.
    ``json_body`` sends the grant as JSON instead of a form (Notion).
    """

    def __init__(self, vendor: str, token_url: str, client_id: str, client_secret: str, refresh_token: str, *,
                 client_auth: str = "post", on_rotate: Callable[[str], None] | None = None,
                 extra: Mapping[str, str] | None = None, json_body: bool = False, **kwargs: Any) -> None:
        super().__init__(vendor, **kwargs)
        self.json_body = json_body
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.client_auth = client_auth
        self.on_rotate = on_rotate
        self.extra = dict(extra or {})

    def fetch(self) -> dict[str, Any]:
        data = {"grant_type": "refresh_token", "refresh_token": self.refresh_token, **self.extra}
        headers = {}
        if self.client_auth == "basic":
            pair = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            data |= {"client_id": self.client_id, "client_secret": self.client_secret}
        answer = self._post(self.token_url, data, headers, as_json=self.json_body)
        rotated = answer.get("refresh_token")
        if rotated and rotated != self.refresh_token:
            self.refresh_token = str(rotated)
            if self.on_rotate is not None:
                self.on_rotate(self.refresh_token)
        return answer


class ClientCredentialsAuth(TokenAuth):
    """OAuth2 client-credentials grant; ``form`` builds the request body (e.g. a signed JWT assertion)."""

    def __init__(self, vendor: str, token_url: str, form: Callable[[], Mapping[str, str]],
                 headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(vendor, **kwargs)
        self.token_url = token_url
        self.form = form
        self.headers = dict(headers or {})

    def fetch(self) -> dict[str, Any]:
        return self._post(self.token_url, {"grant_type": "client_credentials", **self.form()}, self.headers)


class LoginAuth(TokenAuth):
    """A login call that returns an access token (Looker ``POST /login``)."""

    def __init__(self, vendor: str, login_url: str, form: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(vendor, **kwargs)
        self.login_url = login_url
        self.form = dict(form)

    def fetch(self) -> dict[str, Any]:
        return self._post(self.login_url, self.form)
