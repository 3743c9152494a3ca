"""The simulator: every vendor under its own prefix, plus a small control API.

``/<vendor>/…`` serves that vendor's API; ``/_control`` arms faults, advances the
clock and reports health. One process, one port: connectors get
``http://HOST:PORT/<vendor>`` as their base URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.base import SimulatedVendor
from sophia_lib.sandbox.simulator.faults import FAULT_KINDS, FaultInjector


class Sandbox:
    """The simulated outside world over one company: vendors, faults, clock."""

    def __init__(self, company: Company, vendors: list[str] | None = None, fault_seed: int = 0,
                 on_advance: Callable[[Company], None] | None = None) -> None:
        from sophia_lib.sandbox.vendors import vendor_classes

        classes = vendor_classes()
        unknown = sorted(set(vendors or []) - set(classes))
        if unknown:
            raise KeyError(f"unknown vendor(s) {unknown}; valid: {', '.join(classes)}")
        self.company = company
        self.on_advance = on_advance  # e.g. save the company so `sophia sandbox serve` survives a restart
        self.faults = FaultInjector(fault_seed)
        self._lock = threading.Lock()
        self.vendors: dict[str, SimulatedVendor] = {
            name: cls(company, self.faults) for name, cls in classes.items() if vendors is None or name in vendors
        }

    def advance(self, minutes: int) -> dict[str, dict[str, int]]:
        """Move the company's clock forward and re-render every vendor; returns counts per table and kind."""
        from sophia_lib.sandbox.clock import advance

        with self._lock:
            changes = advance(self.company, minutes)
            for vendor in self.vendors.values():
                vendor.render()
            if self.on_advance is not None:
                self.on_advance(self.company)
        return changes.counts()

    def catch_up(self, now: pd.Timestamp | None = None) -> int:
        """Advance the company to the wall clock (whole minutes); returns the minutes advanced (0 when the
        company is already there or ahead). The demo calls it at start and then every few minutes, so its
        data is as fresh as a real company's and each refresh finds new changes to sync."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        minutes = int((now - pd.Timestamp(self.company.now).tz_convert("UTC")).total_seconds() // 60)
        if minutes <= 0:
            return 0
        self.advance(minutes)
        return minutes

    def app(self) -> Starlette:
        routes: list[Any] = [Mount(f"/{name}", routes=v.starlette_routes()) for name, v in self.vendors.items()]
        routes.append(Mount("/_control", routes=self._control_routes()))
        return Starlette(routes=routes)

    def _control_routes(self) -> list[Route]:
        async def health(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok", "now": self.company.now.isoformat(),
                                 "vendors": sorted(self.vendors)})

        async def vendors(request: Request) -> JSONResponse:
            base = str(request.base_url).rstrip("/")
            return JSONResponse({name: {"base_url": f"{base}/{name}", "credentials": v.credentials()}
                                 for name, v in self.vendors.items()})

        async def faults(request: Request) -> JSONResponse:
            if request.method == "GET":
                return JSONResponse([f.to_dict() for f in self.faults.armed()])
            if request.method == "DELETE":
                self.faults.clear(request.query_params.get("vendor"))
                return JSONResponse({"cleared": True})
            try:
                spec = await request.json()
                if spec.get("vendor") not in self.vendors:
                    raise ValueError(f"unknown vendor {spec.get('vendor')!r}; valid: {', '.join(self.vendors)}")
                fault = self.faults.add(spec["vendor"], spec["kind"], spec.get("endpoint", "*"),
                                        count=spec.get("count", 1), probability=spec.get("probability", 1.0),
                                        **spec.get("params", {}))
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": str(exc), "valid_kinds": list(FAULT_KINDS)}, status_code=400)
            return JSONResponse(fault.to_dict(), status_code=201)

        async def advance(request: Request) -> JSONResponse:
            body = await request.json() if await request.body() else {}
            minutes = body.get("minutes", 15)
            if not isinstance(minutes, int) or minutes < 1:
                return JSONResponse({"error": "minutes must be a positive integer"}, status_code=400)
            changes = self.advance(minutes)
            return JSONResponse({"now": self.company.now.isoformat(), "changes": changes})

        return [
            Route("/health", health),
            Route("/vendors", vendors),
            Route("/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/advance", advance, methods=["POST"]),
        ]
