"""Run the simulator on a port in a background thread (tests, `sophia sandbox serve`, the demo)."""

from __future__ import annotations

from sophia_lib.sandbox.background import BackgroundServer, free_port
from sophia_lib.sandbox.simulator.app import Sandbox
from sophia_lib.sandbox.simulator.faults import FaultInjector

__all__ = ["SandboxServer", "free_port"]


class SandboxServer(BackgroundServer):
    """A running simulator. ``with SandboxServer(sandbox) as server: server.url("slack")``."""

    label = "sandbox simulator"

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.sandbox = sandbox
        super().__init__(sandbox.app(), host, port)

    def url(self, vendor: str) -> str:
        """Base URL a connector is configured with for this vendor."""
        if vendor not in self.sandbox.vendors:
            raise KeyError(f"vendor {vendor!r} is not served; served: {', '.join(self.sandbox.vendors)}")
        return f"{self.base_url}/{vendor}"

    @property
    def faults(self) -> FaultInjector:
        return self.sandbox.faults
