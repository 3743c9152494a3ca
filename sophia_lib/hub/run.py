"""Start JupyterHub in this process with ``hub/jupyterhub_config.py`` (``sophia hub``)."""

from __future__ import annotations

from collections.abc import Callable

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.errors import ConfigError

READY = "Press Ctrl-C to stop."


def run_hub(config: SophiaConfig, echo: Callable[[str], None] = print, debug: bool = False) -> None:
    """Check the configuration (a bad key fails here, named), make sure the kernels exist, run the hub."""
    from sophia_lib.hub.auth import hub_url
    from sophia_lib.hub.config import HUB_DIR, hub_settings, state_dir
    from sophia_lib.hub.kernels import CPU_KERNEL, install_kernels, installed_kernels

    config_file = HUB_DIR / "jupyterhub_config.py"
    if not config_file.is_file():
        raise ConfigError(f"{config_file} is missing: the hub's configuration ships in the source tree.",
                          fix="run Sophia from a clone of its repository (pip install -e .)")
    state_dir(config).mkdir(parents=True, exist_ok=True)
    if config.hub.spawner != "kubernetes" and CPU_KERNEL not in installed_kernels():
        for kernel in install_kernels():
            echo(f"hub: installed the {kernel.display_name} kernel")
    hub_settings(config)  # fail before JupyterHub starts, with the key named
    echo(f"hub: starting JupyterHub at {hub_url(config)}/ ({READY})")
    from jupyterhub.app import JupyterHub

    argv = ["-f", str(config_file)] + (["--debug"] if debug else [])
    JupyterHub.launch_instance(argv)
