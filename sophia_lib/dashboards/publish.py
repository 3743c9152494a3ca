"""Publishing: an analyst's notebook becomes a dashboard for an audience, after it ran as that audience.

``publish`` executes the notebook once per policy scope of the audience (papermill, through the query
door as that scope); any failing cell — including a read the audience's policy refuses — refuses the
publish and names the cell. A successful publish stores a new version (``published/<slug>/v<N>.ipynb``
under the snapshots folder), records it in the app database, renders its pages into the current
snapshot so the audience sees it at once, and writes an audit record. Slugs are validated, a built-in
slug or another author's slug cannot be taken, and only the author or a super user unpublishes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from sqlalchemy import func, select

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import PublishedDashboard
from sophia_lib.audit import AuditEvent, AuditLog
from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.dashboards import registry, usage
from sophia_lib.dashboards.registry import SLUG, Dashboard
from sophia_lib.dashboards.scopes import audience_scopes
from sophia_lib.dashboards.snapshots import ScopeAuth, SnapshotStore, render_page, snapshots_dir
from sophia_lib.errors import SophiaError

PUBLISHERS: tuple[TRole, ...] = ("analyst", "developer", "super_user")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


class PublishError(SophiaError, ValueError):
    """A publish refused: bad input, not allowed, or the notebook failed as its audience."""

    reason = "publish_refused"

    def __init__(self, message: str, *, fix: str | None = None, cell_index: int | None = None,
                 cell_source: str | None = None, scope: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.cell_index = cell_index
        self.cell_source = cell_source
        self.scope = scope

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "fix": self.fix, "reason": self.reason, "cell_index": self.cell_index,
                "cell_source": self.cell_source, "scope": self.scope}


@dataclass
class Published:
    slug: str
    version: int
    title: str
    audience: list[str]
    path: Path
    pages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "version": self.version, "title": self.title, "audience": self.audience,
                "pages": self.pages}


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:63]
    return slug or "dashboard"


def check_audience(config: SophiaConfig, audience: Iterable[str]) -> list[str]:
    """Audience groups must be Sophia groups (``hub.group_roles``) or policy attribute groups."""
    from sophia_lib.query.policy import load_policy

    groups = sorted({g.strip() for g in audience if g.strip()})
    if not groups:
        raise PublishError("no audience given.", fix="--audience sophia-executives (comma-separate several)")
    prefixes = [a.group_prefix for a in load_policy(config.query.policy).attributes.values()]
    unknown = [g for g in groups if g not in config.hub.group_roles and not any(g.startswith(p) for p in prefixes)]
    if unknown:
        raise PublishError(f"unknown audience group(s): {', '.join(unknown)}.",
                           fix=f"use Sophia groups: {', '.join(sorted(config.hub.group_roles))}")
    if not any(g in config.hub.group_roles for g in groups):
        raise PublishError("the audience names no Sophia role group, so nobody would see it.",
                           fix=f"include one of: {', '.join(sorted(config.hub.group_roles))}")
    return groups


def read_notebook(content: bytes | str, name: str = "notebook") -> nbformat.NotebookNode:
    if len(content) > MAX_NOTEBOOK_BYTES:
        raise PublishError(f"{name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB.",
                           fix="clear the outputs before publishing (they are recomputed anyway)")
    try:
        notebook = nbformat.reads(content if isinstance(content, str) else content.decode(), as_version=4)
        nbformat.validate(notebook)
    except Exception as exc:
        raise PublishError(f"{name} is not a valid notebook: {str(exc).splitlines()[0][:200]}",
                           fix="publish an .ipynb saved by JupyterLab") from None
    return notebook


def publish(config: SophiaConfig, app_db: AppDb, auth: ScopeAuth, *, content: bytes | str, title: str,
            audience: Iterable[str], author: str, author_role: TRole | None, slug: str | None = None,
            source_name: str = "notebook.ipynb") -> Published:
    """Run the notebook as each audience scope, then store and record a new version (see module doc)."""
    if author_role not in PUBLISHERS:
        raise PublishError(f"{author} ({author_role or 'no role'}) may not publish dashboards.",
                           fix="publishing is for analysts, developers and super users")
    title = title.strip()
    if not title or len(title) > 200:
        raise PublishError("a title of 1 to 200 characters is needed.", fix='--title "Pipeline by region"')
    slug = slug or slugify(title)
    if not SLUG.match(slug):
        raise PublishError(f"slug {slug!r} is not allowed.", fix="lowercase letters, digits and '-', e.g. sales-emea")
    groups = check_audience(config, audience)
    if slug in {d.slug for d in registry.builtin(config)}:
        raise PublishError(f"{slug!r} is a built-in dashboard.", fix="choose another --slug or title")
    with app_db.session() as s:
        owners = set(s.scalars(select(PublishedDashboard.author).where(PublishedDashboard.slug == slug)))
        version = (s.scalar(select(func.max(PublishedDashboard.version)).where(PublishedDashboard.slug == slug))
                   or 0) + 1
    if owners and owners != {author}:
        raise PublishError(f"{slug!r} belongs to {', '.join(sorted(owners))}.",
                           fix="choose another --slug, or ask them to unpublish it")
    notebook = read_notebook(content, source_name)
    folder = snapshots_dir(config) / "published" / slug
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.ipynb"
    staged = folder / ".staging" / f"v{version}.ipynb"
    staged.parent.mkdir(exist_ok=True)
    nbformat.write(notebook, staged)
    candidate = Dashboard(slug, title, staged, tuple(groups), author=author, version=version)
    pages: dict[str, tuple[Any, str | None, dict[str, Any]]] = {}
    try:
        for scope in audience_scopes(config, groups):
            html, entry = render_page(config, candidate, scope, auth)
            if html is None:
                raise PublishError(
                    f"the notebook failed when run as {scope.key or scope.role}: {entry.get('error')}",
                    fix="fix that cell (a refused read means the audience may not see that data)",
                    cell_index=entry.get("cell"), cell_source=_source(notebook, entry.get("cell")), scope=scope.key)
            pages[scope.key] = (scope, html, entry)
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    with app_db.session() as s:
        s.add(PublishedDashboard(slug=slug, version=version, title=title, author=author, audience_groups=groups,
                                 notebook_path=str(path)))
    AuditLog(app_db).append(AuditEvent(author, usage.PUBLISH, author_role, slug,
                                       {"version": version, "title": title, "audience": groups,
                                        "source": source_name}))
    store = SnapshotStore.from_config(config)
    render_id = store.current_id()
    if render_id is not None:
        for scope, html, entry in pages.values():
            store.add_page(render_id, scope, slug, html, entry)
    return Published(slug, version, title, groups, path, {k: v[2]["status"] for k, v in pages.items()})


def _source(notebook: nbformat.NotebookNode, index: int | None) -> str | None:
    if index is None or not 0 <= index < len(notebook.cells):
        return None
    return notebook.cells[index].source


def unpublish(config: SophiaConfig, app_db: AppDb, *, slug: str, actor: str, actor_role: TRole | None) -> int:
    """Withdraw a published dashboard (all versions stay on record); returns the version withdrawn."""
    if not SLUG.match(slug):
        raise PublishError(f"slug {slug!r} is not valid.", fix="`sophia dashboards list` shows the slugs")
    with app_db.session() as s:
        row = s.scalars(select(PublishedDashboard).where(PublishedDashboard.slug == slug)
                        .order_by(PublishedDashboard.version.desc()).limit(1)).first()
        if row is None or row.unpublished_at is not None:
            raise PublishError(f"no published dashboard {slug!r}.", fix="`sophia dashboards list` shows them")
        if row.author != actor and actor_role != "super_user":
            raise PublishError(f"{slug!r} belongs to {row.author}.", fix="only its author or a super user can "
                               "unpublish it")
        row.unpublished_at = datetime.now(UTC)
        version = row.version
    AuditLog(app_db).append(AuditEvent(actor, usage.UNPUBLISH, actor_role, slug, {"version": version}))
    return version


def versions(app_db: AppDb, slug: str) -> list[dict[str, Any]]:
    with app_db.session() as s:
        rows = s.scalars(select(PublishedDashboard).where(PublishedDashboard.slug == slug)
                         .order_by(PublishedDashboard.version)).all()
        return [{"version": r.version, "title": r.title, "author": r.author, "audience": r.audience_groups,
                 "published_at": r.published_at.isoformat(timespec="seconds"),
                 "unpublished_at": r.unpublished_at.isoformat(timespec="seconds") if r.unpublished_at else None}
                for r in rows]
