"""`sophia sandbox serve` and `sophia sandbox advance` as a user runs them: real processes, real ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port

SOPHIA = str(Path(sys.executable).parent / "sophia")
VENDORS = ["asana", "factors", "gong", "hubspot", "intercom", "linear", "looker", "netsuite", "notion",
           "salesforce", "slack"]


def test_serve_prints_every_vendor_and_advance_reaches_the_running_simulator(tmp_path: Path) -> None:
    port, idp_port = free_port(), free_port()
    env = {**os.environ, "SOPHIA_SANDBOX__SIZE": "small", "SOPHIA_SANDBOX__PORT": str(port),
           "SOPHIA_SANDBOX__IDP_PORT": str(idp_port)}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([SOPHIA, "sandbox", "serve"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        for vendor in VENDORS:
            assert f"http://127.0.0.1:{port}/{vendor}" in text
        assert f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration" in text
        assert "erin" in text and "sophia-executives" in text
        before = httpx.get(f"http://127.0.0.1:{port}/_control/health").json()["now"]

        advanced = subprocess.run([SOPHIA, "sandbox", "advance", "--minutes", "1440"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
        assert advanced.returncode == 0, advanced.stderr
        assert "advanced the running simulator" in advanced.stdout
        after = httpx.get(f"http://127.0.0.1:{port}/_control/health").json()["now"]
        assert after > before
        discovery = httpx.get(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration").json()
        assert discovery["issuer"] == f"http://127.0.0.1:{idp_port}"
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0, log.read_text()
    assert "stopping" in log.read_text()
    # the advance was saved: the cached company continues from the new time
    from sophia_lib.sandbox.store import load

    assert load(tmp_path / "var" / "sandbox" / "small-42").now.isoformat().startswith(after[:16])


def test_unknown_size_is_a_clear_cli_error(tmp_path: Path) -> None:
    result = subprocess.run([SOPHIA, "sandbox", "generate", "--size", "huge"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "huge" in result.stderr and "small, medium, large" in result.stderr
    assert "Traceback" not in result.stderr
