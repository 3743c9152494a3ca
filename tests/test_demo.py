"""`sophia demo` as a newcomer runs it: the sandbox comes up, every source syncs through its connector,
a snapshot is published, Ctrl-C stops everything; the second run reuses what exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sophia_lib.sandbox.background import free_port

SOPHIA = str(Path(sys.executable).parent / "sophia")
SOURCES = ["asana", "factors", "gong", "hubspot", "intercom", "linear", "looker", "netsuite", "notion",
           "salesforce", "slack"]


def _run_demo(cwd: Path, env: dict[str, str], log: Path) -> str:
    with log.open("w") as out:
        demo = subprocess.Popen([SOPHIA, "demo"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "Press Ctrl-C to stop." not in log.read_text():
            assert demo.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        port = env["SOPHIA_SANDBOX__PORT"]
        assert httpx.get(f"http://127.0.0.1:{port}/_control/health").json()["status"] == "ok"
        _check_the_hub(f"http://127.0.0.1:{env['SOPHIA_HUB__PORT']}")
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, log.read_text()[-4000:]
    return log.read_text()


def _check_the_hub(hub_url: str) -> None:
    """The hub answers, an analyst signs in through the identity provider and reads through the query door."""
    from tests.hub.flows import api, login

    assert httpx.get(f"{hub_url}/hub/health").status_code == 200
    client, home = login(hub_url, "alan")
    assert home.status_code == 200 and "Open workbench" in home.text, home.text[-2000:]
    assert api(client, hub_url, "GET", "/user").json()["groups"] == ["sophia-analysts"]
    assert httpx.get(f"{hub_url}/services/query/health").status_code == 200  # the door, behind the hub's proxy


def test_demo_syncs_every_source_publishes_and_stops_cleanly(tmp_path: Path) -> None:
    port, idp_port, hub_port = free_port(), free_port(), free_port()
    env = {**os.environ, "SOPHIA_SANDBOX__SIZE": "small", "SOPHIA_SANDBOX__PORT": str(port),
           "SOPHIA_SANDBOX__IDP_PORT": str(idp_port), "SOPHIA_HUB__PORT": str(hub_port),
           "SOPHIA_HUB__INTERNAL_PORT": str(free_port()), "SOPHIA_HUB__PROXY_API_PORT": str(free_port()),
           "SOPHIA_HUB__DASHBOARDS_PORT": str(free_port()), "SOPHIA_HUB__SCHEDULER_PORT": str(free_port()),
           "SOPHIA_QUERY__PORT": str(free_port())}
    first = _run_demo(tmp_path, env, tmp_path / "first.log")
    for source in SOURCES:
        assert any(line.split()[:2] == [source, "succeeded"] for line in first.splitlines()), first
    assert "11 of 11 sources synced" in first
    assert "warehouse: published snapshot" in first
    assert f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration" in first
    assert f"http://127.0.0.1:{hub_port}/" in first
    for login_line in ("ada      password ada-demo", "alan     password alan-demo", "erin     password erin-demo",
                       "dev      password dev-demo"):
        assert login_line in first, first
    assert "Traceback" not in first
    # everything it started is gone: the ports are free again
    with httpx.Client() as client:
        try:
            client.get(f"http://127.0.0.1:{port}/_control/health", timeout=1)
            raise AssertionError("the sandbox is still running after Ctrl-C")
        except httpx.ConnectError:
            pass
        try:
            client.get(f"http://127.0.0.1:{hub_port}/hub/health", timeout=1)
            raise AssertionError("the hub is still running after Ctrl-C")
        except httpx.ConnectError:
            pass

    second = _run_demo(tmp_path, env, tmp_path / "second.log")
    assert "11 of 11 sources synced" in second

    status = subprocess.run([SOPHIA, "sources", "status", "--json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    for source in SOURCES:
        assert f'"{source}"' in status.stdout
    warehouse = subprocess.run([SOPHIA, "warehouse", "status"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=60)
    assert "raw_salesforce.opportunity" in warehouse.stdout
    assert warehouse.stdout.count("*") >= 1  # the current snapshot is marked
