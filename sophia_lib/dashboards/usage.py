"""Dashboard views: every view is an audit record (``dashboard.view``); usage is counted from them.

The audit log is the one append-only, hash-chained record of who saw what, so the usage table is a
query over it rather than a second table that could disagree with it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import AuditEntry
from sophia_lib.audit import AuditEvent, AuditLog

VIEW = "dashboard.view"
PUBLISH = "dashboard.publish"
UNPUBLISH = "dashboard.unpublish"
DENIED = "dashboard.denied"


def record(log: AuditLog, user: str, role: str | None, action: str, slug: str, **detail: Any) -> None:
    """Append one dashboard event (view, denial, publish) to the audit log."""
    log.append(AuditEvent(user, action, role, slug[:512], detail))


def usage(app_db: AppDb, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Views per dashboard per user over the last ``days`` days, most viewed first."""
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    counts: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], datetime] = {}
    modes: dict[tuple[str, str], Counter[str]] = {}
    with app_db.session() as s:
        rows = s.execute(select(AuditEntry.target, AuditEntry.actor, AuditEntry.at, AuditEntry.detail)
                         .where(AuditEntry.action == VIEW, AuditEntry.at >= since))
        for target, actor, at, detail in rows:
            key = (target or "", actor)
            counts[key] += 1
            last[key] = max(last.get(key, at), at)
            modes.setdefault(key, Counter())[(detail or {}).get("mode", "snapshot")] += 1
    return [{"dashboard": d, "user": u, "views": n, "live_views": modes[(d, u)]["live"],
             "last_view": last[(d, u)].isoformat(timespec="minutes")}
            for (d, u), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
