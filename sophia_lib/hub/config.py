"""Everything ``hub/jupyterhub_config.py`` sets, built from ``SophiaConfig``.

:func:`hub_settings` returns ``{ConfigurableClass: {trait: value}}`` (plain data the tests inspect);
:func:`configure` applies it to JupyterHub's ``c``. Every problem is raised as a ConfigError naming the
``hub.*`` key before JupyterHub starts anything.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.hub import scopes
from sophia_lib.hub.auth import authenticator_settings, crypt_key, hub_url
from sophia_lib.hub.landing import make_landing
from sophia_lib.hub.services import query_url, services
from sophia_lib.hub.spawners import spawner_settings

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"
TEMPLATES = HUB_DIR / "templates"

Settings = dict[str, dict[str, Any]]


def state_dir(config: SophiaConfig) -> Path:
    """Where the hub keeps its database, cookie secret and proxy pid (``var_dir/hub``)."""
    return config.var_dir / "hub"


def hub_settings(config: SophiaConfig, *, available: dict[str, bool] | None = None,
                 gpu_present: bool | None = None) -> Settings:
    """All JupyterHub settings for ``config``. ``available``/``gpu_present`` override detection (tests)."""
    from sophia_lib.hub.kernels import CPU_KERNEL, installed_kernels

    hub = config.hub
    state = state_dir(config)
    auth_class, auth_traits = authenticator_settings(config)
    metrics_token = None
    if hub.metrics_token is not None:
        from sophia_lib.hub.auth import secret_value

        metrics_token = secret_value(hub.metrics_token, "metrics_token", config)
    declared = services(config, available, metrics_token)
    service_names = [s["name"] for s in declared]
    dashboards_served = any(s["name"] == "dashboards" and "command" in s for s in declared)
    settings: Settings = {
        "JupyterHub": {
            "bind_url": f"http://{hub.ip}:{hub.port}",
            "hub_bind_url": f"http://127.0.0.1:{hub.internal_port}",
            "db_url": hub.db_url or f"sqlite:///{state / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(state / "jupyterhub_cookie_secret"),
            "authenticator_class": auth_class,
            "load_roles": scopes.load_roles(hub.group_roles, service_names),
            "custom_scopes": scopes.CUSTOM_SCOPES,
            "services": declared,
            "template_paths": [str(TEMPLATES)],
            "template_vars": {"sophia": make_landing(config, dashboards_served)},
            "authenticate_prometheus": True,
            "cleanup_servers": True,
            "allow_named_servers": False,
            "redirect_to_server": False,  # sign-in lands on the role's home page, not on a server to spawn
        },
        "ConfigurableHTTPProxy": {
            "api_url": f"http://127.0.0.1:{hub.proxy_api_port}",
            "pid_file": str(state / "jupyterhub-proxy.pid"),
        },
        "CryptKeeper": {"keys": [bytes.fromhex(crypt_key(config))]},
        auth_class.rsplit(".", 1)[1]: auth_traits,
    }
    if hub.public_url:
        settings["JupyterHub"]["public_url"] = hub_url(config)
    proxy = Path(sys.executable).parent / "configurable-http-proxy"
    if proxy.exists():  # the Python port, installed with Sophia: no Node.js needed
        settings["ConfigurableHTTPProxy"]["command"] = [str(proxy)]
    environment = {"SOPHIA_QUERY_URL": query_url(config), "SOPHIA_HUB_URL": hub_url(config)}
    for cls, traits in spawner_settings(config, environment, gpu_present).items():
        settings.setdefault(cls, {}).update(traits)
    settings["Spawner"]["server_token_scopes"] = list(scopes.SERVER_TOKEN_SCOPES)
    if hub.spawner != "kubernetes" and CPU_KERNEL in installed_kernels():
        settings["Spawner"]["args"] = [*settings["Spawner"].get("args", []),
                                       f"--MappingKernelManager.default_kernel_name={CPU_KERNEL}"]
    return settings


def configure(c: Any, config: SophiaConfig | None = None) -> Settings:
    """Apply :func:`hub_settings` to JupyterHub's config object ``c``; returns the settings."""
    from sophia_lib.config import load_config

    config = config or load_config()
    state_dir(config).mkdir(parents=True, exist_ok=True)
    settings = hub_settings(config)
    for cls, traits in settings.items():
        section = c[cls]
        for name, value in traits.items():
            section[name] = value
    return settings
