"""Faults on demand: per vendor, per endpoint, by count or probability.

Tests (through :class:`FaultInjector` directly, or the ``/_control/faults`` API)
arm a fault; the vendor endpoint that matches takes it on its next request and
answers the way that vendor fails: its own throttle format, its own error
envelope, a slow answer, a dropped connection, a broken or truncated body, an
expired token, a drifted schema, or a record repeated across two pages.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TFaultKind = Literal[
    "throttle",          # the vendor's own rate-limit signal
    "server_error",      # 5xx in the vendor's error envelope (params: status, default 503)
    "slow",              # answer after params["delay_s"] seconds (default 30: past a client timeout)
    "reset",             # connection dropped before a complete response
    "malformed_json",    # 200 with a body that is not JSON (a proxy's HTML page)
    "truncated_page",    # 200 with the JSON body cut off mid-way
    "token_expiry",      # the caller's access token expires now: vendor's 401, token revoked
    "schema_drift",      # params: change = new_field | changed_type | removed_field, field
    "duplicate_record",  # the page repeats the last record of the previous page
]
FAULT_KINDS: tuple[str, ...] = TFaultKind.__args__  # type: ignore[attr-defined]


@dataclass
class Fault:
    """One armed fault. ``endpoint`` is a glob over the vendor-relative path ("*" for all)."""

    vendor: str
    kind: str
    endpoint: str = "*"
    count: int | None = 1          # how many requests it hits; None = until cleared
    probability: float = 1.0       # chance per matching request
    params: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Thread-safe registry of armed faults; seeded so probabilistic faults replay."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)

    def add(self, vendor: str, kind: str, endpoint: str = "*", *, count: int | None = 1,
            probability: float = 1.0, **params: Any) -> Fault:
        """Arm a fault. Raises ValueError naming the valid kinds for an unknown one."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; valid: {', '.join(FAULT_KINDS)}")
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1]; got {probability}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None (until cleared); got {count}")
        fault = Fault(vendor=vendor, kind=kind, endpoint=endpoint, count=count,
                      probability=probability, params=params, id=next(self._ids))
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, vendor: str, path: str) -> Fault | None:
        """The fault that hits this request, if any (consumes one count)."""
        with self._lock:
            for fault in self._faults:
                if fault.vendor != vendor or not fnmatch.fnmatchcase(path, fault.endpoint):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def clear(self, vendor: str | None = None) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if vendor is not None and f.vendor != vendor]

    def armed(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)
