"""A small HashiCorp Vault on loopback: the KV version 2 endpoints that Sophia's vault backend calls.

Follows Vault's HTTP API docs (secrets/kv/kv-v2): ``X-Vault-Token`` auth (403 ``permission denied``),
``GET/POST /v1/<mount>/data/<path>``, ``LIST`` (or ``GET ?list=true``) and ``GET/DELETE
/v1/<mount>/metadata/<path>``, check-and-set, the response envelope, 404 with an empty ``errors``
list for a missing path and "no handler for route" for an unmounted engine, 503 when sealed.
It is the vendor edge we cannot reach from tests; nothing here shares code with sophia_lib.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # Vault gives nanoseconds


@dataclass
class Entry:
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)  # version -> {data, created_time}
    created_time: str = field(default_factory=_now)
    updated_time: str = field(default_factory=_now)

    @property
    def current(self) -> int:
        return max(self.versions, default=0)


@dataclass
class FakeVault:
    url: str
    token: str
    mount: str = "secret"
    entries: dict[str, Entry] = field(default_factory=dict)
    sealed: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)


def _handler(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _ok(self, data: dict[str, Any]) -> None:
            self._send(200, {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                             "lease_duration": 0, "data": data, "wrap_info": None, "warnings": None,
                             "auth": None, "mount_type": "kv"})

        def _errors(self, status: int, *errors: str) -> None:
            self._send(status, {"errors": list(errors)})

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            vault.requests.append((method, self.path))
            if vault.sealed:
                return self._errors(503, "Vault is sealed")
            if self.headers.get("X-Vault-Token") != vault.token:
                return self._errors(403, "permission denied")
            path = parts.path.removeprefix("/v1/")
            mount, _, rest = path.partition("/")
            kind, _, key = rest.partition("/")
            if mount != vault.mount or kind not in ("data", "metadata"):
                return self._errors(404, f"no handler for route \"{path}\". route entry not found.")
            key = key.strip("/")
            if method == "GET" and query.get("list") == ["true"]:
                method = "LIST"
            handler = getattr(self, f"_{kind}_{method.lower()}", None)
            if handler is None:
                return self._errors(405, "unsupported operation")
            return handler(key, query)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _meta(self, entry: Entry, version: int) -> dict[str, Any]:
            return {"created_time": entry.versions[version]["created_time"], "custom_metadata": None,
                    "deletion_time": "", "destroyed": False, "version": version}

        def _data_get(self, key: str, query: dict[str, list[str]]) -> None:
            entry = vault.entries.get(key)
            if entry is None:
                return self._errors(404)
            version = int(query.get("version", ["0"])[0]) or entry.current
            if version not in entry.versions:
                return self._errors(404)
            self._ok({"data": entry.versions[version]["data"], "metadata": self._meta(entry, version)})

        def _data_post(self, key: str, query: dict[str, list[str]]) -> None:
            body = self._body()
            if not isinstance(body.get("data"), dict):
                return self._errors(400, "no data provided")
            entry = vault.entries.get(key)
            cas = (body.get("options") or {}).get("cas")
            if cas is not None and cas != (entry.current if entry else 0):
                return self._errors(400, "check-and-set parameter did not match the current version")
            entry = vault.entries.setdefault(key, Entry())
            version = entry.current + 1
            entry.versions[version] = {"data": body["data"], "created_time": _now()}
            entry.updated_time = entry.versions[version]["created_time"]
            self._ok(self._meta(entry, version))

        _data_put = _data_post

        def _metadata_list(self, key: str, query: dict[str, list[str]]) -> None:
            prefix = f"{key}/" if key else ""
            keys = sorted({k[len(prefix):].split("/", 1)[0] + ("/" if "/" in k[len(prefix):] else "")
                           for k in vault.entries if k.startswith(prefix)})
            if not keys:
                return self._errors(404)
            self._ok({"keys": keys})

        def _metadata_get(self, key: str, query: dict[str, list[str]]) -> None:
            entry = vault.entries.get(key)
            if entry is None:
                return self._errors(404)
            self._ok({"cas_required": False, "created_time": entry.created_time, "current_version": entry.current,
                      "custom_metadata": None, "delete_version_after": "0s", "max_versions": 0,
                      "oldest_version": min(entry.versions), "updated_time": entry.updated_time,
                      "versions": {str(v): {"created_time": d["created_time"], "deletion_time": "",
                                            "destroyed": False} for v, d in entry.versions.items()}})

        def _metadata_delete(self, key: str, query: dict[str, list[str]]) -> None:
            vault.entries.pop(key, None)
            self._send(204)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

        def do_LIST(self) -> None:  # noqa: N802
            self._route("LIST")

    return Handler


@contextmanager
def fake_vault(token: str = "hvs.test-root-token", mount: str = "secret") -> Iterator[FakeVault]:
    """A running fake Vault on 127.0.0.1 (a free port); stopped on exit."""
    vault = FakeVault(url="", token=token, mount=mount)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(vault))
    vault.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vault
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
