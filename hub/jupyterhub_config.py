"""JupyterHub configuration for Sophia: everything comes from sophia.yaml through sophia_lib.hub.

Start it with `sophia hub` (or `jupyterhub -f hub/jupyterhub_config.py` from the folder holding
sophia.yaml). No secrets here: they are references resolved from the credential store.
"""

from sophia_lib.hub.config import configure

configure(get_config())  # noqa: F821 - get_config is provided by JupyterHub when it loads this file
