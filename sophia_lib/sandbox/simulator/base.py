"""What every simulated vendor shares: routing with faults, error safety, paging helpers.

A vendor module subclasses :class:`SimulatedVendor`, renders the canonical
:class:`~sophia_lib.sandbox.company.Company` into its native records in
:meth:`render`, declares its HTTP endpoints in :meth:`routes`, and says how it
answers a throttle, an error and an expired token. Everything else (fault
injection, never leaking a Python traceback) happens here once.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.auth import TokenStore, bearer
from sophia_lib.sandbox.simulator.faults import Fault, FaultInjector

log = logging.getLogger("sophia.sandbox")

Handler = Callable[[Request], Awaitable[Response]]


class Reply(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Raise to answer at once with this response (auth failures, vendor errors)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class ResetResponse(Response):
    """Starts a response, then drops the connection: the client sees a reset/incomplete read."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")]})
        await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": True})
        raise ConnectionResetError("sandbox fault: connection reset")


@dataclass
class NativeTable:
    """A vendor object's records, sorted by modification time for incremental filters.

    ``records`` are dicts in the vendor's native shape; ``modified`` are aware UTC
    datetimes parallel to it; ``deleted`` marks tombstones (served only where the
    vendor exposes deletes).
    """

    records: list[dict[str, Any]]
    modified: list[datetime]
    deleted: list[bool]
    key: str = "id"
    _index: dict[Any, int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, rows: Sequence[tuple[datetime, dict[str, Any], bool]], key: str = "id") -> NativeTable:
        ordered = sorted(rows, key=lambda r: (r[0], str(r[1].get(key))))
        table = cls([r[1] for r in ordered], [r[0] for r in ordered], [r[2] for r in ordered], key)
        table._index = {rec.get(key): i for i, rec in enumerate(table.records)}
        return table

    def __len__(self) -> int:
        return len(self.records)

    def get(self, record_id: Any) -> dict[str, Any] | None:
        i = self._index.get(record_id)
        return None if i is None else self.records[i]

    def select(self, since: datetime | None = None, until: datetime | None = None, *,
               inclusive: bool = True, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Records modified in (since, until], or [since, until] with inclusive, oldest first."""
        lo = 0
        if since is not None:
            lo = (bisect.bisect_left if inclusive else bisect.bisect_right)(self.modified, since)
        hi = len(self.records) if until is None else bisect.bisect_right(self.modified, until)
        return [self.records[i] for i in range(lo, hi) if include_deleted or not self.deleted[i]]


class SimulatedVendor:
    """Base of each vendor's simulator. Subclasses set ``name`` and override the hooks."""

    name: ClassVar[str] = ""

    def __init__(self, company: Company, faults: FaultInjector) -> None:
        self.company = company
        self.faults = faults
        self.tokens = TokenStore(self.name)
        self.tables: dict[str, NativeTable] = {}
        self.setup_credentials()
        self.render()

    # --- hooks -----------------------------------------------------------------------
    def render(self) -> None:
        """(Re)build ``self.tables`` from ``self.company``. Called at start and after advance."""
        raise NotImplementedError

    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        """(path relative to the vendor's mount, handler, methods)."""
        raise NotImplementedError

    def setup_credentials(self) -> None:
        """Seed the demo credentials into ``self.tokens``."""

    def credentials(self) -> dict[str, str]:
        """Demo credentials to print for `sophia sandbox serve` (names as the vendor calls them)."""
        return {}

    def demo_options(self) -> dict[str, str]:
        """Non-secret settings a connector needs for this sandbox besides its credentials (the demo
        stores them next to the credentials)."""
        return {}

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        """The vendor's own rate-limit answer."""
        return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": "1"})

    def error_response(self, request: Request, status: int, message: str) -> Response:
        """The vendor's own error envelope."""
        return JSONResponse({"error": message}, status_code=status)

    def expired_token_response(self, request: Request) -> Response:
        """What the vendor answers when the access token has expired."""
        return self.error_response(request, 401, "token expired")

    def access_token(self, request: Request) -> str | None:
        """The access token the caller sent (``Authorization: Bearer …`` unless the vendor differs)."""
        return bearer(request.headers.get("authorization"))

    # --- shared machinery --------------------------------------------------------------
    def starlette_routes(self) -> list[Route]:
        return [Route(path, self.guard(path, handler), methods=methods) for path, handler, methods in self.routes()]

    def guard(self, path: str, handler: Handler) -> Handler:
        """Wrap one endpoint with fault injection and error safety. A vendor may extend it
        (e.g. Salesforce counts API usage and adds ``Sforce-Limit-Info`` to every answer)."""
        async def endpoint(request: Request) -> Response:
            fault = self.faults.take(self.name, request.url.path.removeprefix(request.scope.get("root_path", "")))
            request.state.fault = fault
            try:
                if fault is not None:
                    early = await self._early_fault(request, fault)
                    if early is not None:
                        return early
                response = await handler(request)
            except Reply as reply:
                return reply.response
            except Exception:  # never a Python traceback on the wire
                log.exception("sandbox %s %s failed", self.name, path)
                return self.error_response(request, 500, "internal server error")
            if fault is not None and fault.kind == "malformed_json":
                return Response(b"<html><head><title>502 Bad Gateway</title></head><body>upstream error</body>"
                                b"</html>", status_code=200, media_type="application/json")
            if fault is not None and fault.kind == "truncated_page":
                body = bytes(response.body)
                return Response(body[: max(1, len(body) * 3 // 5)], status_code=response.status_code,
                                media_type="application/json")
            return response

        endpoint.__name__ = f"{self.name}_{handler.__name__}"
        return endpoint

    async def _early_fault(self, request: Request, fault: Fault) -> Response | None:
        if fault.kind == "throttle":
            return self.throttle_response(request, fault)
        if fault.kind == "server_error":
            status = int(fault.params.get("status", 503))
            return self.error_response(request, status, fault.params.get("message", "service unavailable"))
        if fault.kind == "slow":
            await asyncio.sleep(float(fault.params.get("delay_s", 30)))
            return None
        if fault.kind == "reset":
            return ResetResponse()
        if fault.kind == "token_expiry":
            self.tokens.expire(self.access_token(request))
            return self.expired_token_response(request)
        return None

    def page(self, request: Request, items: Sequence[dict[str, Any]], start: int, size: int) -> list[dict[str, Any]]:
        """items[start:start+size], with the record-level faults (drift, duplicates) applied."""
        page = list(items[start:start + size])
        fault: Fault | None = getattr(request.state, "fault", None)
        if fault is None:
            return page
        if fault.kind == "duplicate_record" and start > 0:
            page.insert(0, items[start - 1])
        elif fault.kind == "schema_drift":
            page = [drift(record, fault.params) for record in page]
        return page

    def require_bearer(self, request: Request) -> str:
        """The caller's live access token, or the vendor's 401 answer."""
        token = self.access_token(request)
        if token is None or self.tokens.check(token) is None:
            raise Reply(self.expired_token_response(request))
        return token

    def json_body(self, request_body: bytes) -> Any:
        """Parse a request body; a malformed one gets the vendor's 400."""
        try:
            return json.loads(request_body or b"null")
        except json.JSONDecodeError as exc:
            raise Reply(self.error_response_for_body(exc)) from None

    def error_response_for_body(self, exc: Exception) -> Response:
        return JSONResponse({"error": f"malformed JSON body: {exc}"}, status_code=400)


def drift(record: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with its schema drifted: a new field, a changed type or a removed field."""
    changed = copy.deepcopy(record)
    change = params.get("change", "new_field")
    target = params.get("field")
    if change == "new_field":
        changed[target or "sophia_drift_new_field"] = params.get("value", "drift")
        return changed
    candidates = [k for k, v in changed.items() if k.lower() not in ("id", "gid", "ts") and
                  isinstance(v, str | int | float | bool) and v is not None]
    target = target or (candidates[0] if candidates else None)
    if target is None or target not in changed:
        return changed
    if change == "removed_field":
        del changed[target]
    elif change == "changed_type":
        value = changed[target]
        changed[target] = str(value) if isinstance(value, int | float | bool) else {"value": value}
    return changed
