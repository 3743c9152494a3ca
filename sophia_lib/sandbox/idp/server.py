"""Run the provider on a port in a background thread (tests, the demo)."""

from __future__ import annotations

from sophia_lib.sandbox.background import BackgroundServer, free_port
from sophia_lib.sandbox.idp.provider import IdentityProvider


class IdpServer(BackgroundServer):
    """A running provider: ``with IdpServer(IdentityProvider()) as idp: idp.issuer``.

    If the provider has no issuer, it gets this server's base URL.
    """

    label = "identity provider"

    def __init__(self, idp: IdentityProvider | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.idp = idp if idp is not None else IdentityProvider()
        port = port or free_port(host)
        if self.idp.issuer is None:
            self.idp.issuer = f"http://{host}:{port}"
        super().__init__(self.idp.app(), host, port)

    @property
    def issuer(self) -> str:
        return self.idp.url("")

    def url(self, path: str) -> str:
        """Absolute URL of an endpoint under the issuer, e.g. ``url("/token")``."""
        return self.idp.url(path)
