"""Data-source health from the app DB: is each source fresh, and if not, since when and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import SyncRun, SyncStreamStat
from sophia_lib.config import SophiaConfig
from sophia_lib.sync.configuration import STALE_AFTER, with_sandbox_sources

THealth = Literal["ok", "running", "failing", "stale", "never", "disabled"]
HISTORY = 50
"""Runs read per source: enough to count a long failure streak, bounded for big histories."""


@dataclass
class SourceHealth:
    """One source's freshness. ``lag`` is the time since the last successful sync finished."""

    source: str
    state: THealth
    configured: bool
    enabled: bool
    last_run_status: str | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    lag: timedelta | None = None
    consecutive_failures: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    last_error: str | None = None
    last_error_reason: str | None = None

    @property
    def rows_last_run(self) -> int:
        """Rows changed by the last successful run (inserted + updated + deleted)."""
        return self.rows_inserted + self.rows_updated + self.rows_deleted

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"source": self.source, "state": self.state, "configured": self.configured, "enabled": self.enabled,
                "last_run_status": self.last_run_status, "last_run_at": iso(self.last_run_at),
                "last_success_at": iso(self.last_success_at),
                "lag_s": round(self.lag.total_seconds(), 1) if self.lag is not None else None,
                "consecutive_failures": self.consecutive_failures, "rows_last_run": self.rows_last_run,
                "rows_inserted": self.rows_inserted, "rows_updated": self.rows_updated,
                "rows_deleted": self.rows_deleted, "last_error": self.last_error,
                "last_error_reason": self.last_error_reason}


def source_health(config: SophiaConfig, now: datetime | None = None, app_db: AppDb | None = None,
                  stale_after: timedelta = STALE_AFTER) -> list[SourceHealth]:
    """Health of every configured source and of every source with recorded runs, by name."""
    now = now or datetime.now(UTC)
    config = with_sandbox_sources(config)
    db = app_db or open_app_db(config)
    try:
        with db.session() as s:
            recorded = set(s.scalars(select(SyncRun.source).distinct()))
            out = []
            for name in sorted(recorded | set(config.sources)):
                runs = s.scalars(select(SyncRun).where(SyncRun.source == name)
                                 .order_by(SyncRun.id.desc()).limit(HISTORY)).all()
                out.append(_health(s, name, config, runs, now, stale_after))
            return out
    finally:
        if app_db is None:
            db.close()


def _health(s: Any, name: str, config: SophiaConfig, runs: list[SyncRun], now: datetime,
            stale_after: timedelta) -> SourceHealth:
    source = config.sources.get(name)  # type: ignore[call-overload]
    health = SourceHealth(name, "never", configured=source is not None,
                          enabled=bool(source is not None and source.enabled))
    if runs:
        last = runs[0]
        health.last_run_status, health.last_run_at = last.status, last.started_at or last.created_at
    finished = [r for r in runs if r.status in ("succeeded", "failed")]
    for run in finished:
        if run.status == "succeeded":
            break
        health.consecutive_failures += 1
    failed = next((r for r in finished if r.status == "failed"), None)
    success = next((r for r in finished if r.status == "succeeded"), None)
    if failed is not None and (success is None or failed.id > success.id):
        health.last_error, health.last_error_reason = failed.error, failed.error_reason
    if success is not None:
        health.last_success_at = success.finished_at
        health.lag = now - success.finished_at if success.finished_at else None
        totals = s.execute(select(func.coalesce(func.sum(SyncStreamStat.rows_inserted), 0),
                                  func.coalesce(func.sum(SyncStreamStat.rows_updated), 0),
                                  func.coalesce(func.sum(SyncStreamStat.rows_deleted), 0))
                           .where(SyncStreamStat.run_id == success.id)).one()
        health.rows_inserted, health.rows_updated, health.rows_deleted = (int(v) for v in totals)
    if not health.enabled:
        health.state = "disabled"
    elif runs and runs[0].status == "running":
        health.state = "running"
    elif health.consecutive_failures:
        health.state = "failing"
    elif success is None:
        health.state = "never"
    elif health.lag is not None and health.lag > stale_after:
        health.state = "stale"
    else:
        health.state = "ok"
    return health
