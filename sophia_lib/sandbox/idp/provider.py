"""The OpenID provider: endpoints, grants, tokens and the signing key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sophia_lib.sandbox.idp.accounts import (
    CLAIMS_BY_SCOPE,
    DEMO_CLIENT_ID,
    SUPPORTED_SCOPES,
    IdpClient,
    IdpUser,
    demo_client,
    demo_users,
)
from sophia_lib.sandbox.idp.pages import error_page, login_page, page

_PKCE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# --------------------------------------------------------------------------- in-memory grants


@dataclass(frozen=True)
class _AuthRequest:
    """A validated authorization request waiting for the user to log in."""

    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    login_hint: str
    expires_at: float


@dataclass(frozen=True)
class _Code:
    request: _AuthRequest
    username: str
    auth_time: int
    expires_at: float


@dataclass(frozen=True)
class _Grant:
    """What an access or refresh token stands for."""

    client_id: str
    username: str
    scopes: tuple[str, ...]
    auth_time: int
    expires_at: float
    code: str = ""


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: dict[str, _AuthRequest] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    used_codes: dict[str, float] = field(default_factory=dict)  # code -> forget after
    access: dict[str, _Grant] = field(default_factory=dict)
    refresh: dict[str, _Grant] = field(default_factory=dict)


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` code, description and HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


# --------------------------------------------------------------------------- the provider


class IdentityProvider:
    """The provider: users, clients, a signing key and the grants it has issued.

    ``issuer`` may be left out when an :class:`IdpServer` runs it: the server then sets it to its own
    base URL. ``clock`` (seconds since the epoch) is injectable so tests can expire tokens without
    sleeping. ``key_path``: a PEM RSA private key to load; if the file does not exist a new key is
    generated and written there (mode 0600), so tokens stay valid across demo restarts.
    """

    def __init__(
        self,
        issuer: str | None = None,
        users: Iterable[IdpUser] | None = None,
        clients: Iterable[IdpClient] | None = None,
        *,
        key_path: str | os.PathLike[str] | None = None,
        code_ttl_s: int = 120,
        login_ttl_s: int = 600,
        access_token_ttl_s: int = 3600,
        id_token_ttl_s: int = 3600,
        refresh_token_ttl_s: int = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/") if issuer else None
        self.users: dict[str, IdpUser] = {u.username: u for u in (demo_users() if users is None else users)}
        self.clients: dict[str, IdpClient] = {c.client_id: c for c in ((demo_client(),) if clients is None
                                                                         else clients)}
        self.code_ttl_s = code_ttl_s
        self.login_ttl_s = login_ttl_s
        self.access_token_ttl_s = access_token_ttl_s
        self.id_token_ttl_s = id_token_ttl_s
        self.refresh_token_ttl_s = refresh_token_ttl_s
        self.clock = clock
        self._key = _load_or_create_key(Path(key_path) if key_path else None)
        self.kid = self._key.thumbprint()
        self._store = _Store()

    # ---- public helpers

    def url(self, path: str) -> str:
        """Absolute URL of an endpoint (``/token`` …) under the issuer."""
        if not self.issuer:
            raise RuntimeError("the identity provider has no issuer yet: pass issuer= or run it with IdpServer")
        return f"{self.issuer}{path}"

    def jwks(self) -> dict[str, Any]:
        """The public JWK set (one RS256 signing key)."""
        public = self._key.as_dict(private=False)
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata served at ``/.well-known/openid-configuration``."""
        return {
            "issuer": self.url(""),
            "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"),
            "userinfo_endpoint": self.url("/userinfo"),
            "jwks_uri": self.url("/jwks"),
            "end_session_endpoint": self.url("/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                                 *sorted({c for cs in CLAIMS_BY_SCOPE.values() for c in cs})],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "userinfo_signing_alg_values_supported": [],
        }

    def oauthenticator_settings(self, client_id: str = DEMO_CLIENT_ID,
                                callback_url: str | None = None) -> dict[str, Any]:
        """Traits of oauthenticator's ``GenericOAuthenticator`` (16+) for logging the hub in here.

        Group handling (``manage_groups``, ``allowed_groups``, ``admin_groups``) is the hub's policy and is
        left to the hub's config; the groups arrive under ``auth_state["oauth_user"]["groups"]``.
        """
        client = self.clients[client_id]
        return {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "oauth_callback_url": callback_url or client.redirect_uris[0],
            "authorize_url": self.url("/authorize"),
            "token_url": self.url("/token"),
            "userdata_url": self.url("/userinfo"),
            "logout_redirect_url": self.url("/logout"),
            "scope": ["openid", "profile", "email", "groups"],
            "username_claim": "preferred_username",
            "auth_state_groups_key": "oauth_user.groups",
            "basic_auth": True,
            "login_service": "Sophia demo IdP",
        }

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self._discovery_endpoint, methods=["GET"]),
            Route("/jwks", self._jwks_endpoint, methods=["GET"]),
            Route("/authorize", self._authorize_endpoint, methods=["GET"]),
            Route("/login", self._login_endpoint, methods=["POST"]),
            Route("/token", self._token_endpoint, methods=["POST"]),
            Route("/userinfo", self._userinfo_endpoint, methods=["GET", "POST"]),
            Route("/logout", self._logout_endpoint, methods=["GET", "POST"]),
        ])

    # ---- discovery and keys

    async def _discovery_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.discovery())

    async def _jwks_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    # ---- authorization endpoint and login

    async def _authorize_endpoint(self, request: Request) -> Response:
        params = request.query_params
        for name in params:
            if len(params.getlist(name)) > 1:
                return error_page(f"The parameter {name!r} is repeated.", 400)
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return error_page("Unknown or missing client_id.", 400)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None:
            if len(client.redirect_uris) != 1:
                return error_page("redirect_uri is required for this client.", 400)
            redirect_uri = client.redirect_uris[0]
        elif redirect_uri not in client.redirect_uris:
            # Never redirect to an unregistered URI, not even with an error (RFC 6749 §4.1.2.1).
            return error_page("redirect_uri is not registered for this client.", 400)
        state = params.get("state")

        def fail(error: str, description: str) -> Response:
            return self._redirect(redirect_uri, {"error": error, "error_description": description, "state": state})

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "only response_type=code is supported")
        if params.get("request") or params.get("request_uri"):
            return fail("request_not_supported", "request objects are not supported")
        scopes = tuple(s for s in dict.fromkeys(params.get("scope", "").split()) if s in SUPPORTED_SCOPES)
        challenge = params.get("code_challenge")
        if challenge is not None:
            if params.get("code_challenge_method", "plain") != "S256":
                return fail("invalid_request", "only code_challenge_method=S256 is supported")
            if not 43 <= len(challenge) <= 128 or not set(challenge) <= _PKCE_ALPHABET:
                return fail("invalid_request", "malformed code_challenge")
        elif client.require_pkce:
            return fail("invalid_request", "this client must use PKCE (code_challenge)")
        if "none" in params.get("prompt", "").split():
            # No login sessions are kept: every authorization asks for the password.
            return fail("login_required", "the user must log in")
        pending = _AuthRequest(
            client_id=client.client_id, redirect_uri=redirect_uri, redirect_uri_given="redirect_uri" in params,
            scopes=scopes, state=state, nonce=params.get("nonce"), code_challenge=challenge,
            login_hint=params.get("login_hint", ""), expires_at=self.clock() + self.login_ttl_s)
        request_id = secrets.token_urlsafe(24)
        with self._store.lock:
            self._prune()
            self._store.pending[request_id] = pending
        return login_page(request_id, client, pending.login_hint, error=None)

    async def _login_endpoint(self, request: Request) -> Response:
        form = await request.form()
        request_id = str(form.get("request_id", ""))
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        with self._store.lock:
            pending = self._store.pending.get(request_id)
            if pending is not None and pending.expires_at < self.clock():
                del self._store.pending[request_id]
                pending = None
        if pending is None:
            return error_page("This login request has expired or is unknown. Start again from the application.",
                               400)
        client = self.clients[pending.client_id]
        user = self.users.get(username)
        # Compare against a dummy when the user is unknown, so both paths take the same time.
        expected = user.password if user is not None else secrets.token_urlsafe(16)
        if user is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return login_page(request_id, client, username, error="Invalid username or password.")
        code = secrets.token_urlsafe(32)
        now = self.clock()
        with self._store.lock:
            if self._store.pending.pop(request_id, None) is None:
                return error_page("This login request was already used.", 400)
            self._store.codes[code] = _Code(pending, user.username, int(now), now + self.code_ttl_s)
        return self._redirect(pending.redirect_uri, {"code": code, "state": pending.state, "iss": self.url("")})

    # ---- token endpoint

    async def _token_endpoint(self, request: Request) -> Response:
        try:
            form = await request.form()
            data = {k: str(v) for k, v in form.items()}
            client = self._authenticate_client(request, data)
            grant_type = data.get("grant_type")
            if grant_type == "authorization_code":
                body = self._exchange_code(client, data)
            elif grant_type == "refresh_token":
                body = self._refresh(client, data)
            elif not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        except OAuthError as error:
            headers = {"Cache-Control": "no-store"}
            if error.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="sophia-idp"'
            return JSONResponse({"error": error.error, "error_description": error.description}, error.status,
                                headers=headers)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate_client(self, request: Request, data: Mapping[str, str]) -> IdpClient:
        """client_secret_basic or client_secret_post; both at once only if they agree.

        RFC 6749 §2.3.1 form-urlencodes id and secret before base64 (authlib does); oauthenticator does
        not. Both spellings are accepted, which only matters for secrets with ``%`` or ``+`` in them.
        """
        candidates: list[tuple[str, str]] = []
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
                basic_id, sep, basic_secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_client", "malformed Basic authorization header", 401) from exc
            if not sep:
                raise OAuthError("invalid_client", "malformed Basic authorization header", 401)
            candidates = [(basic_id, basic_secret), (unquote_plus(basic_id), unquote_plus(basic_secret))]
            body_id, body_secret = data.get("client_id"), data.get("client_secret")
            if not any((body_id in (None, i)) and (body_secret in (None, s)) for i, s in candidates):
                raise OAuthError("invalid_request", "client credentials in header and body disagree")
        elif data.get("client_id") and data.get("client_secret") is not None:
            candidates = [(data["client_id"], data["client_secret"])]
        if not candidates:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        for client_id, secret in candidates:
            client = self.clients.get(client_id)
            expected = client.client_secret if client is not None else secrets.token_urlsafe(16)
            if hmac.compare_digest(secret.encode(), expected.encode()) and client is not None:
                return client
        raise OAuthError("invalid_client", "client authentication failed", 401)

    def _exchange_code(self, client: IdpClient, data: Mapping[str, str]) -> dict[str, Any]:
        code_value = data.get("code")
        if not code_value:
            raise OAuthError("invalid_request", "code is required")
        now = self.clock()
        with self._store.lock:
            code = self._store.codes.pop(code_value, None)
            if code is None:
                if code_value in self._store.used_codes:
                    # A replayed code: revoke everything issued from it (RFC 6749 §4.1.2).
                    self._revoke_code_family(code_value)
                raise OAuthError("invalid_grant", "the authorization code is invalid, expired or already used")
            self._store.used_codes[code_value] = now + self.refresh_token_ttl_s
        pending = code.request
        if code.expires_at < now:
            raise OAuthError("invalid_grant", "the authorization code has expired")
        if pending.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the authorization code was issued to another client")
        redirect_uri = data.get("redirect_uri")
        if (pending.redirect_uri_given or redirect_uri is not None) and redirect_uri != pending.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        verifier = data.get("code_verifier")
        if pending.code_challenge is not None:
            if not verifier:
                raise OAuthError("invalid_grant", "code_verifier is required")
            if not hmac.compare_digest(_s256(verifier).encode(), pending.code_challenge.encode()):
                raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        elif verifier:
            raise OAuthError("invalid_grant", "code_verifier sent but no code_challenge was made")
        user = self.users.get(code.username)
        if user is None:
            raise OAuthError("invalid_grant", "the user no longer exists")
        return self._issue(client, user, pending.scopes, code.auth_time, nonce=pending.nonce, code=code_value)

    def _refresh(self, client: IdpClient, data: Mapping[str, str]) -> dict[str, Any]:
        token = data.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        with self._store.lock:
            grant = self._store.refresh.get(token)
            if grant is None or grant.expires_at < self.clock() or grant.client_id != client.client_id:
                raise OAuthError("invalid_grant", "the refresh token is invalid, expired or not this client's")
            del self._store.refresh[token]  # rotated: each refresh token works once
        scopes = grant.scopes
        if data.get("scope"):
            asked = tuple(dict.fromkeys(data["scope"].split()))
            if not set(asked) <= set(grant.scopes):
                raise OAuthError("invalid_scope", "a refresh may not widen the granted scope")
            scopes = asked
        user = self.users.get(grant.username)
        if user is None:
            raise OAuthError("invalid_grant", "the user no longer exists")
        # The refreshed ID token carries no nonce (OIDC Core §12.2).
        return self._issue(client, user, scopes, grant.auth_time, nonce=None, code=grant.code)

    def _issue(self, client: IdpClient, user: IdpUser, scopes: tuple[str, ...], auth_time: int, *,
               nonce: str | None, code: str) -> dict[str, Any]:
        now = self.clock()
        access_token, refresh_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._store.lock:
            self._store.access[access_token] = _Grant(client.client_id, user.username, scopes, auth_time,
                                                      now + self.access_token_ttl_s, code)
            self._store.refresh[refresh_token] = _Grant(client.client_id, user.username, scopes, auth_time,
                                                        now + self.refresh_token_ttl_s, code)
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl_s,
            "refresh_token": refresh_token,
            "scope": " ".join(scopes),
        }
        if "openid" in scopes:
            body["id_token"] = self.id_token(client.client_id, user, scopes, auth_time, nonce=nonce,
                                             access_token=access_token)
        return body

    def id_token(self, audience: str, user: IdpUser, scopes: Iterable[str], auth_time: int, *,
                 nonce: str | None = None, access_token: str | None = None) -> str:
        """A signed RS256 ID token for ``user`` addressed to the client ``audience``."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            **user.claims(scopes),
            "iss": self.url(""),
            "aud": audience,
            "azp": audience,
            "iat": now,
            "exp": now + self.id_token_ttl_s,
            "auth_time": auth_time,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["at_hash"] = base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": self.kid}, claims, self._key, algorithms=["RS256"])

    # ---- userinfo and logout

    async def _userinfo_endpoint(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token and request.method == "POST":
            token = str((await request.form()).get("access_token", ""))
        if not token:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="sophia-idp"'})
        with self._store.lock:
            grant = self._store.access.get(token)
        user = self.users.get(grant.username) if grant is not None else None
        if grant is None or grant.expires_at < self.clock() or user is None:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "the access token is invalid or expired"}, 401,
                headers={"WWW-Authenticate": 'Bearer realm="sophia-idp", error="invalid_token"'})
        return JSONResponse(user.claims(grant.scopes), headers={"Cache-Control": "no-store"})

    async def _logout_endpoint(self, request: Request) -> Response:
        """RP-initiated logout. No login sessions are kept, so this only redirects back when asked to."""
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        target = params.get("post_logout_redirect_uri")
        if target:
            allowed = {u for c in self.clients.values() for u in c.post_logout_redirect_uris}
            if params.get("client_id") in self.clients:
                allowed = set(self.clients[params["client_id"]].post_logout_redirect_uris)
            if target not in allowed:
                return error_page("post_logout_redirect_uri is not registered.", 400)
            return self._redirect(target, {"state": params.get("state")})
        return page("Signed out", "<p>You are signed out of the Sophia demo identity provider.</p>")

    # ---- internals

    def _redirect(self, uri: str, params: Mapping[str, str | None]) -> Response:
        parts = urlsplit(uri)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query += [(k, v) for k, v in params.items() if v is not None]
        return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302,
                                headers={"Cache-Control": "no-store"})

    def _revoke_code_family(self, code: str) -> None:
        """Drop every token issued from ``code`` (caller holds the lock)."""
        for table in (self._store.access, self._store.refresh):
            for token in [t for t, g in table.items() if g.code == code]:
                del table[token]

    def _prune(self) -> None:
        """Forget expired pending logins, codes and tokens (caller holds the lock)."""
        now = self.clock()
        store = self._store
        for table in (store.pending, store.codes, store.access, store.refresh):
            for key in [k for k, v in table.items() if v.expires_at < now]:
                del table[key]
        for key in [k for k, until in store.used_codes.items() if until < now]:
            del store.used_codes[key]


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _load_or_create_key(path: Path | None) -> RSAKey:
    parameters = {"use": "sig", "alg": "RS256"}
    if path is not None and path.exists():
        return RSAKey.import_key(path.read_bytes(), parameters=parameters)
    key = RSAKey.generate_key(2048, parameters=parameters)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.as_pem(private=True))
    return key
