"""The ``dashboards`` hub service: lists what the signed-in person may see, serves snapshots instantly,
and proxies "Explore" to live Voila kernels that query as the viewer (:mod:`.live`).

Routes (under the service prefix, ``/services/dashboards/``)::

    GET  ./                    the dashboards the viewer may open, with freshness (HTML)
    GET  ./api/dashboards      the same as JSON
    GET  ./d/<slug>/           the current snapshot page for the viewer's policy scope
    GET  ./live/<slug>         live mode (Voila), or a "busy, try again" page at the kernel limit
    *    ./live/…              Voila's assets, kernel websockets and shutdown (own kernels only)
    GET  ./static/plotly.min.js
    GET  ./health              liveness (no login)
    GET  ./oauth_callback      the hub's OAuth redirect

Every page needs a hub login (``HubOAuth``; the hub grants ``access:services!service=dashboards``).
A viewer's groups are read from the hub with the service's own token; nothing the browser sends
about identity is trusted. Each view (and each refused view) is an audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote, urlparse

import httpx
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import httpclient, httpserver, web, websocket

from sophia_lib.appdb import open_app_db
from sophia_lib.audit import AuditEvent, AuditLog, AuditWriter
from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.dashboards import registry, usage
from sophia_lib.dashboards.live import KERNEL_ID, VIEWER_HEADER, LiveKernels, VoilaServer, message_allowed, reap
from sophia_lib.dashboards.registry import Dashboard
from sophia_lib.dashboards.render import config_env, plotly_js
from sophia_lib.dashboards.scopes import Scope, scope_for
from sophia_lib.dashboards.snapshots import STATIC_PLACEHOLDER, ScopeAuth, SnapshotStore, render_page
from sophia_lib.roles import role_for_groups
from sophia_lib.service_thread import RunningService, serve_in_thread

log = logging.getLogger("sophia.dashboards")
BODY_OPEN = re.compile(r"<body[^>]*>", re.IGNORECASE)
IDENTITY_HEADERS = (VIEWER_HEADER.lower(), "x-sophia-audience", "x-forwarded-user", "x-remote-user",
                    "remote-user", "x-jupyterhub-user")

PAGE = Template("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>$title</title>$head
<style>body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#0f172a;background:#f8fafc}
main{max-width:960px;margin:0 auto;padding:1rem}h1{font-size:1.4rem}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:.8rem 1rem;margin:.6rem 0;
display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;justify-content:space-between}
.card h2{font-size:1.05rem;margin:0}.card p{margin:.2rem 0;color:#475569;font-size:.9rem}
.btn{display:inline-block;padding:.35rem .8rem;border-radius:8px;border:1px solid #2563eb;color:#2563eb;
text-decoration:none;font-size:.9rem;margin-left:.3rem}.btn.primary{background:#2563eb;color:#fff}
.muted{color:#64748b;font-size:.85rem}.sophia-asof.stale{color:#b45309}</style></head>
<body><main>$body</main>$script</body></html>""")

ASOF_JS = """<script>(function(){document.querySelectorAll('.sophia-asof[data-as-of]').forEach(function(el){
var t=new Date(el.getAttribute('data-as-of'));if(isNaN(t))return;var m=Math.max(0,Math.round((Date.now()-t)/60000));
var hh=String(t.getHours()).padStart(2,'0')+':'+String(t.getMinutes()).padStart(2,'0');
el.textContent='Data as of '+hh+' ('+(m<60?m+' min':Math.round(m/60)+' h')+' ago)';
el.classList.toggle('stale',m>120);});})();</script>"""

BAR = Template("""<div id="sophia-bar" style="position:sticky;top:0;z-index:10;background:#0f172a;color:#e2e8f0;
font:14px system-ui,sans-serif;padding:.45rem .8rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center">
<a href="$home" style="color:#93c5fd;text-decoration:none">&larr; Dashboards</a><strong>$title</strong>
<span class="sophia-asof" data-as-of="$as_of">$stamp</span>$stale<span style="flex:1"></span>
<a href="$explore" style="color:#0f172a;background:#93c5fd;padding:.2rem .6rem;border-radius:6px;text-decoration:none">
Explore</a></div>""")


def page(title: str, body: str, *, head: str = "", script: str = ASOF_JS) -> str:
    return PAGE.substitute(title=html.escape(title), body=body, head=head, script=script)


def stamp(as_of: str | None) -> str:
    if not as_of:
        return "no data yet"
    moment = datetime.fromisoformat(as_of)
    minutes = max(0, int((datetime.now(UTC) - moment).total_seconds() // 60))
    return f"Data as of {moment:%H:%M} UTC ({minutes} min ago)"


@dataclass(frozen=True)
class Viewer:
    name: str
    groups: tuple[str, ...]
    role: TRole
    scope: Scope
    token: str | None

    def may_see(self, dashboard: Dashboard) -> bool:
        return dashboard.visible_to(self.groups, self.role)


@dataclass
class HubSettings:
    """How the service talks to the hub; by default from the ``JUPYTERHUB_*`` variables the hub sets."""

    api_url: str
    api_token: str
    prefix: str
    client_id: str
    callback_url: str
    base_url: str = "/"
    access_scopes: set[str] = field(default_factory=set)

    @classmethod
    def from_env(cls) -> HubSettings:
        missing = [k for k in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_PREFIX")
                   if not os.environ.get(k)]
        if missing:
            from sophia_lib.errors import ConfigError

            raise ConfigError(f"the dashboards service needs {', '.join(missing)} (the hub sets them).",
                              fix="run it as a JupyterHub service: `make demo`, or hub.services containing dashboards")
        prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
        scopes = json.loads(os.environ.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "[]") or "[]")
        return cls(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], prefix,
                   os.environ.get("JUPYTERHUB_CLIENT_ID", "service-dashboards"),
                   os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", prefix + "oauth_callback"),
                   os.environ.get("JUPYTERHUB_BASE_URL", "/"), set(scopes))


class DashboardsService:
    """State shared by the handlers: registry, snapshots, hub lookups, audit, live kernels."""

    def __init__(self, config: SophiaConfig, hub: HubSettings, *, render_auth: ScopeAuth | None = None,
                 live: bool = True, query_url: str | None = None) -> None:
        from sophia_lib.dashboards.snapshots import query_url as default_query_url

        self.config = config
        self.hub = hub
        self.prefix = "/" + hub.prefix.strip("/") + "/"
        self.store = SnapshotStore.from_config(config)
        self.app_db = open_app_db(config)
        self.audit = AuditWriter(AuditLog(self.app_db))
        own_scope = f"access:services!service={hub.client_id.removeprefix('service-')}"
        self.auth = HubOAuth(api_url=hub.api_url, api_token=hub.api_token, oauth_client_id=hub.client_id,
                             oauth_redirect_uri=hub.callback_url, base_url=self.prefix,
                             hub_prefix=hub.base_url.rstrip("/") + "/hub/", cache_max_age=60,
                             access_scopes=hub.access_scopes or {own_scope})
        self.http = httpx.AsyncClient(timeout=10)
        self.groups_cache: dict[str, tuple[float, list[str]]] = {}
        self.scopes: dict[tuple[str, ...], Scope | None] = {}
        self.seen_scopes: set[str] = set()
        self.render_auth = render_auth
        self.query_url = query_url or default_query_url(config)
        self.renders = ThreadPoolExecutor(config.dashboards.render_parallel, thread_name_prefix="sophia-ondemand")
        self.rendering: set[str] = set()
        self._dashboards: tuple[float, dict[str, Dashboard]] | None = None
        self._pages: dict[Path, tuple[int, str]] = {}
        self.kernels = LiveKernels(config.dashboards.live_max_kernels)
        self.voila: VoilaServer | None = None
        self.live_enabled = live
        self._reaper: asyncio.Task[None] | None = None

    # -- registry and people ----------------------------------------------------------------------------

    def dashboards(self) -> dict[str, Dashboard]:
        """The registry, re-read at most every 2 s (publishing adds to it)."""
        now = time.monotonic()
        if self._dashboards is None or now - self._dashboards[0] > 2:
            self._dashboards = (now, registry.load(self.config, self.app_db))
            if self.voila is not None:
                self.voila.sync_notebooks({s: d.notebook for s, d in self._dashboards[1].items()})
        return self._dashboards[1]

    async def groups(self, name: str) -> list[str]:
        cached = self.groups_cache.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        response = await self.http.get(f"{self.hub.api_url.rstrip('/')}/users/{quote(name, safe='')}",
                                       headers={"Authorization": f"token {self.hub.api_token}"})
        if response.status_code != 200:
            raise web.HTTPError(503, f"the hub did not tell us {name}'s groups (HTTP {response.status_code})")
        groups = list(response.json().get("groups") or [])
        self.groups_cache[name] = (time.monotonic() + 10, groups)
        return groups

    def scope(self, groups: tuple[str, ...]) -> Scope | None:
        if groups not in self.scopes:
            self.scopes[groups] = scope_for(self.config, groups)
        return self.scopes[groups]

    def seen(self, scope: Scope) -> None:
        """Remember a viewer's scope (renders include it from the next refresh on)."""
        if scope.key not in self.seen_scopes:
            self.store.record_viewer(scope.groups)
            self.seen_scopes.add(scope.key)

    def record(self, viewer: Viewer | None, name: str, action: str, slug: str, **detail: Any) -> None:
        self.audit.submit(AuditEvent(name, action, viewer.role if viewer else None, slug[:512],
                                     {"scope": viewer.scope.key if viewer else None, **detail}))

    # -- pages ------------------------------------------------------------------------------------------

    def snapshot_html(self, path: Path, dashboard: Dashboard, as_of: str, stale: bool) -> str:
        mtime = path.stat().st_mtime_ns
        cached = self._pages.get(path)
        if cached is None or cached[0] != mtime:
            text = path.read_text().replace(STATIC_PLACEHOLDER, f"{self.prefix}static")
            self._pages[path] = cached = (mtime, text)
            if len(self._pages) > 512:
                self._pages.pop(next(iter(self._pages)))
        bar = BAR.substitute(home=self.prefix, title=html.escape(dashboard.title), as_of=html.escape(as_of),
                             stamp=stamp(as_of), explore=f"{self.prefix}live/{dashboard.slug}",
                             stale=" <em>(older page: the latest refresh could not render it)</em>" if stale else "")
        text = cached[1]
        match = BODY_OPEN.search(text)
        return text[:match.end()] + bar + text[match.end():] if match else bar + text

    def render_for(self, dashboard: Dashboard, scope: Scope) -> bool:
        """Start rendering a page a new scope lacks; False when rendering is not possible here."""
        render_id = self.store.current_id()
        if self.render_auth is None or render_id is None:
            return False
        key = f"{scope.key}/{dashboard.slug}"
        if key in self.rendering:
            return True
        self.rendering.add(key)

        def run() -> None:
            try:
                html_text, entry = render_page(self.config, dashboard, scope, self.render_auth)  # type: ignore[arg-type]
                self.store.add_page(render_id, scope, dashboard.slug, html_text, entry)
            except Exception as exc:
                log.exception("on-demand render of %s for %s failed", dashboard.slug, scope.key)
                self.store.add_page(render_id, scope, dashboard.slug, None, {
                    "scope": scope.key, "slug": dashboard.slug, "status": "failed", "error": str(exc)[:500]})
            finally:
                self.rendering.discard(key)

        self.renders.submit(run)
        return True

    # -- lifecycle --------------------------------------------------------------------------------------

    def start_live(self) -> None:
        if not self.live_enabled:
            return
        folder = self.store.root / "live"
        self.voila = VoilaServer({s: d.notebook for s, d in self.dashboards().items()}, folder,
                                 f"{self.prefix}live/", self.query_url,
                                 cull_idle_s=self.config.dashboards.live_idle_cull_s,
                                 kernel=self.config.dashboards.kernel, env=config_env(self.config))
        self.voila.start()

    def app(self) -> web.Application:
        p = re.escape(self.prefix)
        routes: list[Any] = [
            (rf"{p}", ListHandler, {"service": self}),
            (rf"{p}api/dashboards", ListApiHandler, {"service": self}),
            (rf"{p}d/([a-z0-9-]+)/?", SnapshotHandler, {"service": self}),
            (rf"{p}live/([a-z0-9-]+)", LivePageHandler, {"service": self}),
            (rf"{p}live/api/kernels/([0-9a-f-]{{36}})/channels", KernelSocketHandler, {"service": self}),
            (rf"{p}live/(.*)", LiveAssetHandler, {"service": self}),
            (rf"{p}api/publish", PublishHandler, {"service": self}),
            (rf"{p}api/publish/([a-z0-9-]+)", PublishHandler, {"service": self}),
            (rf"{p}static/plotly.min.js", PlotlyHandler),
            (rf"{p}health", HealthHandler, {"service": self}),
            (rf"{p}oauth_callback", OAuthCallbackHandler, {"service": self}),
        ]
        if self.prefix != "/":
            routes.append((r"/", web.RedirectHandler, {"url": self.prefix}))
        return web.Application(routes, cookie_secret=os.urandom(32), hub_auth=self.auth, compress_response=True,
                               log_function=_log_request, xsrf_cookies=False)

    async def started(self) -> None:
        if self.voila is not None:
            self._reaper = asyncio.create_task(reap(self.kernels, self.voila))

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self.voila is not None:
            self.voila.stop()
        self.renders.shutdown(wait=False, cancel_futures=True)
        self.audit.close()
        self.app_db.close()


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    log.log(logging.INFO if status < 400 else logging.WARNING, "%d %s %s %.1fms", status, handler.request.method,
            handler.request.path, 1000 * handler.request.request_time())


# -- handlers -------------------------------------------------------------------------------------------


class _Base(HubOAuthenticated, web.RequestHandler):
    service: DashboardsService

    def initialize(self, service: DashboardsService) -> None:
        self.service = service
        self.hub_auth = service.auth
        self.viewer: Viewer | None = None

    async def prepare(self) -> None:
        """Resolve the hub user without blocking the event loop (HubAuth's sync path would)."""
        if self.request.path.endswith("/health"):
            return
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            self._hub_auth_user_cache = None
            return
        try:
            self._hub_auth_user_cache = self.check_hub_user(model)
        except Exception:
            self._hub_auth_user_cache = None
            raise web.HTTPError(403, "you may not use the dashboards service") from None
        if self._hub_auth_user_cache is None:
            return
        name = model["name"]
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "dashboards are for people, not services")
        groups = tuple(sorted(await self.service.groups(name)))
        role = role_for_groups(groups, self.service.config.hub.group_roles)
        scope = self.service.scope(groups) if role else None
        if role is None or scope is None:
            self.service.record(None, name, usage.DENIED, "*", reason="no_role")
            raise web.HTTPError(403, f"{name} is in no Sophia group; ask an administrator for access")
        self.viewer = Viewer(name, groups, role, scope, self.hub_auth.get_token(self))

    def dashboard_or_404(self, slug: str) -> Dashboard:
        assert self.viewer is not None
        dashboard = self.service.dashboards().get(slug)
        if dashboard is None:
            raise web.HTTPError(404, f"no dashboard {slug!r}")
        if not self.viewer.may_see(dashboard):
            self.service.record(self.viewer, self.viewer.name, usage.DENIED, slug, reason="audience")
            raise web.HTTPError(403, f"{dashboard.title!r} is not shared with you")
        return dashboard

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason if status_code != 500 else "something went wrong; the service log has the details"
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page("Dashboards", f"<h1>{status_code}</h1><p>{html.escape(message)}</p>"
                         f'<p><a class="btn" href="{self.service.prefix}">All dashboards</a></p>'))

    def listing(self) -> list[dict[str, Any]]:
        assert self.viewer is not None
        out = []
        for d in registry.visible(self.service.dashboards(), self.viewer.groups, self.viewer.role):
            found = self.service.store.page(self.viewer.scope, d.slug)
            out.append({"slug": d.slug, "title": d.title, "description": d.description,
                        "as_of": found.as_of if found else None, "snapshot": found.snapshot_id if found else None,
                        "url": f"{self.service.prefix}d/{d.slug}/", "live_url": f"{self.service.prefix}live/{d.slug}",
                        "author": d.author, "version": d.version})
        return out


class ListHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        assert self.viewer is not None
        items = self.listing()
        cards = "".join(
            f'<div class="card" data-slug="{i["slug"]}"><div><h2>{html.escape(i["title"])}</h2>'
            f'<p>{html.escape(i["description"] or "")}</p>'
            f'<span class="muted sophia-asof" data-as-of="{html.escape(i["as_of"] or "")}">{stamp(i["as_of"])}'
            f"</span>{' · v' + str(i['version']) + ' by ' + html.escape(i['author']) if i['author'] else ''}</div>"
            f'<div><a class="btn primary" href="{i["url"]}">Open</a><a class="btn" href="{i["live_url"]}">Explore</a>'
            "</div></div>" for i in items) or "<p>No dashboard is shared with you yet.</p>"
        self.finish(page("Dashboards", f"<h1>Dashboards</h1><p class='muted'>Signed in as "
                         f"{html.escape(self.viewer.name)} · {self.viewer.role.replace('_', ' ')}</p>{cards}"))


class ListApiHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        assert self.viewer is not None
        self.finish({"user": self.viewer.name, "role": self.viewer.role, "scope": self.viewer.scope.key,
                     "dashboards": self.listing()})


class SnapshotHandler(_Base):
    @web.authenticated
    async def get(self, slug: str) -> None:
        assert self.viewer is not None
        dashboard = self.dashboard_or_404(slug)
        self.service.seen(self.viewer.scope)
        found = self.service.store.page(self.viewer.scope, slug)
        if found is None:
            failure = self.service.store.failure(self.viewer.scope, slug)
            preparing = failure is None and self.service.render_for(dashboard, self.viewer.scope)
            self.set_status(503 if not preparing else 202)
            self.set_header("Retry-After", "3")
            text = ("Preparing this dashboard for you; this page reloads by itself." if preparing else
                    "This dashboard has no page for you yet: it appears after the next data refresh."
                    if failure is None else "This dashboard failed at the last refresh; its owner has been told.")
            self.finish(page(dashboard.title, f"<h1>{html.escape(dashboard.title)}</h1><p>{text}</p>",
                             head='<meta http-equiv="refresh" content="3">' if preparing else ""))
            return
        body = self.service.snapshot_html(found.path, dashboard, found.as_of, found.stale)
        self.service.record(self.viewer, self.viewer.name, usage.VIEW, slug, mode="snapshot",
                            snapshot=found.snapshot_id, render=found.render_id)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "private, no-store")
        self.set_header("X-Sophia-Snapshot", found.snapshot_id)
        self.finish(body)


class PublishHandler(web.RequestHandler):
    """``POST ./api/publish`` (JSON: title, audience, slug?, notebook, name) and ``DELETE ./api/publish/<slug>``,
    with ``Authorization: token <the author's hub token>`` (JupyterLab and ``sophia publish`` send it)."""

    def initialize(self, service: DashboardsService) -> None:
        self.service = service

    async def _author(self) -> tuple[str, TRole | None]:
        token = self.service.auth.get_token(self, in_cookie=False)
        model = await self.service.auth.user_for_token(token, sync=False) if token else None
        if not model or model.get("kind", "user") != "user":
            raise web.HTTPError(401, "send the author's hub token: Authorization: token <token>")
        groups = await self.service.groups(model["name"])
        return model["name"], role_for_groups(groups, self.service.config.hub.group_roles)

    def _fail(self, exc: Exception) -> None:
        from sophia_lib.dashboards.publish import PublishError

        body = exc.to_dict() if isinstance(exc, PublishError) else {"error": str(exc), "reason": "publish_refused"}
        self.set_status(403 if "may not" in body["error"] or "belongs to" in body["error"] else 400)
        self.finish(body)

    async def post(self, slug: str | None = None) -> None:
        from sophia_lib.dashboards.publish import PublishError, publish

        author, role = await self._author()
        try:
            body = json.loads(self.request.body or b"{}")
            audience = body.get("audience") or []
            audience = audience.split(",") if isinstance(audience, str) else list(audience)
            if self.service.render_auth is None:
                raise PublishError("this dashboards service cannot run notebooks as an audience.",
                                   fix="run it as the hub's dashboards service")
            future = self.service.renders.submit(
                publish, self.service.config, self.service.app_db, self.service.render_auth,
                content=body.get("notebook") or "", title=str(body.get("title") or ""), audience=audience,
                author=author, author_role=role, slug=body.get("slug") or slug, source_name=str(body.get("name") or
                                                                                              "notebook.ipynb"))
            result = await asyncio.wrap_future(future)
        except (PublishError, ValueError) as exc:
            self._fail(exc)
            return
        self.service._dashboards = None
        self.finish({**result.to_dict(), "url": f"{self.service.prefix}d/{result.slug}/"})

    async def delete(self, slug: str) -> None:
        from sophia_lib.dashboards.publish import PublishError, unpublish

        actor, role = await self._author()
        try:
            version = unpublish(self.service.config, self.service.app_db, slug=slug, actor=actor, actor_role=role)
        except PublishError as exc:
            self._fail(exc)
            return
        self.service._dashboards = None
        self.finish({"slug": slug, "unpublished_version": version})


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    def initialize(self, service: DashboardsService) -> None:
        self.hub_auth = service.auth


class PlotlyHandler(web.RequestHandler):
    _body: bytes | None = None

    def get(self) -> None:
        if PlotlyHandler._body is None:
            PlotlyHandler._body = plotly_js().read_bytes()
        self.set_header("Content-Type", "application/javascript")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(PlotlyHandler._body)


class HealthHandler(web.RequestHandler):
    def initialize(self, service: DashboardsService) -> None:
        self.service = service

    def get(self) -> None:
        current = self.service.store.current()
        self.finish({"status": "ok", "render": current["render_id"] if current else None,
                     "snapshot": current["snapshot_id"] if current else None,
                     "live_kernels": self.service.kernels.count, "live_limit": self.service.kernels.limit})


# -- live mode (proxy to Voila) --------------------------------------------------------------------------


BUSY = ("Live mode is busy right now ({count} people are exploring). Try again in a minute, or open the "
        "snapshot, which is always available.")


def _upstream_headers(handler: web.RequestHandler, voila: VoilaServer, viewer: Viewer) -> dict[str, str]:
    """The browser's headers minus cookies, authorization and any identity claim; plus ours."""
    headers = {k: v for k, v in handler.request.headers.get_all()
               if k.lower() not in ("cookie", "authorization", "host", "content-length", *IDENTITY_HEADERS)
               and not k.lower().startswith("x-sophia-")}
    headers.update(voila.headers())
    headers[VIEWER_HEADER] = viewer.token or ""
    return headers


class LivePageHandler(_Base):
    """Start a live page: one kernel, bound to this viewer, counted against the limit."""

    @web.authenticated
    async def get(self, slug: str) -> None:
        assert self.viewer is not None
        self.dashboard_or_404(slug)
        service, voila = self.service, self.service.voila
        if voila is None:
            raise web.HTTPError(503, "live mode is off on this server; open the snapshot instead")
        if not self.viewer.token:
            raise web.HTTPError(403, "no session token to explore with; sign in again")
        if not service.kernels.reserve():
            service.record(self.viewer, self.viewer.name, usage.DENIED, slug, reason="live_busy")
            self.set_status(503)
            self.set_header("Retry-After", "30")
            self.finish(page("Busy", f"<h1>Busy, try again</h1><p>{BUSY.format(count=service.kernels.count)}</p>"
                             f'<p><a class="btn primary" href="{service.prefix}d/{slug}/">Open the snapshot</a>'
                             f'<a class="btn" href="">Try again</a></p>'))
            return
        buffer = b""
        found: list[str] = []

        def chunk(data: bytes) -> None:
            nonlocal buffer
            if not found:
                buffer = (buffer + data)[-4096:]
                match = KERNEL_ID.search(buffer)
                if match:
                    found.append(match.group(1).decode())
                    service.kernels.add(found[0], self.viewer.name, slug)  # type: ignore[union-attr]
            self.write(data)
            self.flush()

        url = f"{voila.url}{voila.base_url}voila/render/{slug}.ipynb"
        try:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            request = httpclient.HTTPRequest(url, headers=_upstream_headers(self, voila, self.viewer),
                                             streaming_callback=chunk, request_timeout=600, connect_timeout=10)
            service.record(self.viewer, self.viewer.name, usage.VIEW, slug, mode="live")
            await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        finally:
            service.kernels.release()
        self.finish()


class LiveAssetHandler(_Base):
    """Voila's static files, themes, lab extensions, kernel info and shutdown; nothing else."""

    ALLOWED = re.compile(r"^(voila/(static|templates|labextensions|api/themes)/.*|"
                         r"api/kernels/[0-9a-f-]{36}|voila/api/shutdown/[0-9a-f-]{36})$")

    @web.authenticated
    async def get(self, path: str) -> None:
        await self._proxy(path)

    @web.authenticated
    async def post(self, path: str) -> None:
        if not path.startswith("voila/api/shutdown/"):
            raise web.HTTPError(405)
        await self._proxy(path)

    async def _proxy(self, path: str) -> None:
        assert self.viewer is not None
        voila = self.service.voila
        if voila is None or not self.ALLOWED.match(path):
            raise web.HTTPError(404)
        kernel = re.search(r"[0-9a-f-]{36}$", path)
        if kernel and path.startswith(("api/kernels/", "voila/api/shutdown/")) \
                and self.service.kernels.owner(kernel.group(0)) != self.viewer.name:
            raise web.HTTPError(403, "not your kernel")
        query = f"?{self.request.query}" if self.request.query else ""
        request = httpclient.HTTPRequest(f"{voila.url}{voila.base_url}{path}{query}", method=self.request.method,
                                         headers=_upstream_headers(self, voila, self.viewer),
                                         body=self.request.body if self.request.method == "POST" else None,
                                         allow_nonstandard_methods=True, follow_redirects=False)
        response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        if path.startswith("voila/api/shutdown/") and response.code < 300 and kernel:
            self.service.kernels.drop(kernel.group(0))
        self.set_status(response.code if response.code != 599 else 502)
        for name in ("Content-Type", "Cache-Control", "ETag", "Last-Modified"):
            if name in response.headers:
                self.set_header(name, response.headers[name])
        if response.body:
            self.write(response.body)
        self.finish()


class KernelSocketHandler(HubOAuthenticated, websocket.WebSocketHandler):
    """Browser ↔ kernel websocket of a live page, filtered to widget traffic (see :mod:`.live`)."""

    def initialize(self, service: DashboardsService) -> None:
        self.service = service
        self.hub_auth = service.auth
        self.upstream: websocket.WebSocketClientConnection | None = None
        self.kernel_id = ""

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return None  # the legacy JSON framing, which the filter reads

    async def get(self, kernel_id: str) -> None:  # type: ignore[override]
        model = await self.hub_auth.get_user(self, sync=False)
        owner = self.service.kernels.owner(kernel_id)
        if not model or owner is None or model.get("name") != owner:
            self.set_status(403)
            self.finish("not your kernel")
            return
        voila = self.service.voila
        assert voila is not None
        query = f"?{self.request.query}" if self.request.query else ""
        url = f"ws://127.0.0.1:{voila.port}{voila.base_url}api/kernels/{kernel_id}/channels{query}"
        try:
            self.upstream = await websocket.websocket_connect(
                httpclient.HTTPRequest(url, headers=voila.headers()), on_message_callback=self._from_kernel)
        except Exception as exc:
            self.set_status(502)
            self.finish(f"kernel unavailable: {exc}")
            return
        self.kernel_id = kernel_id
        kernel = self.service.kernels.kernels.get(kernel_id)
        if kernel:
            kernel.sockets += 1
        await super().get(kernel_id)

    def _from_kernel(self, message: str | bytes | None) -> None:
        if message is None:
            self.close()
            return
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(message, binary=isinstance(message, bytes))

    async def on_message(self, message: str | bytes) -> None:
        allowed, msg_type = message_allowed(message)
        if not allowed:
            log.warning("refused %s from a live page of kernel %s", msg_type, self.kernel_id)
            self.close(1008, f"{msg_type} refused: live dashboards are read-only")
            return
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        kernel = self.service.kernels.kernels.get(self.kernel_id)
        if kernel:
            kernel.sockets = max(0, kernel.sockets - 1)


# -- running -------------------------------------------------------------------------------------------


def start_in_thread(config: SophiaConfig, hub: HubSettings, *, host: str = "127.0.0.1", port: int = 0,
                    render_auth: ScopeAuth | None = None, live: bool = True,
                    query_url: str | None = None) -> RunningService[DashboardsService]:
    """The service on its own event-loop thread (tests, benchmarks)."""
    service = DashboardsService(config, hub, render_auth=render_auth, live=live, query_url=query_url)
    service.start_live()
    return serve_in_thread(service, host=host, port=port, name="sophia-dashboards-service", started=service.started)


def serve(config: SophiaConfig) -> None:
    """Run as the hub's ``dashboards`` service until SIGINT/SIGTERM (``sophia dashboards serve``)."""
    from sophia_lib.dashboards.snapshots import service_auth

    hub = HubSettings.from_env()
    url = os.environ.get("JUPYTERHUB_SERVICE_URL") or f"http://127.0.0.1:{config.hub.dashboards_port}"
    parsed = urlparse(url)
    service = DashboardsService(config, hub, render_auth=service_auth(config))
    service.start_live()

    async def main() -> None:
        server = httpserver.HTTPServer(service.app())
        server.listen(parsed.port or 80, parsed.hostname or "127.0.0.1")
        await service.started()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        log.info("dashboards service on %s (prefix %s)", url, service.prefix)
        await done.wait()
        server.stop()

    try:
        asyncio.run(main())
    finally:
        service.close()
