"""Run the provider on a port in a background thread (tests, the demo)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from sophia_lib.sandbox.idp.provider import IdentityProvider


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class IdpServer:
    """A running provider: ``with IdpServer(IdentityProvider()) as idp: idp.issuer``.

    If the provider has no issuer, it gets this server's base URL.
    """

    def __init__(self, idp: IdentityProvider | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.idp = idp if idp is not None else IdentityProvider()
        self.host = host
        self.port = port or _free_port(host)
        if self.idp.issuer is None:
            self.idp.issuer = self.base_url
        self._server = uvicorn.Server(uvicorn.Config(self.idp.app(), host=host, port=self.port,
                                                     log_level="warning", access_log=False))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.idp.url("")

    def url(self, path: str) -> str:
        """Absolute URL of an endpoint under the issuer, e.g. ``url("/token")``."""
        return self.idp.url(path)

    def start(self, timeout_s: float = 20.0) -> IdpServer:
        self._thread = threading.Thread(target=self._server.run, name="sophia-idp", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"identity provider did not start on {self.base_url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
