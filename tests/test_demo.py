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
        deadline = time.monotonic() + 240
        while "Press Ctrl-C to stop" not in log.read_text():
            assert demo.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        port = env["SOPHIA_SANDBOX__PORT"]
        assert httpx.get(f"http://127.0.0.1:{port}/_control/health").json()["status"] == "ok"
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, log.read_text()[-4000:]
    return log.read_text()


def test_demo_syncs_every_source_publishes_and_stops_cleanly(tmp_path: Path) -> None:
    port, idp_port = free_port(), free_port()
    env = {**os.environ, "SOPHIA_SANDBOX__SIZE": "small", "SOPHIA_SANDBOX__PORT": str(port),
           "SOPHIA_SANDBOX__IDP_PORT": str(idp_port)}
    first = _run_demo(tmp_path, env, tmp_path / "first.log")
    for source in SOURCES:
        assert any(line.split()[:2] == [source, "succeeded"] for line in first.splitlines()), first
    assert "11 of 11 sources synced" in first
    assert "warehouse: published snapshot" in first
    assert f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration" in first
    assert "Traceback" not in first
    # everything it started is gone: the ports are free again
    with httpx.Client() as client:
        try:
            client.get(f"http://127.0.0.1:{port}/_control/health", timeout=1)
            raise AssertionError("the sandbox is still running after Ctrl-C")
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
