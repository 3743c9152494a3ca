"""`sophia demo`: the whole platform on its embedded defaults, started in the right order.

1. the sandbox (vendor simulator + identity provider) as its own process, as the real vendors would be,
   its company kept at the wall clock (`--follow-clock`) so every refresh finds new changes;
2. a sync of every source through the real connectors into the raw store (incremental after the first);
3. a published warehouse snapshot with core and marts built by the transforms;
4. the hub (JupyterHub, signing in through the sandbox identity provider) with its services: the query
   door, and the dashboards and scheduler services where their commands exist;
then it prints what to open and the demo logins, and runs until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sophia_lib.config import SophiaConfig
from sophia_lib.errors import SophiaError

Echo = Callable[[str], None]
READY = "Press Ctrl-C"


class DemoError(SophiaError):
    """A part of the demo did not start."""

    reason = "demo"


@dataclass
class ChildProcess:
    """A Sophia subprocess whose output goes to a log file under ``var/logs``."""

    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_child(config: SophiaConfig, name: str, *args: str) -> ChildProcess:
    """Run ``sophia ARGS`` with the same configuration, logging to ``var/logs/<name>.log``."""
    logs = config.var_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("w") as out:
        # Its own session: a terminal's Ctrl-C reaches only the demo, which then stops each child once.
        process = subprocess.Popen([sys.executable, "-m", "sophia_lib", *args], stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   start_new_session=True)
    return ChildProcess(name, process, log)


def wait_until_ready(child: ChildProcess, url: str, timeout_s: float) -> None:
    """Wait for the child's ready line and its health URL; a child that dies shows its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        if child.process.poll() is not None:
            raise DemoError(f"the {child.name} exited with code {child.process.returncode}:\n{child.output()[-3000:]}",
                            fix=f"see {child.log}; a port in use? set SOPHIA_SANDBOX__PORT / SOPHIA_SANDBOX__IDP_PORT")
        if READY in child.output():
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise DemoError(f"the {child.name} did not become ready in {timeout_s:.0f}s.", fix=f"see {child.log}")
        time.sleep(0.25)


@dataclass
class DemoPlatform:
    """What the demo started, so it can print it and stop it."""

    lines: list[str] = field(default_factory=list)
    children: list[ChildProcess] = field(default_factory=list)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def _sandbox_lines(output: str) -> list[str]:
    text = output.split(READY, 1)[0].splitlines()
    start = next((i for i, line in enumerate(text) if line.startswith("vendor simulator")), 0)
    return text[start:]


def _hub_lines(config: SophiaConfig) -> list[str]:
    """The hub's URL and one demo login per Sophia role."""
    from sophia_lib.roles import ROLES, role_for_groups
    from sophia_lib.sandbox.idp import demo_users

    first: dict[str, tuple[str, str]] = {}
    for user in demo_users():
        role = role_for_groups(user.groups, config.hub.group_roles)
        if role is not None and len(user.groups) == 1:
            first.setdefault(role, (user.username, user.password))
    lines = [f"hub                {config.hub.base_url()}/   sign in with the demo identity provider as:"]
    for role in ROLES:
        if role in first:
            name, password = first[role]
            lines.append(f"  {name:<8} password {password:<14} {role.replace('_', ' ')}")
    return lines


def start_demo(config: SophiaConfig, echo: Echo = print, progress: bool = True) -> DemoPlatform:
    """Start every part that exists; return a handle that stops them."""
    import sophia_lib.transforms  # noqa: F401 - registers core and marts as the publish build step
    from sophia_lib.sync import run_sync
    from sophia_lib.warehouse import build_all, open_warehouse

    platform = DemoPlatform()
    try:
        echo(f"sandbox: starting the vendor simulator and identity provider ({config.sandbox.size} company) …")
        sandbox = start_child(config, "sandbox", "sandbox", "serve", "--follow-clock")
        platform.children.append(sandbox)
        base = f"http://{config.sandbox.host}:{config.sandbox.port}"
        wait_until_ready(sandbox, f"{base}/_control/health", timeout_s=600)

        echo("sync: syncing every source through its connector …")
        started = time.perf_counter()
        results = run_sync(config, progress=progress)
        took = time.perf_counter() - started
        failed = [r for r in results if r.status == "failed"]
        for result in results:
            records = result.total("records")
            echo(f"  {result.source:<11} {result.status:<9} {records:>9,} records"
                 + (f"  {result.error}" if result.error else ""))
        echo(f"sync: {len(results) - len(failed)} of {len(results)} sources synced in {took:.0f}s")

        warehouse = open_warehouse(config)
        try:
            snapshot = warehouse.publish(build_all)
        finally:
            warehouse.close()
        echo(f"warehouse: published snapshot {snapshot.id} (core and marts built)")

        echo("hub: starting JupyterHub with the query door and the other services …")
        hub = start_child(config, "hub", "hub")
        platform.children.append(hub)
        wait_until_ready(hub, f"{config.hub.base_url()}/hub/health", timeout_s=180)
        platform.lines = [
            "",
            "Sophia demo is running. Open:",
            *_hub_lines(config),
            *_sandbox_lines(sandbox.output()),
            f"warehouse          {config.warehouse.url}   snapshot {snapshot.id}",
            "  inspect           .venv/bin/sophia warehouse status   ·   .venv/bin/sophia sources status",
            f"logs               {config.var_dir / 'logs'}",
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
            if any(child.process.poll() is not None for child in platform.children):
                echo("a part of the demo exited; stopping (see the logs above)")
                break
    except KeyboardInterrupt:
        echo("stopping …")
    finally:
        from sophia_lib.processes import ignore_further_signals

        ignore_further_signals()
        platform.stop()
