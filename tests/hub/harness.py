"""A real Sophia hub for tests: the sandbox identity provider in-process, `sophia hub` as a subprocess.

(Written here because ``tests/support/hub.py`` did not exist yet when these tests were written.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from sophia_lib.sandbox.background import free_port
from sophia_lib.sandbox.idp import IdentityProvider, IdpServer, demo_client
from tests.support.hub import stop_orphaned_proxy

SOPHIA = str(Path(sys.executable).parent / "sophia")


@dataclass
class RunningHub:
    url: str
    folder: Path
    config_file: Path
    log: Path
    idp: IdpServer
    process: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(folder: Path, sections: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sophia.yaml"
    path.write_text(yaml.safe_dump({"var_dir": "var", **sections}))
    return path


def hub_env(config_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPHIA_") or k == "SOPHIA_REQUIRE_SERVERS"}
    return {**env, "SOPHIA_CONFIG": str(config_file), "PYTHONUNBUFFERED": "1"}


@contextmanager
def sophia_hub(folder: Path, hub: dict[str, Any] | None = None, timeout_s: float = 90) -> Iterator[RunningHub]:
    """Start the sandbox IdP and `sophia hub` (with the query service, not the scheduler) on free ports;
    stop both at the end. ``folder/var`` must hold a published warehouse snapshot (see seed_warehouse)."""
    port = free_port()
    callback = f"http://127.0.0.1:{port}/hub/oauth_callback"
    idp = IdpServer(IdentityProvider(clients=[demo_client([callback])])).start()
    idp_port = int(idp.issuer.rsplit(":", 1)[1])
    settings = {"port": port, "internal_port": free_port(), "proxy_api_port": free_port(), "sandbox_idp": True,
                "cull_idle_after_s": 0, "services": ["query"], **(hub or {})}
    config_file = write_config(folder, {"hub": settings, "sandbox": {"idp_port": idp_port},
                                        "query": {"port": free_port()}})
    log = folder / "hub.log"
    with log.open("w") as out:
        process = subprocess.Popen([SOPHIA, "hub"], cwd=folder, env=hub_env(config_file), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = RunningHub(f"http://127.0.0.1:{port}", folder, config_file, log, idp, process)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, f"the hub exited:\n{running.output()[-4000:]}"
            try:
                if httpx.get(f"{running.url}/hub/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the hub did not start:\n{running.output()[-4000:]}"
            time.sleep(0.25)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        stop_orphaned_proxy(folder / "var" / "hub" / "jupyterhub-proxy.pid")
        idp.stop()


def wait_for_server(client: httpx.Client, hub_url: str, user: str, timeout_s: float = 120) -> dict[str, Any]:
    """Poll the hub until ``user``'s default server is ready; returns its model."""
    from tests.hub.flows import api

    deadline = time.monotonic() + timeout_s
    while True:
        model = api(client, hub_url, "GET", f"/users/{user}").json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        assert time.monotonic() < deadline, f"{user}'s server did not become ready: {model}"
        time.sleep(0.5)


def run_in_kernel(client: httpx.Client, hub_url: str, user: str, code: str, kernel: str | None = None,
                  timeout_s: float = 120) -> tuple[str, list[str]]:
    """Start a kernel in ``user``'s server (through the proxy, with their cookies), run ``code``, return
    (stdout, error tracebacks). The client must have opened the server once (its OAuth cookie)."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    base = f"{hub_url}/user/{user}"
    xsrf = next((c.value for c in client.cookies.jar if c.name == "_xsrf" and c.path.startswith(f"/user/{user}")),
                None)
    headers = {"X-XSRFToken": xsrf} if xsrf else {}
    body = {"name": kernel} if kernel else {}
    started = client.post(f"{base}/api/kernels", json=body, headers=headers)
    assert started.status_code == 201, (started.status_code, started.text)
    kernel_id = started.json()["id"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar
                       if c.path == "/" or c.path.startswith(f"/user/{user}"))
    msg_id = uuid.uuid4().hex

    async def execute() -> tuple[str, list[str]]:
        ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers={"Cookie": cookie, **headers}))
        conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex, "msg_type": "execute_request",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        out: list[str] = []
        errors: list[str] = []
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout_s)
            assert raw is not None, "the kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                conn.close()
                return "".join(out), errors

    try:
        return asyncio.run(execute())
    finally:
        client.delete(f"{base}/api/kernels/{kernel_id}", headers=headers)
