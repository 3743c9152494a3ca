"""A real JupyterHub for tests: started from any config, with an admin service token added, stopped cleanly.

``start_hub(config)`` runs ``jupyterhub`` (and, through it, the Python ``configurable-http-proxy``
found on PATH) in a private folder on free ports. The config may be text or a path; the starter
wraps it so that ports, the database, and one extra service holding ``admin_token`` (scopes to
create users, groups and tokens) are its own, whatever the config says. ``minimal_config`` writes a
small config (DummyAuthenticator, given services and roles) for tests that do not need Sophia's
full ``hub/jupyterhub_config.py``.

    with start_hub(minimal_config(services=[...], roles=[...])) as hub:
        hub.create_user("ana", groups=["sophia-analysts"])
        token = hub.token_for("ana", expires_in=60)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sophia_lib.sandbox.background import free_port

ADMIN_SERVICE = "sophia-test-admin"
ADMIN_SCOPES = ["admin:users", "admin:groups", "tokens", "list:users", "read:users", "read:groups",
                "list:groups", "read:roles"]
START_TIMEOUT_S = 60


@dataclass
class RunningHub:
    """A started hub: public ``url`` (its proxy), ``api_url`` (…/hub/api) and an ``admin_token``."""

    url: str
    api_url: str
    admin_token: str
    folder: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _users: set[str] = field(default_factory=set)

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return httpx.request(method, f"{self.api_url}/{path.lstrip('/')}", headers=headers, timeout=30, **kwargs)

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"hub API {response.request.method} {response.request.url} → "
                               f"{response.status_code}: {response.text}")
        return response.json() if response.content else None

    def create_user(self, name: str, groups: Sequence[str] = ()) -> None:
        if name not in self._users:
            response = self.api("POST", f"users/{name}")
            if response.status_code != 409:  # already there
                self._ok(response)
            self._users.add(name)
        for group in groups:
            self.add_to_group(group, [name])

    def add_to_group(self, group: str, users: Sequence[str]) -> None:
        response = self.api("POST", f"groups/{group}")
        if response.status_code != 409:
            self._ok(response)
        self._ok(self.api("POST", f"groups/{group}/users", json={"users": list(users)}))

    def remove_from_group(self, group: str, users: Sequence[str]) -> None:
        self._ok(self.api("DELETE", f"groups/{group}/users", json={"users": list(users)}))

    def token_for(self, user: str, *, expires_in: int | None = None, scopes: Sequence[str] | None = None,
                  note: str = "test") -> str:
        body: dict[str, Any] = {"note": note}
        if expires_in is not None:
            body["expires_in"] = expires_in
        if scopes is not None:
            body["scopes"] = list(scopes)
        return self._ok(self.api("POST", f"users/{user}/tokens", json=body))["token"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(5)
        finally:
            stop_orphaned_proxy(self.folder / "proxy.pid")


def stop_orphaned_proxy(pid_file: Path) -> None:
    """A hub that died (killed, or a managed service exited) leaves its proxy running in its own session."""
    try:
        pid = int(pid_file.read_text().strip())
        if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a reused pid
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def minimal_config(*, services: Sequence[Mapping[str, Any]] = (), roles: Sequence[Mapping[str, Any]] = (),
                   extra: str = "") -> str:
    """Config text: DummyAuthenticator (anyone may sign in; tests use API tokens), no spawning needed."""
    return "\n".join([
        "c = get_config()  # noqa",
        "c.JupyterHub.authenticator_class = 'dummy'",
        "c.Authenticator.allow_all = True",
        "c.JupyterHub.cleanup_servers = True",
        f"c.JupyterHub.services = {list(map(dict, services))!r}",
        f"c.JupyterHub.load_roles = {list(map(dict, roles))!r}",
        extra,
    ])


WRAPPER = """\
c = get_config()  # noqa
{load}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {pid!r}
c.JupyterHub.db_url = {db!r}
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.services = list(c.JupyterHub.services or []) + [{{"name": {admin!r}, "api_token": {token!r}}}]
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles or []) + [
    {{"name": {admin!r}, "scopes": {scopes!r}, "services": [{admin!r}]}}]
"""


@contextmanager
def start_hub(config: str | Path, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              timeout: float = START_TIMEOUT_S) -> Iterator[RunningHub]:
    """Start JupyterHub with ``config`` (text, or a path to a config file); stop it on exit."""
    folder = Path(tempfile.mkdtemp(prefix="sophia-hub-"))
    if isinstance(config, Path):
        load = f"load_subconfig({str(config.resolve())!r})"
    else:
        (folder / "base_config.py").write_text(config)
        load = f"load_subconfig({str(folder / 'base_config.py')!r})"
    port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(24)
    (folder / "jupyterhub_config.py").write_text(WRAPPER.format(
        load=load, port=port, hub_port=hub_port, proxy_api_port=proxy_api_port,
        pid=str(folder / "proxy.pid"), db=f"sqlite:///{folder / 'jupyterhub.sqlite'}",
        cookie=str(folder / "cookie_secret"), admin=ADMIN_SERVICE, token=token, scopes=ADMIN_SCOPES))
    bin_dir = str(Path(sys.executable).parent)
    child_env = {**os.environ, **(env or {})}
    child_env["PATH"] = bin_dir + os.pathsep + child_env.get("PATH", "")
    child_env.setdefault("CONFIGPROXY_AUTH_TOKEN", secrets.token_hex(16))
    jupyterhub = shutil.which("jupyterhub", path=child_env["PATH"]) or "jupyterhub"
    log_path = folder / "hub.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([jupyterhub, "-f", str(folder / "jupyterhub_config.py")], cwd=cwd or folder,
                                   env=child_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hub = RunningHub(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hub_port}/hub/api", token, folder, process,
                     log_path)
    try:
        _wait_ready(hub, timeout)
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(hub: RunningHub, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {hub.process.returncode}:\n{hub.log()[-4000:]}")
        try:
            if hub.api("GET", "", token=hub.admin_token).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"jupyterhub did not answer at {hub.api_url} within {timeout:.0f} s:\n{hub.log()[-4000:]}")
