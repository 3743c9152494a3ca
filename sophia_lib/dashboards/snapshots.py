"""Rendered snapshots: every dashboard, once per policy scope that has viewers, as static HTML.

Layout under ``dashboards.snapshots_dir`` (default ``var/dashboards``)::

    renders/<render id>/manifest.json            what was rendered, for which scope, ok or failed
    renders/<render id>/<scope slug>/<slug>.html
    current.json                                 {"render": "<render id>"}, replaced atomically
    viewers.json                                 the groups of scopes seen among viewers

A render is written into a staging folder, renamed into place when complete, and only then does
``current.json`` point at it (``os.replace``), so a viewer gets either the old pages or the new ones,
never half a refresh. A page that failed in the new render is served from the newest older render
that has it (marked with that render's "as of"). :func:`after_refresh` is the scheduler hook.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from filelock import FileLock

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.dashboards import registry
from sophia_lib.dashboards.registry import Dashboard
from sophia_lib.dashboards.render import RenderError, config_env, execute, to_html
from sophia_lib.dashboards.scopes import Scope, audience_scopes
from sophia_lib.errors import SophiaError

log = logging.getLogger("sophia.dashboards")
STATIC_PLACEHOLDER = "__SOPHIA_DASHBOARDS_STATIC__"


def snapshots_dir(config: SophiaConfig) -> Path:
    return config.dashboards.snapshots_dir or Path(config.var_dir) / "dashboards"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass
class Page:
    """One rendered page as the service serves it."""

    path: Path
    render_id: str
    snapshot_id: str
    as_of: str
    stale: bool = False


class SnapshotStore:
    """The rendered pages on disk (see the module docstring for the layout)."""

    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = root
        self.keep = keep
        self.renders = root / "renders"
        self._lock: FileLock | None = None
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._manifests: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_config(cls, config: SophiaConfig) -> SnapshotStore:
        return cls(snapshots_dir(config), config.dashboards.keep_snapshots)

    # -- reading ----------------------------------------------------------------------------------------

    def current_id(self) -> str | None:
        path = self.root / "current.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        if self._cache is None or self._cache[0] != mtime:
            self._cache = (mtime, json.loads(path.read_text()))
        return self._cache[1].get("render")

    def manifest(self, render_id: str) -> dict[str, Any]:
        path = self.renders / render_id / "manifest.json"
        stat = path.stat()
        cached = self._manifests.get(render_id)
        if cached is None or cached["_mtime"] != stat.st_mtime_ns:
            cached = {**json.loads(path.read_text()), "_mtime": stat.st_mtime_ns}
            self._manifests[render_id] = cached
        return cached

    def current(self) -> dict[str, Any] | None:
        render_id = self.current_id()
        return self.manifest(render_id) if render_id else None

    def page(self, scope: Scope, slug: str) -> Page | None:
        """The current page of ``slug`` for ``scope``; an older render's when the current one lacks it."""
        current = self.current_id()
        if current is None:
            return None
        key = f"{scope.slug}/{slug}"
        for render_id in [current] + [r for r in self.render_ids() if r != current]:
            try:
                manifest = self.manifest(render_id)
            except FileNotFoundError:
                continue
            entry = manifest["pages"].get(key)
            if entry and entry["status"] == "ok":
                return Page(self.renders / render_id / entry["file"], render_id, manifest["snapshot_id"],
                            manifest["as_of"], stale=render_id != current)
        return None

    def failure(self, scope: Scope, slug: str) -> dict[str, Any] | None:
        current = self.current()
        entry = current["pages"].get(f"{scope.slug}/{slug}") if current else None
        return entry if entry and entry["status"] == "failed" else None

    def render_ids(self) -> list[str]:
        """Committed renders, newest first."""
        if not self.renders.exists():
            return []
        return sorted((p.name for p in self.renders.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      reverse=True)

    # -- writing ----------------------------------------------------------------------------------------

    def stage(self) -> Path:
        self.renders.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.renders, prefix=".staging-"))

    def commit(self, staging: Path, manifest: dict[str, Any]) -> str:
        """Move a complete render into place and make it current; prune old renders."""
        render_id = manifest["render_id"]
        _write_atomic(staging / "manifest.json", json.dumps(manifest, indent=1))
        os.replace(staging, self.renders / render_id)
        with self._locked():
            _write_atomic(self.root / "current.json", json.dumps({"render": render_id}))
            for old in self.render_ids()[self.keep:]:
                shutil.rmtree(self.renders / old, ignore_errors=True)
        return render_id

    def add_page(self, render_id: str, scope: Scope, slug: str, html: str | None, entry: dict[str, Any]) -> None:
        """Add one page to a committed render (a scope first seen after the refresh)."""
        folder = self.renders / render_id
        key = f"{scope.slug}/{slug}"
        if html is not None:
            _write_atomic(folder / f"{key}.html", html)
        with self._locked():
            manifest = json.loads((folder / "manifest.json").read_text())
            manifest["pages"][key] = entry
            _write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1))

    def record_viewer(self, groups: Iterable[str]) -> bool:
        """Remember the groups of a viewer's scope; True when they were new."""
        groups = sorted(set(groups))
        with self._locked():
            seen = self.seen()
            if groups in seen:
                return False
            seen.append(groups)
            _write_atomic(self.root / "viewers.json", json.dumps(seen))
        return True

    def seen(self) -> list[list[str]]:
        path = self.root / "viewers.json"
        return json.loads(path.read_text()) if path.exists() else []

    def _locked(self) -> FileLock:
        _mkdir(self.root)
        if self._lock is None:
            self._lock = FileLock(str(self.root / ".lock"))
        return self._lock


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


# -- credentials of a scope ---------------------------------------------------------------------------


class ScopeAuth(Protocol):
    """What a dashboard kernel gets to query the ``query`` service as a scope (environment variables)."""

    url: str

    def env(self, scope: Scope) -> dict[str, str]: ...


@dataclass
class ServiceAudience:
    """A trusted service's own hub token with the scope declared as its audience (groups); the query
    service derives role and row filters from those groups, as for a person in them."""

    url: str
    token: str

    def env(self, scope: Scope) -> dict[str, str]:
        return {"SOPHIA_QUERY_URL": self.url, "SOPHIA_QUERY_TOKEN": self.token,
                "SOPHIA_QUERY_AUDIENCE": ",".join(scope.groups)}


@dataclass
class TokenPerScope:
    """One hub token per scope key (tests, or a deployment that keeps a token per audience)."""

    url: str
    tokens: Mapping[str, str]

    def env(self, scope: Scope) -> dict[str, str]:
        if scope.key not in self.tokens:
            raise SophiaError(f"no token for scope {scope.key}.", fix="add one, or use ServiceAudience")
        return {"SOPHIA_QUERY_URL": self.url, "SOPHIA_QUERY_TOKEN": self.tokens[scope.key]}


def query_url(config: SophiaConfig) -> str:
    """Where dashboard kernels reach the query service."""
    return os.environ.get("SOPHIA_QUERY_URL") or f"http://{config.query.host}:{config.query.port}"


def service_auth(config: SophiaConfig) -> ServiceAudience:
    token = os.environ.get("SOPHIA_QUERY_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise SophiaError("no service token to render dashboards with.",
                          fix="run rendering inside a hub service (JUPYTERHUB_API_TOKEN is set there) or export "
                          "SOPHIA_QUERY_TOKEN with a trusted service's token")
    return ServiceAudience(query_url(config), token)


def served_snapshot(url: str, wait_for: str | None = None, timeout_s: float = 30) -> tuple[str, str]:
    """(snapshot id, as of) the query service serves; waits until it serves ``wait_for`` when given."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            body = httpx.get(f"{url.rstrip('/')}/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SophiaError(f"cannot reach the query service at {url}: {exc}.",
                              fix="start it (`sophia query serve`, or the hub starts it)") from None
        if body.get("snapshot") and (wait_for is None or body["snapshot"] == wait_for):
            return body["snapshot"], body["as_of"]
        if time.monotonic() > deadline:
            raise SophiaError(f"the query service serves snapshot {body.get('snapshot')}, not {wait_for}.",
                              fix="check that it sees the same warehouse as the refresh")
        time.sleep(0.25)


# -- rendering ----------------------------------------------------------------------------------------


@dataclass
class RenderReport:
    render_id: str
    snapshot_id: str
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.pages.items() if v["status"] != "ok"]

    def summary(self) -> str:
        ok = len(self.pages) - len(self.failed)
        text = f"dashboards: {ok}/{len(self.pages)} page(s) rendered in {self.duration_s:.1f} s ({self.render_id})"
        return text + (f"; failed: {', '.join(self.failed)}" if self.failed else "")


def render_page(config: SophiaConfig, dashboard: Dashboard, scope: Scope, auth: ScopeAuth,
                parameters: Mapping[str, Any] | None = None) -> tuple[str | None, dict[str, Any]]:
    """Render one dashboard as one scope: (html or None, manifest entry)."""
    started = time.perf_counter()
    entry: dict[str, Any] = {"scope": scope.key, "slug": dashboard.slug, "file": f"{scope.slug}/{dashboard.slug}.html"}
    try:
        notebook = execute(dashboard.notebook, {"mode": "snapshot", **(parameters or {})},
                           {**config_env(config), **auth.env(scope)},
                           kernel=config.dashboards.kernel, timeout_s=config.dashboards.render_timeout_s)
        html = to_html(notebook, title=dashboard.title, plotly_src=f"{STATIC_PLACEHOLDER}/plotly.min.js")
    except RenderError as exc:
        entry.update(status="failed", error=exc.message, cell=exc.cell_index, ename=exc.ename)
        log.warning("dashboard %s for %s failed: %s", dashboard.slug, scope.key, exc.message)
        return None, {**entry, "duration_s": round(time.perf_counter() - started, 2)}
    entry.update(status="ok", duration_s=round(time.perf_counter() - started, 2), bytes=len(html))
    return html, entry


def render_all(config: SophiaConfig, auth: ScopeAuth, *, dashboards: Mapping[str, Dashboard] | None = None,
               snapshot: str | None = None, store: SnapshotStore | None = None) -> RenderReport:
    """Render every dashboard for every scope it has, into a new render made current when complete."""
    from sophia_lib.appdb import open_app_db

    started = time.perf_counter()
    store = store or SnapshotStore.from_config(config)
    if dashboards is None:
        app_db = open_app_db(config)
        try:
            dashboards = registry.load(config, app_db)
        finally:
            app_db.close()
    snapshot_id, as_of = served_snapshot(auth.url, wait_for=snapshot)
    seen = store.seen()
    jobs = [(d, s) for d in dashboards.values() for s in audience_scopes(config, d.audience, seen)]
    render_id = f"{snapshot_id}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    staging = store.stage()
    pages: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def one(job: tuple[Dashboard, Scope]) -> None:
        dashboard, scope = job
        html, entry = render_page(config, dashboard, scope, auth)
        if html is not None:
            _write_atomic(staging / entry["file"], html)
        with lock:
            pages[f"{scope.slug}/{dashboard.slug}"] = entry

    try:
        with ThreadPoolExecutor(config.dashboards.render_parallel, thread_name_prefix="sophia-render") as pool:
            list(pool.map(one, jobs))
        manifest = {"render_id": render_id, "snapshot_id": snapshot_id, "as_of": as_of,
                    "rendered_at": datetime.now(UTC).isoformat(), "pages": pages}
        store.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RenderReport(render_id, snapshot_id, pages, time.perf_counter() - started)


def after_refresh(config: SophiaConfig, refresh: Any) -> str | None:
    """Scheduler hook (``sophia_lib.dashboards.snapshots:after_refresh``): render the new snapshot.

    Without a service token (``sophia refresh`` run by hand, outside the hub) there is no identity to
    render as: the hook says so and the dashboards service renders on the first view instead."""
    if not (os.environ.get("SOPHIA_QUERY_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")):
        return "skipped: no service token here (the hub's scheduler renders; the dashboards service renders on view)"
    snapshot = getattr(getattr(refresh, "snapshot", None), "id", None)
    report = render_all(config, service_auth(config), snapshot=snapshot)
    if report.failed:
        raise SophiaError(report.summary(), fix="open the failing dashboards' notebooks and fix them; the previous "
                          "pages keep being served for them")
    return report.summary()
