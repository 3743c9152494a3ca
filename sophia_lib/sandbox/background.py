"""Serve an ASGI app on a loopback port from a background thread (the sandbox's servers, tests)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """``with Subclass(...) as server: server.base_url`` — uvicorn in a daemon thread.

    Shutdown waits at most ``grace_s`` for open connections, so Ctrl-C and test teardown never hang.
    """

    label = "server"

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None, grace_s: int = 2) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                     access_log=False, timeout_graceful_shutdown=grace_s))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> Self:
        self._thread = threading.Thread(target=self._server.run, name=f"sophia-{self.label}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} did not start on {self.base_url} (is the port in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
