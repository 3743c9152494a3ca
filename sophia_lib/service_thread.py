"""Run a tornado service on its own event-loop thread (tests, benchmarks, embedding).

The query and dashboards services run as their own processes in production (``sophia query serve``,
``sophia dashboards serve``); this is the in-process way to start either one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tornado import httpserver
from tornado.netutil import bind_sockets
from tornado.web import Application


class Service(Protocol):
    def app(self) -> Application: ...

    def close(self) -> None: ...


TService = TypeVar("TService", bound=Service)


@dataclass
class RunningService(Generic[TService]):
    """A service running on a background thread: ``url``, then ``stop()``."""

    url: str
    service: TService
    stop: Callable[[], None]


def serve_in_thread(service: TService, *, host: str = "127.0.0.1", port: int = 0, name: str = "sophia-service",
                    started: Callable[[], Awaitable[None]] | None = None) -> RunningService[TService]:
    """Serve ``service.app()`` on ``host:port`` (0 picks a free port) until ``stop()``, which also closes it.
    ``started`` is awaited on the service's loop before the call returns."""
    sockets = bind_sockets(port, host)
    bound = sockets[0].getsockname()[1]
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            server = httpserver.HTTPServer(service.app())
            server.add_sockets(sockets)
            if started is not None:
                await started()
            state["loop"], state["done"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await state["done"].wait()
            server.stop()
            await server.close_all_connections()

        asyncio.run(main())

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait(30)

    def stop() -> None:
        state["loop"].call_soon_threadsafe(state["done"].set)
        thread.join(10)
        service.close()

    return RunningService(f"http://{host}:{bound}", service, stop)
