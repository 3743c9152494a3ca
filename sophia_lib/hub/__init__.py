"""The hub: JupyterHub configured from ``sophia.yaml`` (sign-in, the four roles, spawners and profiles,
services, kernels, landing pages). ``hub/jupyterhub_config.py`` calls :func:`sophia_lib.hub.config.configure`;
``sophia hub`` starts it. See docs/operations.md and docs/security.md.
"""
