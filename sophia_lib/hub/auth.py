"""Which oauthenticator class signs people in, and its settings, from ``hub:`` in sophia.yaml.

Google (``GoogleOAuthenticator``), Microsoft Entra ID (``AzureAdOAuthenticator``) or any OpenID Connect
provider (``GenericOAuthenticator``); the demo and the tests use the generic one against the sandbox
identity provider, the real authorization-code path. Groups come from the provider at every login and
auth refresh (``manage_groups``): a new hire in the right group gets in on first login, a person moved
out of a group loses that role at the next refresh.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from sophia_lib.config.typing import SecretRef, SophiaConfig
from sophia_lib.errors import ConfigError, SophiaError
from sophia_lib.roles import groups_of_role

AUTHENTICATOR_CLASSES = {
    "generic": "oauthenticator.generic.GenericOAuthenticator",
    "google": "oauthenticator.google.GoogleOAuthenticator",
    "azuread": "oauthenticator.azuread.AzureAdOAuthenticator",
}
DEFAULT_SCOPES = {
    "generic": ["openid", "profile", "email", "groups"],
    "google": ["openid", "email"],
    "azuread": ["openid", "profile", "email"],
}
DEFAULT_USERNAME_CLAIM = {"generic": "preferred_username", "google": "email", "azuread": "preferred_username"}
CRYPT_KEY_SECRET = "HUB_CRYPT_KEY"


def hub_url(config: SophiaConfig) -> str:
    """The URL people open (``hub.public_url``, else http://ip:port), without a trailing slash."""
    return config.hub.base_url()


def callback_url(config: SophiaConfig) -> str:
    return config.hub.oauth_callback_url()


def sandbox_issuer(config: SophiaConfig) -> str:
    return f"http://{config.sandbox.host}:{config.sandbox.idp_port}"


def refused_message(config: SophiaConfig) -> str:
    groups = ", ".join(sorted(config.hub.group_roles)) or "(none configured)"
    return (f"You signed in, but your account is in none of the Sophia groups ({groups}), so Sophia has no "
            "role for you. Ask your administrator to add you to the right group in your identity provider; "
            "access follows at your next sign-in, with no other step.")


def _require(value: Any, key: str, why: str, fix: str) -> Any:
    if value in (None, "", []):
        raise ConfigError(f"hub.{key} is not set: {why}.", fix=fix)
    return value


def secret_value(ref: SecretRef | None, key: str, config: SophiaConfig) -> str:
    from sophia_lib.secrets import resolve

    ref = _require(ref, key, f"the {config.hub.authenticator} authenticator needs it",
                   f"store it (`sophia credentials set HUB_CLIENT_SECRET`) and set hub.{key}: "
                   "{secret: HUB_CLIENT_SECRET} in sophia.yaml")
    try:
        return resolve(ref, config)
    except SophiaError as exc:
        raise ConfigError(f"hub.{key} = {ref}: {exc.message}", fix=exc.fix) from None


def discover(issuer: str) -> dict[str, Any]:
    """The provider's OpenID metadata, or a ConfigError naming ``hub.oidc_issuer``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(f"hub.oidc_issuer = {issuer!r}: cannot read {url} ({exc}).",
                          fix="check the issuer URL, or set hub.authorize_url, hub.token_url and "
                          "hub.userdata_url explicitly") from None


def crypt_key(config: SophiaConfig) -> str:
    """The auth-state encryption key: hub.crypt_key, else HUB_CRYPT_KEY from the store (made once)."""
    from sophia_lib.secrets import open_store

    if config.hub.crypt_key is not None:
        return secret_value(config.hub.crypt_key, "crypt_key", config)
    store = open_store(config)
    found = store.lookup(CRYPT_KEY_SECRET)
    if found is not None:
        return found[0].value
    key = secrets.token_hex(32)
    store.set(CRYPT_KEY_SECRET, key)
    return key


def authenticator_settings(config: SophiaConfig) -> tuple[str, dict[str, Any]]:
    """(authenticator class, its traits) for ``config.hub``; ConfigError naming the key when one is wrong."""
    hub = config.hub
    kind = hub.authenticator
    role_groups = sorted(hub.group_roles)
    admin_groups = groups_of_role("super_user", hub.group_roles)
    if not role_groups:
        raise ConfigError("hub.group_roles is empty: nobody could sign in.",
                          fix="map at least one IdP group to a Sophia role under hub.group_roles")
    traits: dict[str, Any] = {
        "oauth_callback_url": callback_url(config),
        "scope": hub.scopes or DEFAULT_SCOPES[kind],
        "username_claim": hub.username_claim or DEFAULT_USERNAME_CLAIM[kind],
        "manage_groups": True,
        "allowed_groups": set(role_groups),
        "admin_groups": set(admin_groups),
        "enable_auth_state": True,
        "refresh_pre_spawn": True,
        "auth_refresh_age": hub.auth_refresh_age_s,
        "custom_403_message": refused_message(config),
    }
    if kind == "generic":
        if hub.sandbox_idp:
            from sophia_lib.sandbox.idp import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

            issuer = hub.oidc_issuer or sandbox_issuer(config)
            endpoints = {"authorize_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
                         "userinfo_endpoint": f"{issuer}/userinfo", "end_session_endpoint": f"{issuer}/logout"}
            client_id = hub.client_id or DEMO_CLIENT_ID
            client_secret = secret_value(hub.client_secret, "client_secret", config) if hub.client_secret else (
                DEMO_CLIENT_SECRET)
            traits["login_service"] = "Sophia demo identity provider"
        else:
            explicit = hub.authorize_url and hub.token_url and hub.userdata_url
            if not explicit:
                _require(hub.oidc_issuer, "oidc_issuer", "the generic authenticator needs the provider's issuer "
                         "(or authorize_url, token_url and userdata_url)",
                         "set hub.oidc_issuer to the provider's issuer URL (or hub.sandbox_idp: true for the demo)")
            client_id = _require(hub.client_id, "client_id", "the generic authenticator needs the OAuth client id",
                                 "set hub.client_id to the client registered with your provider")
            client_secret = secret_value(hub.client_secret, "client_secret", config)
            endpoints = {} if explicit else discover(hub.oidc_issuer or "")
            traits["login_service"] = "your organisation"
        traits.update({
            "authorize_url": hub.authorize_url or endpoints.get("authorize_endpoint"),
            "token_url": hub.token_url or endpoints.get("token_endpoint"),
            "userdata_url": hub.userdata_url or endpoints.get("userinfo_endpoint"),
            "auth_state_groups_key": f"oauth_user.{hub.groups_claim}",
        })
        if endpoints.get("end_session_endpoint"):
            traits["logout_redirect_url"] = endpoints["end_session_endpoint"]
    elif kind == "azuread":
        traits["tenant_id"] = _require(hub.tenant_id, "tenant_id", "the azuread authenticator needs the Entra "
                                       "tenant", "set hub.tenant_id to your directory (tenant) id")
        client_id = _require(hub.client_id, "client_id", "the azuread authenticator needs the app registration's "
                             "client id", "set hub.client_id to the application (client) id")
        client_secret = secret_value(hub.client_secret, "client_secret", config)
        traits["auth_state_groups_key"] = f"user.{hub.groups_claim}"
    else:  # google
        domain = _require(hub.hosted_domain, "hosted_domain", "the google authenticator needs the Workspace domain",
                          "set hub.hosted_domain, e.g. example.com")
        key_file = _require(hub.google_service_account_key_file, "google_service_account_key_file",
                            "Google returns no groups without a service account that reads Workspace groups",
                            "create a service account with domain-wide delegation and set the key file's path")
        admin = _require(hub.google_admin_email, "google_admin_email", "the service account reads groups "
                         "acting as a Workspace admin", "set hub.google_admin_email")
        client_id = _require(hub.client_id, "client_id", "the google authenticator needs the OAuth client id",
                             "set hub.client_id to the OAuth client of your Google Cloud project")
        client_secret = secret_value(hub.client_secret, "client_secret", config)
        traits.update({
            "hosted_domain": [domain],
            "google_service_account_keys": {domain: str(key_file)},
            "gsuite_administrator": {domain: admin},
            "allowed_google_groups": {domain: set(role_groups)},
            "admin_google_groups": {domain: set(admin_groups)},
            "auth_state_groups_key": "google_user.google_groups",
        })
        del traits["admin_groups"]  # admin_google_groups decides admin status for Google
    traits["client_id"] = client_id
    traits["client_secret"] = client_secret
    return AUTHENTICATOR_CLASSES[kind], traits
