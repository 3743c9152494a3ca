"""The ``query`` service: the HTTP face of the query door (tornado, as JupyterHub itself).

Endpoints (JSON in; Arrow IPC stream out, ``application/vnd.apache.arrow.stream``)::

    POST /api/sql     {"sql": "select …", "params": {…}}
    POST /api/table   {"name": "core.accounts", "columns": […], "limit": n}
    POST /api/metric  {"name": "pipeline_value", "by": […], "grain": "week", "start": …, "end": …, "where": …}
    GET  /api/tables  the tables the caller may read (JSON)
    GET  /api/whoami  the caller as the service sees them (JSON)
    GET  /health      liveness and the snapshot served (no token needed, no data)

Every /api request carries ``Authorization: token <hub-issued token>``. Results carry the snapshot id
and "as of" in the Arrow schema metadata and in ``X-Sophia-Snapshot`` / ``X-Sophia-As-Of`` headers.
Errors are JSON ``{"error", "fix", "reason"}`` with a 4xx/5xx status.

Run by JupyterHub as a service it binds to ``JUPYTERHUB_SERVICE_URL`` and also answers under
``JUPYTERHUB_SERVICE_PREFIX`` (through the hub's proxy); alone it binds ``query.host:query.port``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlparse

from tornado import httpserver, web

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.errors import SophiaError
from sophia_lib.query.door import QueryDoor, QueryRequest, TKind
from sophia_lib.query.errors import BadQueryError, QueryError
from sophia_lib.query.identity import HubIdentity, Identity
from sophia_lib.service_thread import RunningService, serve_in_thread

ARROW_STREAM = "application/vnd.apache.arrow.stream"
log = logging.getLogger("sophia.query")


class Identifier(Protocol):
    async def identify(self, token: str | None) -> Identity: ...  # may also take audience=…


class _Handler(web.RequestHandler):
    service: QueryService

    def initialize(self, service: QueryService) -> None:
        self.service = service

    def token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() in ("token", "bearer") and value.strip() else None

    async def identity(self) -> Identity:
        audience = self.request.headers.get("X-Sophia-Audience")
        if audience:  # honoured only for a trusted service's token (HubIdentity decides)
            return await self.service.identifier.identify(self.token(), audience=audience)  # type: ignore[call-arg]
        return await self.service.identifier.identify(self.token())

    def fail(self, exc: SophiaError) -> None:
        status = getattr(exc, "status", 500)
        if status == 401:
            self.set_header("WWW-Authenticate", 'token realm="sophia-query"')
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": exc.message, "fix": exc.fix, "reason": exc.reason}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        message = self._reason if status_code != 500 else "the query service failed; its log has the details"
        self.finish(json.dumps({"error": message, "fix": None, "reason": "internal"}))


class QueryHandler(_Handler):
    def initialize(self, service: QueryService, kind: TKind) -> None:  # type: ignore[override]
        self.service = service
        self.kind = kind

    async def post(self) -> None:
        try:
            identity = await self.identity()
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError:
                raise BadQueryError("the request body is not JSON.", fix="send a JSON object") from None
            if not isinstance(body, dict):
                raise BadQueryError("the request body must be a JSON object.", fix="send a JSON object")
            request = QueryRequest.from_json(self.kind, body)
            result = await self.service.in_worker(self.service.door.run, identity, request)
        except SophiaError as exc:
            self.fail(exc if isinstance(exc, QueryError) else BadQueryError(exc.message, fix=exc.fix))
            return
        self.set_header("Content-Type", ARROW_STREAM)
        self.set_header("X-Sophia-Snapshot", result.snapshot_id)
        self.set_header("X-Sophia-As-Of", result.as_of)
        self.set_header("X-Sophia-Cache", "hit" if result.cached else "miss")
        self.set_header("X-Sophia-Rows", str(result.rows))
        self.finish(result.body)


class TablesHandler(_Handler):
    async def get(self) -> None:
        try:
            identity = await self.identity()
            tables = await self.service.in_worker(self.service.door.tables, identity)
        except SophiaError as exc:
            self.fail(exc if isinstance(exc, QueryError) else BadQueryError(exc.message, fix=exc.fix))
            return
        self.finish({"tables": tables})


class WhoAmIHandler(_Handler):
    async def get(self) -> None:
        try:
            identity = await self.identity()
        except QueryError as exc:
            self.fail(exc)
            return
        self.finish(identity.to_dict())


class HealthHandler(_Handler):
    def get(self) -> None:
        current = self.service.door.readers.current
        self.finish({"status": "ok", "snapshot": current[0].id if current else None,
                     "as_of": current[0].as_of.isoformat() if current else None})


class QueryService:
    """The door plus its HTTP application; ``identifier`` defaults to the hub (tests may pass another)."""

    def __init__(self, config: SophiaConfig, *, identifier: Identifier | None = None,
                 door: QueryDoor | None = None, prefix: str | None = None) -> None:
        self.config = config
        self.door = door or QueryDoor(config)
        self.identifier = identifier or HubIdentity.from_config(config)
        self.executor = ThreadPoolExecutor(config.query.workers, thread_name_prefix="sophia-query")
        self.prefix = prefix if prefix is not None else os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def app(self) -> web.Application:
        routes: list[Any] = []
        for base in sorted({"/", "/" + self.prefix.strip("/") + "/" if self.prefix.strip("/") else "/"}):
            routes += [
                (f"{base}api/sql", QueryHandler, {"service": self, "kind": "sql"}),
                (f"{base}api/table", QueryHandler, {"service": self, "kind": "table"}),
                (f"{base}api/metric", QueryHandler, {"service": self, "kind": "metric"}),
                (f"{base}api/tables", TablesHandler, {"service": self}),
                (f"{base}api/whoami", WhoAmIHandler, {"service": self}),
                (f"{base}health", HealthHandler, {"service": self}),
            ]
        return web.Application(routes, log_function=_log_request)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.door.close()


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING
    log.log(level, "%d %s %s %.1fms", status, handler.request.method, handler.request.path,
            1000 * handler.request.request_time())


def bind_address(config: SophiaConfig) -> tuple[str, int]:
    """Where to listen: JUPYTERHUB_SERVICE_URL when the hub runs us, else query.host:query.port."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parsed = urlparse(url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80
    return config.query.host, config.query.port


def start_in_thread(config: SophiaConfig, *, identifier: Identifier | None = None, host: str = "127.0.0.1",
                    port: int = 0) -> RunningService[QueryService]:
    """Start the service on its own event loop thread; port 0 picks a free port."""
    return serve_in_thread(QueryService(config, identifier=identifier), host=host, port=port,
                           name="sophia-query-service")


def serve(config: SophiaConfig, on_ready: Callable[[str], Awaitable[None] | None] | None = None) -> None:
    """Run the service until SIGINT/SIGTERM (``sophia query serve``; the hub starts it this way too)."""
    host, port = bind_address(config)
    service = QueryService(config)

    async def main() -> None:
        server = httpserver.HTTPServer(service.app())
        server.listen(port, host)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        log.info("query service on http://%s:%d (policy %s)", host, port, config.query.policy or "shipped")
        if on_ready is not None:
            maybe = on_ready(f"http://{host}:{port}")
            if maybe is not None:
                await maybe
        await done.wait()
        server.stop()

    try:
        asyncio.run(main())
    finally:
        service.close()
