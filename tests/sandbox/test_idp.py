"""The local OIDC identity provider, over real HTTP on a loopback port, as a client would use it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import authlib.deprecate  # noqa: F401 - installs its own warning filter first, so the block below can override it
import httpx
import pytest

from sophia_lib.sandbox.idp import (
    DEFAULT_REDIRECT_URI,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    IdentityProvider,
    IdpClient,
    IdpServer,
    demo_client,
    demo_users,
)

with warnings.catch_warnings():
    # authlib.jose is deprecated in favour of joserfc, which the provider signs with; verifying with the
    # older, independent implementation is the point here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.jose import JsonWebKey
    from authlib.jose import jwt as authlib_jwt
    from authlib.jose.errors import BadSignatureError
    from authlib.oidc.core import CodeIDToken

SCOPE = "openid profile email groups"
ROLE_USERS = {"ada": ["sophia-super-users"], "alan": ["sophia-analysts"], "erin": ["sophia-executives"],
              "dev": ["sophia-developers"]}


@dataclass
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[IdpServer]:
    with IdpServer(IdentityProvider()) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


@dataclass
class Flow:
    """One authorization request's client-side secrets."""

    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def params(self, pkce: bool = True, **extra: str) -> dict[str, str]:
        params = {"response_type": "code", "client_id": DEMO_CLIENT_ID, "redirect_uri": DEFAULT_REDIRECT_URI,
                  "scope": SCOPE, "state": self.state, "nonce": self.nonce}
        if pkce:
            params |= {"code_challenge": self.challenge, "code_challenge_method": "S256"}
        return params | extra


def login_form(http: httpx.Client, server: IdpServer, params: dict[str, str]) -> tuple[str, str]:
    """GET /authorize; return the login form's absolute action URL and its request_id."""
    page = http.get(server.url("/authorize"), params=params)
    assert page.status_code == 200, page.text
    assert 'name="password"' in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert action and request_id
    return str(page.url.join(action.group(1))), request_id.group(1)


def log_in(http: httpx.Client, server: IdpServer, username: str, flow: Flow, *, password: str | None = None,
           **params: Any) -> httpx.Response:
    action, request_id = login_form(http, server, flow.params(**params))
    return http.post(action, data={"request_id": request_id, "username": username,
                                   "password": f"{username}-demo" if password is None else password})


def code_from(response: httpx.Response, flow: Flow, server: IdpServer) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == DEFAULT_REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [flow.state]
    assert query["iss"] == [server.issuer]
    return query["code"][0]


def exchange(http: httpx.Client, server: IdpServer, code: str, verifier: str | None, *, post_auth: bool = False,
             **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEFAULT_REDIRECT_URI, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    if post_auth:
        return http.post(server.url("/token"), data={**data, "client_id": DEMO_CLIENT_ID,
                                                     "client_secret": DEMO_CLIENT_SECRET})
    return http.post(server.url("/token"), data=data, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))


def verify_id_token(http: httpx.Client, server: IdpServer, id_token: str, *, nonce: str | None,
                    access_token: str) -> dict[str, Any]:
    """Check signature (keys from jwks_uri), iss, aud, exp, iat, nonce and at_hash with authlib."""
    jwks = http.get(http.get(server.url("/.well-known/openid-configuration")).json()["jwks_uri"]).json()
    options = {"iss": {"essential": True, "value": server.issuer}}
    params = {"client_id": DEMO_CLIENT_ID, "nonce": nonce, "access_token": access_token}
    claims = authlib_jwt.decode(id_token, JsonWebKey.import_key_set(jwks), claims_cls=CodeIDToken,
                                claims_options=options, claims_params=params)
    claims.validate()
    assert claims.header["alg"] == "RS256"
    assert claims.header["kid"] == jwks["keys"][0]["kid"]
    assert claims["aud"] == DEMO_CLIENT_ID
    assert claims["exp"] > claims["iat"]
    return dict(claims)


def test_discovery_document(server: IdpServer, http: httpx.Client) -> None:
    doc = http.get(server.url("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == server.issuer == server.base_url
    assert doc["authorization_endpoint"] == f"{server.issuer}/authorize"
    assert doc["token_endpoint"] == f"{server.issuer}/token"
    assert doc["userinfo_endpoint"] == f"{server.issuer}/userinfo"
    assert doc["jwks_uri"] == f"{server.issuer}/jwks"
    assert doc["response_types_supported"] == ["code"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert "groups" in doc["claims_supported"]
    key = http.get(doc["jwks_uri"]).json()["keys"][0]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"]
    assert "d" not in key and "p" not in key  # public part only


@pytest.mark.parametrize("username", sorted(ROLE_USERS))
def test_code_flow_for_each_role(server: IdpServer, http: httpx.Client, username: str) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, username, flow), flow, server)
    token = exchange(http, server, code, flow.verifier)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"]
    claims = verify_id_token(http, server, body["id_token"], nonce=flow.nonce, access_token=body["access_token"])
    assert claims["preferred_username"] == username
    assert claims["email"] == f"{username}@sophia.example"
    assert claims["name"]
    assert claims["groups"] == ROLE_USERS[username]
    info = http.get(server.url("/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"]
    assert info.json()["preferred_username"] == username
    assert info.json()["groups"] == ROLE_USERS[username]


def test_client_secret_post_and_a_user_in_two_groups(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, "grace", flow, pkce=False), flow, server)
    body = exchange(http, server, code, None, post_auth=True).json()
    claims = verify_id_token(http, server, body["id_token"], nonce=flow.nonce, access_token=body["access_token"])
    assert claims["groups"] == ["sophia-analysts", "sophia-developers"]


def test_user_without_a_sophia_group_still_authenticates(server: IdpServer, http: httpx.Client) -> None:
    """Refusing ``nobody`` is the hub's job; the IdP must report the groups faithfully."""
    flow = Flow()
    body = exchange(http, server, code_from(log_in(http, server, "nobody", flow), flow, server), flow.verifier).json()
    info = http.get(server.url("/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert info["preferred_username"] == "nobody"
    assert not any(g.startswith("sophia-") for g in info["groups"])


def test_scopes_limit_the_claims(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    body = exchange(http, server, code_from(log_in(http, server, "alan", flow, scope="openid"), flow, server),
                    flow.verifier).json()
    assert body["scope"] == "openid"
    info = http.get(server.url("/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert set(info) == {"sub"}


def test_pkce_mismatch_or_missing_verifier_is_refused(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, "alan", flow), flow, server)
    wrong = exchange(http, server, code, Flow().verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "id_token" not in wrong.json()

    flow = Flow()
    missing = exchange(http, server, code_from(log_in(http, server, "alan", flow), flow, server), None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"

    flow = Flow()  # a verifier without a challenge is a downgrade attempt
    code = code_from(log_in(http, server, "alan", flow, pkce=False), flow, server)
    assert exchange(http, server, code, flow.verifier).json()["error"] == "invalid_grant"


def test_plain_pkce_and_other_response_types_are_refused(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    for extra in ({"code_challenge_method": "plain"}, {"response_type": "token"}):
        response = http.get(server.url("/authorize"), params=flow.params(**extra))
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["state"] == [flow.state] and "code" not in query
        assert query["error"] in (["invalid_request"], ["unsupported_response_type"])


def test_bad_password_shows_error_page_and_no_code(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    action, request_id = login_form(http, server, flow.params())
    for username, password in (("ada", "wrong"), ("ada", ""), ("mallory", "mallory-demo"), ("ada", "alan-demo")):
        response = http.post(action, data={"request_id": request_id, "username": username, "password": password})
        assert response.status_code == 401
        assert "location" not in response.headers
        assert "Invalid username or password" in response.text
        assert 'name="password"' in response.text  # the form again, to retry
    retry = http.post(action, data={"request_id": request_id, "username": "ada", "password": "ada-demo"})
    assert code_from(retry, flow, server)
    replay = http.post(action, data={"request_id": request_id, "username": "ada", "password": "ada-demo"})
    assert replay.status_code == 400 and "location" not in replay.headers


def test_unregistered_redirect_uri_is_refused_without_redirect(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    for uri in ("http://evil.example/hub/oauth_callback", DEFAULT_REDIRECT_URI + "/x", DEFAULT_REDIRECT_URI + "?a=1"):
        response = http.get(server.url("/authorize"), params=flow.params(redirect_uri=uri))
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "redirect_uri" in response.text
    unknown_client = http.get(server.url("/authorize"), params=flow.params(client_id="other"))
    assert unknown_client.status_code == 400 and "location" not in unknown_client.headers


def test_redirect_uri_must_match_at_the_token_endpoint(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, "erin", flow), flow, server)
    response = exchange(http, server, code, flow.verifier, redirect_uri="http://127.0.0.1:9999/cb")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_code_reuse_is_refused_and_revokes_its_tokens(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, "dev", flow), flow, server)
    first = exchange(http, server, code, flow.verifier)
    assert first.status_code == 200
    access_token = first.json()["access_token"]
    auth = {"Authorization": f"Bearer {access_token}"}
    assert http.get(server.url("/userinfo"), headers=auth).status_code == 200
    again = exchange(http, server, code, flow.verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert http.get(server.url("/userinfo"), headers=auth).status_code == 401
    refresh = http.post(server.url("/token"), auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_client_authentication_is_required(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    code = code_from(log_in(http, server, "ada", flow), flow, server)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_verifier": flow.verifier}
    bad_secret = http.post(server.url("/token"), data=data, auth=(DEMO_CLIENT_ID, "nope"))
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    assert bad_secret.headers["www-authenticate"].startswith("Basic")
    anonymous = http.post(server.url("/token"), data={**data, "client_id": DEMO_CLIENT_ID})
    assert anonymous.status_code == 401
    # The failed attempts did not consume the code.
    assert exchange(http, server, code, flow.verifier).status_code == 200


def test_code_issued_to_one_client_is_refused_to_another(http: httpx.Client) -> None:
    other = IdpClient("other-app", "other-secret", (DEFAULT_REDIRECT_URI,))
    with IdpServer(IdentityProvider(clients=[demo_client(), other])) as server:
        flow = Flow()
        code = code_from(log_in(http, server, "ada", flow), flow, server)
        response = http.post(server.url("/token"), auth=("other-app", "other-secret"),
                             data={"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": DEFAULT_REDIRECT_URI, "code_verifier": flow.verifier})
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_userinfo_refuses_missing_invalid_and_expired_tokens(http: httpx.Client) -> None:
    clock = FakeClock()
    with IdpServer(IdentityProvider(clock=clock, access_token_ttl_s=60)) as server:
        missing = http.get(server.url("/userinfo"))
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        invalid = http.get(server.url("/userinfo"), headers={"Authorization": "Bearer not-a-token"})
        assert invalid.status_code == 401 and 'error="invalid_token"' in invalid.headers["www-authenticate"]

        flow = Flow()
        body = exchange(http, server, code_from(log_in(http, server, "ada", flow), flow, server),
                        flow.verifier).json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        assert http.get(server.url("/userinfo"), headers=auth).status_code == 200
        clock.now += 61
        expired = http.get(server.url("/userinfo"), headers=auth)
        assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"


def test_expired_code_is_refused(http: httpx.Client) -> None:
    clock = FakeClock()
    with IdpServer(IdentityProvider(clock=clock, code_ttl_s=30)) as server:
        flow = Flow()
        code = code_from(log_in(http, server, "ada", flow), flow, server)
        clock.now += 31
        assert exchange(http, server, code, flow.verifier).json()["error"] == "invalid_grant"


def test_refresh_grant_rotates_the_refresh_token(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    first = exchange(http, server, code_from(log_in(http, server, "alan", flow), flow, server),
                     flow.verifier).json()
    refreshed = http.post(server.url("/token"), data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET})
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["access_token"] != first["access_token"] and body["refresh_token"] != first["refresh_token"]
    claims = verify_id_token(http, server, body["id_token"], nonce=None, access_token=body["access_token"])
    assert "nonce" not in claims and claims["groups"] == ["sophia-analysts"]
    info = http.get(server.url("/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.json()["groups"] == ["sophia-analysts"]

    replay = http.post(server.url("/token"), auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                       data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    wider = http.post(server.url("/token"), auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                      data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                            "scope": f"{SCOPE} offline_access"})
    assert wider.json()["error"] == "invalid_scope"


def test_id_token_with_a_forged_signature_fails_verification(server: IdpServer, http: httpx.Client) -> None:
    flow = Flow()
    body = exchange(http, server, code_from(log_in(http, server, "erin", flow), flow, server),
                    flow.verifier).json()
    header, payload, signature = body["id_token"].split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
        b'"sophia-executives"', b'"sophia-super-users"')
    forged = ".".join([header, base64.urlsafe_b64encode(claims).rstrip(b"=").decode(), signature])
    with pytest.raises(BadSignatureError):
        verify_id_token(http, server, forged, nonce=flow.nonce, access_token=body["access_token"])


def test_authlib_oauth2_client_interoperates(server: IdpServer, http: httpx.Client) -> None:
    from authlib.common.security import generate_token

    meta = http.get(server.url("/.well-known/openid-configuration")).json()
    for auth_method in ("client_secret_basic", "client_secret_post"):
        with OAuth2Client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, scope=SCOPE, redirect_uri=DEFAULT_REDIRECT_URI,
                          code_challenge_method="S256", token_endpoint_auth_method=auth_method) as client:
            verifier, nonce = generate_token(48), generate_token(20)
            url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                          nonce=nonce)
            action, request_id = login_form(http, server, dict(httpx.URL(url).params))
            redirect = http.post(action, data={"request_id": request_id, "username": "ada", "password": "ada-demo"})
            token = client.fetch_token(meta["token_endpoint"], authorization_response=redirect.headers["location"],
                                       state=state, code_verifier=verifier)
            verify_id_token(http, server, token["id_token"], nonce=nonce, access_token=token["access_token"])
            assert client.get(meta["userinfo_endpoint"]).json()["groups"] == ["sophia-super-users"]
            new = client.refresh_token(meta["token_endpoint"])
            assert new["access_token"] != token["access_token"]
            assert client.get(meta["userinfo_endpoint"]).json()["preferred_username"] == "ada"


def test_logout_redirects_only_to_registered_uris(http: httpx.Client) -> None:
    client = demo_client(post_logout_redirect_uris=["http://127.0.0.1:8000/hub/logged-out"])
    with IdpServer(IdentityProvider(clients=[client])) as server:
        ok = http.get(server.url("/logout"), params={"post_logout_redirect_uri": "http://127.0.0.1:8000/hub/logged-out",
                                                     "client_id": DEMO_CLIENT_ID, "state": "s1"})
        assert ok.status_code == 302 and ok.headers["location"] == "http://127.0.0.1:8000/hub/logged-out?state=s1"
        bad = http.get(server.url("/logout"), params={"post_logout_redirect_uri": "http://evil.example/"})
        assert bad.status_code == 400 and "location" not in bad.headers
        assert http.get(server.url("/logout")).status_code == 200


def test_key_file_is_created_then_reused(tmp_path: Path) -> None:
    key_path = tmp_path / "idp" / "signing-key.pem"
    first = IdentityProvider(issuer="http://idp.test", key_path=key_path)
    assert key_path.stat().st_mode & 0o077 == 0
    second = IdentityProvider(issuer="http://idp.test", key_path=key_path)
    assert first.kid == second.kid == first.jwks()["keys"][0]["kid"]
    assert IdentityProvider(issuer="http://idp.test").kid != first.kid


def test_demo_users_cover_every_role_and_a_refusal() -> None:
    users = {u.username: u for u in demo_users()}
    groups = {g for u in users.values() for g in u.groups}
    assert {"sophia-super-users", "sophia-analysts", "sophia-executives", "sophia-developers"} <= groups
    assert not any(g.startswith("sophia-") for g in users["nobody"].groups)
    assert any(len([g for g in u.groups if g.startswith("sophia-")]) > 1 for u in users.values())
    assert all(u.password == f"{u.username}-demo" for u in users.values())
    assert len({u.sub for u in users.values()}) == len(users)


def test_oauthenticator_settings_point_at_the_running_endpoints(server: IdpServer, http: httpx.Client) -> None:
    settings = server.idp.oauthenticator_settings()
    doc = http.get(server.url("/.well-known/openid-configuration")).json()
    assert settings["authorize_url"] == doc["authorization_endpoint"]
    assert settings["token_url"] == doc["token_endpoint"]
    assert settings["userdata_url"] == doc["userinfo_endpoint"]
    assert settings["oauth_callback_url"] == DEFAULT_REDIRECT_URI
    assert (settings["client_id"], settings["client_secret"]) == (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    assert set(settings["scope"]) <= set(doc["scopes_supported"])


@pytest.mark.parametrize("urlencoded", [True, False])
def test_basic_auth_accepts_both_secret_spellings(http: httpx.Client, urlencoded: bool) -> None:
    """authlib form-urlencodes the Basic credentials (RFC 6749), oauthenticator does not."""
    secret = "s3cret+with%odd:chars"
    with IdpServer(IdentityProvider(clients=[IdpClient(DEMO_CLIENT_ID, secret, (DEFAULT_REDIRECT_URI,))])) as server:
        flow = Flow()
        code = code_from(log_in(http, server, "alan", flow), flow, server)
        sent = quote_plus(secret) if urlencoded else secret
        basic = base64.b64encode(f"{DEMO_CLIENT_ID}:{sent}".encode()).decode()
        # exactly what oauthenticator's GenericOAuthenticator posts with basic_auth=True
        response = http.post(server.url("/token"), headers={"Authorization": f"Basic {basic}"},
                             data={"code": code, "grant_type": "authorization_code",
                                   "redirect_uri": DEFAULT_REDIRECT_URI, "data": "None",
                                   "code_verifier": flow.verifier})
        assert response.status_code == 200, response.text
        wrong = base64.b64encode(f"{DEMO_CLIENT_ID}:{quote_plus(secret)}x".encode()).decode()
        refused = http.post(server.url("/token"), headers={"Authorization": f"Basic {wrong}"},
                            data={"grant_type": "refresh_token", "refresh_token": response.json()["refresh_token"]})
        assert refused.status_code == 401
