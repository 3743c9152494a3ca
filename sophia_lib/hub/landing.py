"""What each role sees on the hub's home page (``hub/templates/home.html``).

Executives get the dashboards published for their groups (no "Start My Server"); analysts and
developers also get "Open workbench"; super users also get data health and the admin page. The page
reads the app database (published dashboards, sync runs); when it cannot, the page still renders and
says so rather than failing the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.roles import role_for_groups

if TYPE_CHECKING:
    from sophia_lib.appdb import AppDb

log = logging.getLogger(__name__)
ROLE_LABELS = {"super_user": "Super user", "analyst": "Analyst", "executive_viewer": "Executive viewer",
               "developer": "Developer"}


@dataclass(frozen=True)
class DashboardLink:
    title: str
    url: str
    author: str


def dashboards_for(app_db: AppDb, groups: Iterable[str], *, everything: bool = False,
                   base: str = "/services/dashboards/") -> list[DashboardLink]:
    """Live published dashboards whose audience shares a group with ``groups`` (all of them with
    ``everything``), newest version of each slug, by title."""
    from sqlalchemy import select

    from sophia_lib.appdb.models import PublishedDashboard

    mine = set(groups)
    with app_db.session() as session:
        rows = session.scalars(select(PublishedDashboard).where(PublishedDashboard.unpublished_at.is_(None))
                               .order_by(PublishedDashboard.slug, PublishedDashboard.version.desc())).all()
    newest: dict[str, Any] = {}
    for row in rows:
        newest.setdefault(row.slug, row)
    return sorted((DashboardLink(r.title, f"{base}{r.slug}/", r.author) for r in newest.values()
                   if everything or mine & set(r.audience_groups or [])), key=lambda d: d.title.lower())


def _health(config: SophiaConfig) -> list[dict[str, str]]:
    from sophia_lib.sync.health import source_health

    return [{"source": h.source, "state": h.state,
             "last_success": h.last_success_at.strftime("%Y-%m-%d %H:%M UTC") if h.last_success_at else "never"}
            for h in source_health(config)]


def make_landing(config: SophiaConfig, dashboards_served: bool) -> Callable[[Any], dict[str, Any]]:
    """``template_vars["sophia"]``: called by JupyterHub with the signed-in user (None on the login page)."""

    opened: list[AppDb] = []

    def app_db() -> AppDb:  # opened (and its schema checked) once, on the first page that needs it
        if not opened:
            from sophia_lib.appdb import open_app_db

            opened.append(open_app_db(config))
        return opened[0]

    def landing(user: Any) -> dict[str, Any]:
        if user is None:
            return {}
        groups = [g.name for g in user.groups]
        role = role_for_groups(groups, config.hub.group_roles)
        view: dict[str, Any] = {
            "role": role, "role_label": ROLE_LABELS.get(role or "", "no Sophia role"),
            "can_spawn": role in ("analyst", "developer", "super_user"),
            "admin": bool(user.admin), "dashboards_served": dashboards_served,
            "dashboards": [], "dashboards_error": None, "health": None, "health_error": None,
        }
        try:
            view["dashboards"] = dashboards_for(app_db(), groups, everything=role == "super_user")
        except Exception as exc:  # the page must render even when the app database is down
            log.warning("hub landing: cannot list dashboards: %s", exc)
            view["dashboards_error"] = "The dashboards list is unavailable right now."
        if role == "super_user":
            try:
                view["health"] = _health(config)
            except Exception as exc:
                log.warning("hub landing: cannot read data health: %s", exc)
                view["health_error"] = "Data health is unavailable right now."
        return view

    return landing
