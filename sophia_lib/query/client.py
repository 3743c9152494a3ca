"""The thin client every notebook, dashboard and job uses: it holds no policy and no warehouse
connection, only the service URL and the caller's hub token.

URL: ``SOPHIA_QUERY_URL``, else ``http://{query.host}:{query.port}`` from sophia.yaml. Token:
``SOPHIA_QUERY_TOKEN``, else ``JUPYTERHUB_API_TOKEN`` (set by the hub in every user server).
``SOPHIA_QUERY_AUDIENCE`` (hub groups, comma-separated) is sent as ``X-Sophia-Audience``: the query
service honours it only with a trusted service's token (a dashboard or job running as its audience).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import httpx

from sophia_lib.query.errors import (
    BadQueryError,
    ForbiddenError,
    NoRoleError,
    NotAuthenticatedError,
    QueryError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    import pandas as pd

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ERRORS: dict[str, type[QueryError]] = {
    "not_authenticated": NotAuthenticatedError, "no_role": NoRoleError, "forbidden": ForbiddenError,
    "bad_query": BadQueryError, "unavailable": ServiceUnavailableError,
}


class QueryClient:
    """``QueryClient().sql("select …")`` → pandas DataFrame with ``.attrs['snapshot_id']`` and ``['as_of']``."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 300.0,
                 audience: str | None = None) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.token = token if token is not None else default_token()
        self.audience = audience if audience is not None else os.environ.get("SOPHIA_QUERY_AUDIENCE")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))

    def sql(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self._frame("sql", {"sql": sql, "params": _plain(dict(params or {}))})

    def table(self, name: str, columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
        return self._frame("table", {"name": name, "columns": list(columns) if columns else None, "limit": limit})

    def metric(self, name: str, by: Sequence[str] | str | None = None, grain: str | None = None,
               start: date | datetime | str | None = None, end: date | datetime | str | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        by = [by] if isinstance(by, str) else list(by or [])
        return self._frame("metric", {"name": name, "by": by, "grain": grain, "start": _iso(start),
                                      "end": _iso(end), "where": dict(where) if isinstance(where, Mapping) else where})

    def tables(self) -> list[dict[str, Any]]:
        return self._get("api/tables")["tables"]

    def whoami(self) -> dict[str, Any]:
        return self._get("api/whoami")

    def arrow(self, kind: str, body: Mapping[str, Any]):  # -> pyarrow.Table
        import pyarrow as pa

        response = self._send("POST", f"api/{kind}", json={k: v for k, v in body.items() if v is not None})
        with pa.ipc.open_stream(response.content) as stream:
            return stream.read_all()

    def _frame(self, kind: str, body: Mapping[str, Any]) -> pd.DataFrame:
        table = self.arrow(kind, body)
        meta = table.schema.metadata or {}
        frame = table.to_pandas()
        frame.attrs["snapshot_id"] = meta.get(b"sophia.snapshot_id", b"").decode()
        frame.attrs["as_of"] = meta.get(b"sophia.as_of", b"").decode()
        return frame

    def _get(self, path: str) -> Any:
        return self._send("GET", path).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.token:
            raise NotAuthenticatedError(
                "no hub token to send to the query service.",
                fix="inside JupyterHub this is automatic (JUPYTERHUB_API_TOKEN); elsewhere create a token at "
                "<hub>/hub/token and export SOPHIA_QUERY_TOKEN")
        headers = {"Authorization": f"token {self.token}"}
        if self.audience:
            headers["X-Sophia-Audience"] = self.audience
        try:
            response = self._http.request(method, f"{self.url}/{path}", headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"cannot reach the query service at {self.url}: {exc}.",
                                          fix="start it (`sophia query serve`, or the hub starts it), or set "
                                          "SOPHIA_QUERY_URL to where it runs") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def close(self) -> None:
        self._http.close()


def _error(response: httpx.Response) -> QueryError:
    try:
        body = response.json()
        message, fix, reason = body["error"], body.get("fix"), body.get("reason", "")
    except (ValueError, KeyError, TypeError):
        message, fix, reason = f"the query service answered HTTP {response.status_code}.", None, ""
    cls = ERRORS.get(reason) or (NotAuthenticatedError if response.status_code == 401 else
                                 ForbiddenError if response.status_code == 403 else
                                 ServiceUnavailableError if response.status_code >= 500 else BadQueryError)
    return cls(message, fix=fix)


def _iso(value: date | datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, date | datetime) else v for k, v in params.items()}


def default_url() -> str:
    url = os.environ.get("SOPHIA_QUERY_URL")
    if url:
        return url
    from sophia_lib.config import load_config

    config = load_config()
    return f"http://{config.query.host}:{config.query.port}"


def default_token() -> str | None:
    return os.environ.get("SOPHIA_QUERY_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")


_default: tuple[tuple[str | None, str | None, str | None], QueryClient] | None = None
_default_lock = threading.Lock()


def default_client() -> QueryClient:
    """One client per process (kept-alive connection), rebuilt when SOPHIA_QUERY_URL or the token changes."""
    global _default
    key = (os.environ.get("SOPHIA_QUERY_URL"), default_token(), os.environ.get("SOPHIA_QUERY_AUDIENCE"))
    with _default_lock:
        if _default is not None and _default[0] == key:
            return _default[1]
        if _default is not None:
            _default[1].close()
        client = QueryClient(key[0] or default_url(), key[1])
        _default = (key, client)
        return client
