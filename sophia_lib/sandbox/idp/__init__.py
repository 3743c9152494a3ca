"""A local OpenID Connect identity provider for the demo and the tests.

The hub logs in through the real OAuth code path (oauthenticator's GenericOAuthenticator) against this
server, exactly as it would against Google or Entra: authorization-code flow with ``state``, ``nonce``
and PKCE (S256), client authentication by ``client_secret_basic`` or ``client_secret_post``, RS256 ID
tokens with a ``kid`` published at ``/jwks``, a ``/userinfo`` endpoint that returns the user's
``groups``, and refresh tokens that rotate.

Only the protocol plumbing is written here. Signing, the JWK set and key handling come from joserfc
(the JOSE library authlib itself is built on); randomness comes from :mod:`secrets`; secrets and
PKCE verifiers are compared in constant time. State lives in memory: a restart forgets codes and
tokens (not the key, when ``key_path`` is given).

Demo passwords are demo-only values (``<username>-demo``); never reuse this server outside a sandbox.

Usage::

    with IdpServer(IdentityProvider()) as idp:
        print(idp.issuer)            # http://127.0.0.1:<port>
"""

from sophia_lib.sandbox.idp.accounts import (
    DEFAULT_REDIRECT_URI,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SUPPORTED_SCOPES,
    IdpClient,
    IdpUser,
    demo_client,
    demo_users,
)
from sophia_lib.sandbox.idp.provider import IdentityProvider, OAuthError
from sophia_lib.sandbox.idp.server import IdpServer

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "IdentityProvider",
    "IdpClient",
    "IdpServer",
    "IdpUser",
    "OAuthError",
    "SUPPORTED_SCOPES",
    "demo_client",
    "demo_users",
]

