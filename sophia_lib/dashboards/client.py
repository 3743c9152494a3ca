"""Talking to the dashboards service from a terminal or JupyterLab: publish and unpublish.

URL: ``SOPHIA_DASHBOARDS_URL``, else ``http://127.0.0.1:{hub.dashboards_port}/services/dashboards/``. Token:
the author's hub token, ``SOPHIA_DASHBOARDS_TOKEN`` or ``JUPYTERHUB_API_TOKEN`` (set in every user server).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.dashboards.publish import PublishError
from sophia_lib.errors import SophiaError


def service_url(config: SophiaConfig) -> str:
    url = os.environ.get("SOPHIA_DASHBOARDS_URL") or f"http://127.0.0.1:{config.hub.dashboards_port}/services/dashboards/"
    return url.rstrip("/") + "/"


def _token() -> str:
    token = os.environ.get("SOPHIA_DASHBOARDS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise SophiaError("no hub token to publish with.", fix="run this in your JupyterLab terminal, or export "
                          "SOPHIA_DASHBOARDS_TOKEN with a token from <hub>/hub/token")
    return token


def _send(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, headers={"Authorization": f"token {_token()}"}, timeout=900, **kwargs)
    except httpx.HTTPError as exc:
        raise SophiaError(f"cannot reach the dashboards service at {url}: {exc}.",
                          fix="is the hub running? set SOPHIA_DASHBOARDS_URL to the service's address") from None
    try:
        body = response.json()
    except ValueError:
        body = {"error": f"HTTP {response.status_code}: {response.text[:200]}"}
    if response.status_code >= 400:
        error = PublishError(body.get("error") or f"HTTP {response.status_code}", fix=body.get("fix"),
                             cell_index=body.get("cell_index"), cell_source=body.get("cell_source"),
                             scope=body.get("scope"))
        raise error
    return body


def publish_notebook(config: SophiaConfig, notebook: Path, title: str, audience: Sequence[str],
                     slug: str | None = None) -> dict[str, Any]:
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise PublishError(f"{notebook} is not a notebook file.", fix="pass the path of an .ipynb")
    return _send("POST", service_url(config) + "api/publish",
                 json={"notebook": notebook.read_text(), "name": notebook.name, "title": title,
                       "audience": list(audience), "slug": slug})


def unpublish_dashboard(config: SophiaConfig, slug: str) -> dict[str, Any]:
    return _send("DELETE", service_url(config) + f"api/publish/{slug}")
