"""Live mode: Voila behind the dashboards service, read-only, each kernel querying as its viewer.

One Voila server runs as a child process on loopback, protected by a random token only this service
knows, with no hub token in its environment. The service proxies the viewer's browser to it and:

- sets ``X-Sophia-Viewer-Token`` to the viewer's own OAuth token (which the query service resolves to
  the viewer); Voila hands it to the kernel as ``HTTP_X_SOPHIA_VIEWER_TOKEN``. Whatever identity header
  or parameter the browser sends is dropped first.
- lets through only the kernel messages widgets need (comm and kernel-info messages); an
  ``execute_request`` or any other message closes the socket with 1008 — no code runs from the browser.
- ties each kernel to the viewer whose page started it; no one else may connect to it.
- bounds the number of live kernels (``dashboards.live_max_kernels``): the next viewer gets a "busy"
  page; idle kernels are culled by Voila (``dashboards.live_idle_cull_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sophia_lib.errors import SophiaError

log = logging.getLogger("sophia.dashboards")
VIEWER_HEADER = "X-Sophia-Viewer-Token"
KERNEL_ID = re.compile(rb'"kernelId":\s*"([0-9a-f-]{36})"')
ALLOWED_MESSAGES = {"comm_msg", "comm_info_request", "kernel_info_request", "comm_close"}
WIDGET_TARGETS = ("jupyter.widget",)
KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SOPHIA_CONFIG",
            "SOPHIA_VAR_DIR")


def message_allowed(frame: str | bytes) -> tuple[bool, str]:
    """Whether a browser → kernel websocket frame may pass: (allowed, msg_type)."""
    try:
        if isinstance(frame, bytes):  # legacy binary framing: n, n offsets, then the JSON message first
            count = struct.unpack("!I", frame[:4])[0]
            offsets = struct.unpack(f"!{count}I", frame[4:4 + 4 * count])
            end = offsets[1] if count > 1 else len(frame)
            message = json.loads(frame[offsets[0]:end])
        else:
            message = json.loads(frame)
        msg_type = message["header"]["msg_type"]
    except (ValueError, KeyError, TypeError, struct.error, IndexError):
        return False, "unreadable"
    channel = message.get("channel", "shell")
    if channel not in ("shell", None):
        return False, msg_type
    if msg_type == "comm_open":
        target = (message.get("content") or {}).get("target_name", "")
        return target.startswith(WIDGET_TARGETS), msg_type
    return msg_type in ALLOWED_MESSAGES, msg_type


@dataclass
class LiveKernel:
    kernel_id: str
    viewer: str
    slug: str
    started: float = field(default_factory=time.monotonic)
    sockets: int = 0


class LiveKernels:
    """Which kernel belongs to whom, and how many run (pending page renders count too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kernels: dict[str, LiveKernel] = {}
        self.pending = 0

    def reserve(self) -> bool:
        if len(self.kernels) + self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def release(self) -> None:
        self.pending = max(0, self.pending - 1)

    def add(self, kernel_id: str, viewer: str, slug: str) -> None:
        self.kernels[kernel_id] = LiveKernel(kernel_id, viewer, slug)

    def owner(self, kernel_id: str) -> str | None:
        kernel = self.kernels.get(kernel_id)
        return kernel.viewer if kernel else None

    def drop(self, kernel_id: str) -> None:
        self.kernels.pop(kernel_id, None)

    @property
    def count(self) -> int:
        return len(self.kernels)


class VoilaServer:
    """The Voila child process: start, wait until it answers, stop."""

    def __init__(self, notebooks: Mapping[str, Path], folder: Path, base_url: str, query_url: str, *,
                 cull_idle_s: int = 600, kernel: str = "python3", env: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self.base_url = "/" + base_url.strip("/") + "/"
        self.query_url = query_url
        self.cull_idle_s = cull_idle_s
        self.kernel = kernel
        self.token = secrets.token_urlsafe(32)
        self.env = dict(env or {})
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.sync_notebooks(notebooks)

    def sync_notebooks(self, notebooks: Mapping[str, Path]) -> None:
        """Voila's root folder holds one ``<slug>.ipynb`` copy per dashboard (and nothing else)."""
        root = self.folder / "notebooks"
        root.mkdir(parents=True, exist_ok=True)
        wanted = {f"{slug}.ipynb" for slug in notebooks}
        for stale in root.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        for slug, path in notebooks.items():
            target = root / f"{slug}.ipynb"
            if not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
                shutil.copyfile(path, target)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> None:
        from sophia_lib.sandbox.background import free_port

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
        env.update(self.env)
        env["SOPHIA_QUERY_URL"] = self.query_url
        env["PYTHONUNBUFFERED"] = "1"
        args = [sys.executable, "-m", "voila", str(self.folder / "notebooks"), "--no-browser",
                f"--port={self.port}", "--Voila.ip=127.0.0.1", f"--Voila.base_url={self.base_url}",
                f"--token={self.token}", "--VoilaConfiguration.show_tracebacks=False",
                f"--VoilaConfiguration.http_header_envs={VIEWER_HEADER}",
                "--VoilaConfiguration.file_allowlist=[]",
                f"--MappingKernelManager.cull_idle_timeout={self.cull_idle_s}",
                "--MappingKernelManager.cull_interval=30", "--MappingKernelManager.cull_connected=True",
                "--MappingKernelManager.cull_busy=False"]
        log_file = (self.folder / "voila.log").open("ab")
        self.process = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                        cwd=self.folder, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SophiaError(f"voila exited with {self.process.returncode}: "
                                  f"{(self.folder / 'voila.log').read_text()[-2000:]}",
                                  fix="check that voila is installed (pip install voila)")
            try:
                if httpx.get(f"{self.url}{self.base_url}voila/static/", timeout=1,
                             headers=self.headers()).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SophiaError(f"voila did not answer on port {self.port} within {timeout_s:.0f} s.",
                          fix=f"see {self.folder / 'voila.log'}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def kernel_alive(self, client: httpx.AsyncClient, kernel_id: str) -> bool:
        try:
            response = await client.get(f"{self.url}{self.base_url}api/kernels/{kernel_id}", headers=self.headers())
        except httpx.HTTPError:
            return True  # unknown: keep counting it
        return response.status_code == 200

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)


async def reap(kernels: LiveKernels, voila: VoilaServer, every_s: float = 10) -> None:
    """Forget kernels Voila no longer has (culled, or shut down when their page closed)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            await asyncio.sleep(every_s)
            for kernel_id in list(kernels.kernels):
                kernel = kernels.kernels.get(kernel_id)
                if kernel is None or kernel.sockets or time.monotonic() - kernel.started < 30:
                    continue
                if not await voila.kernel_alive(client, kernel_id):
                    kernels.drop(kernel_id)


def viewer_env_token() -> str | None:
    """Inside a live kernel: the viewer's token Voila passed in (see the module docstring)."""
    return os.environ.get("HTTP_" + VIEWER_HEADER.upper().replace("-", "_"))


def adopt_viewer_token(environ: Any = None) -> None:
    """Make the viewer's token the one ``sophia_lib`` sends (live kernels only; a no-op elsewhere)."""
    environ = os.environ if environ is None else environ
    token = environ.get("HTTP_" + VIEWER_HEADER.upper().replace("-", "_"))
    if token:
        environ["SOPHIA_QUERY_TOKEN"] = token
        environ.pop("SOPHIA_QUERY_AUDIENCE", None)
