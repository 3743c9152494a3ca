"""Run the simulator on a port: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from sophia_lib.sandbox.simulator.app import Sandbox


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SandboxServer:
    """A running simulator. ``with SandboxServer(sandbox) as server: server.url("slack")``."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(sandbox.app(), host=host, port=self.port,
                                                     log_level="warning", access_log=False))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, vendor: str) -> str:
        """Base URL a connector is configured with for this vendor."""
        if vendor not in self.sandbox.vendors:
            raise KeyError(f"vendor {vendor!r} is not served; served: {', '.join(self.sandbox.vendors)}")
        return f"{self.base_url}/{vendor}"

    @property
    def faults(self):  # noqa: ANN201 - FaultInjector, re-exported for tests
        return self.sandbox.faults

    def start(self, timeout_s: float = 20.0) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.run, name="sophia-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox simulator did not start on {self.base_url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
