"""The hub-managed services: ``query`` (the query door), ``dashboards``, ``scheduler``, the idle culler and
an optional Prometheus scraper, each with only the scopes it needs (:data:`sophia_lib.hub.scopes.SERVICE_SCOPES`).

A service whose ``sophia`` command does not exist yet (the dashboards and scheduler issues add theirs) is
still declared, so roles can grant access to it, but without a command or URL: JupyterHub starts and
routes nothing for it until the command lands.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sophia_lib.config.typing import SophiaConfig

SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    "query": ("query", "serve"), "dashboards": ("dashboards", "serve"), "scheduler": ("scheduler",)}


def cli_has(*path: str) -> bool:
    """Whether ``sophia PATH…`` is a registered CLI command (e.g. ``cli_has("query", "serve")``)."""
    import typer.main

    from sophia_lib.cli import cli

    command = typer.main.get_command(cli)
    for name in path:
        command = getattr(command, "commands", {}).get(name)
        if command is None:
            return False
    return True


def query_url(config: SophiaConfig) -> str:
    """Where a user server reaches the query door: the service's own address under its hub prefix; on
    Kubernetes (servers in other pods) through the hub's public URL and proxy."""
    if config.hub.spawner == "kubernetes":
        return f"{config.hub.base_url()}/services/query/"
    return f"http://{config.query.host}:{config.query.port}/services/query/"


def service_environment(config: SophiaConfig) -> dict[str, str]:
    """What a Sophia service process needs to find the same configuration and state as the hub."""
    from sophia_lib.config import config_path

    env = {k: v for k, v in os.environ.items() if k.startswith("SOPHIA_")}
    path = config_path()
    if path is not None:
        env["SOPHIA_CONFIG"] = str(path.resolve())
    env["SOPHIA_VAR_DIR"] = str(config.var_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def service_user(config: SophiaConfig) -> str:
    """``hub.service_user``, checked: an OS user that exists, and a hub running as root to become it."""
    import pwd

    from sophia_lib.errors import ConfigError

    name = config.hub.service_user or ""
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"hub.service_user {name!r} is not an OS user on this machine.",
                          fix=f"useradd --system --shell /usr/sbin/nologin {name} (and chown var_dir to it), or "
                          "unset hub.service_user") from None
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != name:
        raise ConfigError(f"hub.service_user is {name!r} but the hub does not run as root, so it cannot start "
                          "services as another user.", fix="run the hub as root (deploy/systemd/sophia-hub.service), "
                          "or unset hub.service_user")
    return name


def services(config: SophiaConfig, available: dict[str, bool] | None = None,
             metrics_token: str | None = None) -> list[dict[str, Any]]:
    """``c.JupyterHub.services``. ``available``: which Sophia commands exist (default: ask the CLI)."""
    if available is None:
        available = {name: cli_has(*cmd) for name, cmd in SERVICE_COMMANDS.items()}
    env = service_environment(config)
    cwd = os.getcwd()
    urls = {"query": f"http://{config.query.host}:{config.query.port}",
            "dashboards": f"http://127.0.0.1:{config.hub.dashboards_port}",
            "scheduler": f"http://127.0.0.1:{config.hub.scheduler_port}"}
    out: list[dict[str, Any]] = []
    for name, cmd in SERVICE_COMMANDS.items():
        service: dict[str, Any] = {"name": name, "display": name == "dashboards"}
        if name in config.hub.services and available.get(name):
            service.update({"command": [sys.executable, "-m", "sophia_lib", *cmd], "environment": env, "cwd": cwd,
                            "url": urls[name], "oauth_no_confirm": True})
            if config.hub.service_user:
                service["user"] = service_user(config)
        out.append(service)
    if config.hub.cull_idle_after_s:
        out.append({"name": "idle-culler", "display": False,
                     "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                                 f"--timeout={config.hub.cull_idle_after_s}", "--cull-every=60"]})
    if metrics_token is not None:
        out.append({"name": "prometheus", "display": False, "api_token": metrics_token})
    return out
