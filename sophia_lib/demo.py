"""`sophia demo`: the whole platform on its embedded defaults, started in the right order.

Today: the synthetic company (cached), the vendor simulator and the identity provider, the raw
store seeded with the simulator's records, and the first published warehouse snapshot. Later
surfaces (connectors, hub, dashboards, scheduler) join here as they land.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sophia_lib.config import SophiaConfig

Echo = Callable[[str], None]


def _identifier(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return re.sub(r"[^a-z0-9_]+", "_", snake).strip("_")[:60] or "records"


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Vendor records as a flat frame: nested objects become ``parent__child`` columns,
    lists are kept as JSON text (as a dlt-loaded raw table would carry them)."""
    frame = pd.json_normalize(records, sep="__")
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, list | dict)).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
    frame.columns = [_identifier(str(c)) for c in frame.columns]
    return frame.loc[:, ~frame.columns.duplicated()]


def seed_raw_store(sandbox: Any, warehouse: Any, echo: Echo = print) -> dict[str, int]:
    """Copy what each simulated vendor serves into ``raw_<vendor>`` (until the connectors land)."""
    counts: dict[str, int] = {}
    with warehouse.raw_writer(timeout=60) as writer:
        for vendor_name, vendor in sandbox.vendors.items():
            for object_name, table in vendor.tables.items():
                records = table.select()
                if records:
                    name = _identifier(object_name)
                    counts[f"raw_{vendor_name}.{name}"] = writer.write_table(
                        f"raw_{vendor_name}", name, records_frame(records))
    echo(f"warehouse: raw store seeded with {sum(counts.values()):,} records in {len(counts)} tables")
    return counts


@dataclass
class DemoPlatform:
    """What the demo started, so it can print it and stop it."""

    lines: list[str] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()
        self.stoppers.clear()


def start_demo(config: SophiaConfig, echo: Echo = print) -> DemoPlatform:
    """Start every part that exists; return a handle that stops them."""
    from sophia_lib.sandbox.services import prepare_company, start_sandbox_services
    from sophia_lib.warehouse import open_warehouse

    platform = DemoPlatform()
    try:
        services = start_sandbox_services(config, prepare_company(config, echo))
        platform.stoppers.append(services.stop)
        warehouse = open_warehouse(config)
        current = warehouse.current()
        if current is None:
            seed_raw_store(services.sandbox, warehouse, echo)
            current = warehouse.publish()
            echo(f"warehouse: published snapshot {current.id}")
        else:
            echo(f"warehouse: serving snapshot {current.id} (as of {current.as_of:%Y-%m-%d %H:%M} UTC)")
        platform.lines = [
            "",
            "Sophia demo is running. Open:",
            *services.describe(),
            f"warehouse          {warehouse.location}   snapshot {current.id}",
            "  inspect it with   .venv/bin/sophia warehouse status",
            "",
            "Press Ctrl-C to stop.",
        ]
    except BaseException:
        platform.stop()
        raise
    return platform


def run_demo(config: SophiaConfig, echo: Echo = print, stop: threading.Event | None = None) -> None:
    """Start the demo, print what to open, and run until Ctrl-C (or ``stop`` is set)."""
    platform = start_demo(config, echo)
    for line in platform.lines:
        echo(line)
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        echo("stopping …")
    finally:
        platform.stop()
