"""The data health dashboard's content: sources, quarantines, schema changes, jobs and dashboard usage.

These facts live in the app database, not the warehouse, so the query door cannot serve them; instead
the kernel asks the query service who it runs for (a server-verified answer) and reads them only for
a super user. Nothing here returns customer data: source names, counts, times and error summaries.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from sophia_lib.appdb.models import QuarantineSummary, SchemaEvent
from sophia_lib.query.errors import ForbiddenError

if TYPE_CHECKING:
    import pandas as pd

    from sophia_lib.dashboards.ui import Data

SOURCE_COLUMNS = {"source": "Source", "state": "State", "last_run_at": "Last sync", "lag": "Lag",
                  "rows_last_run": "Rows", "consecutive_failures": "Failures in a row", "last_error": "Last error"}
QUARANTINE_COLUMNS = {"source": "Source", "stream": "Stream", "reason": "Reason", "records": "Rows",
                      "at": "When"}
SCHEMA_COLUMNS = {"source": "Source", "stream": "Stream", "column_name": "Column", "change": "Change",
                  "old_type": "Was", "new_type": "Now", "at": "When"}
JOB_COLUMNS = {"job": "Job", "status": "Last status", "trigger": "Trigger", "started_at": "Started",
               "duration_s": "Seconds", "error": "Error"}
USAGE_COLUMNS = {"dashboard": "Dashboard", "user": "Viewer", "views": "Views", "live_views": "Live",
                 "last_view": "Last view"}


@dataclass
class HealthReport:
    sources: pd.DataFrame
    quarantine: pd.DataFrame
    schema_events: pd.DataFrame
    jobs: pd.DataFrame
    usage: pd.DataFrame

    def tiles_html(self) -> str:
        from sophia_lib.dashboards.ui import Tile

        failing = int((self.sources["state"].isin(["failing", "stale", "never"])).sum()) if len(self.sources) else 0
        failed_jobs = int((self.jobs["status"].isin(["failed", "timed_out"])).sum()) if len(self.jobs) else 0
        quarantined = int(self.quarantine["records"].sum()) if len(self.quarantine) else 0
        tiles = [Tile("Sources", float(len(self.sources)), None, "count", "configured or seen", compare=False),
                 Tile("Sources needing attention", float(failing), None, "count", "failing, stale or never synced",
                      compare=False),
                 Tile("Quarantined rows", float(quarantined), None, "count", "all time", compare=False),
                 Tile("Jobs whose last run failed", float(failed_jobs), None, "count", "scheduler",
                      compare=False)]
        return '<div class="sophia-tiles">' + "".join(t.html() for t in tiles) + "</div>"


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=list(columns))


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def collect(data: Data | None = None) -> HealthReport:
    """Read everything the page shows; refuses unless the query service says the caller is a super user."""
    from sophia_lib.appdb import open_app_db
    from sophia_lib.config import load_config
    from sophia_lib.dashboards.usage import usage
    from sophia_lib.query.client import default_client
    from sophia_lib.scheduler.history import latest_by_job
    from sophia_lib.sync.health import source_health

    who = default_client().whoami()
    if who.get("role") != "super_user":
        raise ForbiddenError("data health is for super users.", fix="ask a super user, or open another dashboard")
    if data is not None:  # the "as of" stamp: the warehouse snapshot the service serves
        data.sql("select 1 as ok")
    config = load_config()
    app_db = open_app_db(config)
    try:
        sources = [{**h.to_dict(), "lag": _lag(h.to_dict()["lag_s"]),
                    "last_run_at": h.last_run_at.isoformat(timespec="minutes") if h.last_run_at else None,
                    "last_error": html.unescape((h.last_error or "")[:120])}
                   for h in source_health(config, app_db=app_db)]
        with app_db.session() as s:
            quarantine = [{"source": q.source, "stream": q.stream, "reason": q.reason, "records": q.records,
                           "at": q.at.isoformat(timespec="minutes")}
                          for q in s.scalars(select(QuarantineSummary).order_by(QuarantineSummary.id.desc())
                                             .limit(200))]
            schema = [{"source": e.source, "stream": e.stream, "column_name": e.column_name, "change": e.change,
                       "old_type": e.old_type, "new_type": e.new_type, "at": e.at.isoformat(timespec="minutes")}
                      for e in s.scalars(select(SchemaEvent).order_by(SchemaEvent.id.desc()).limit(200))]
        jobs = [{"job": r.job, "status": r.status, "trigger": r.trigger,
                 "started_at": r.started_at.isoformat(timespec="minutes") if r.started_at else None,
                 "duration_s": round(r.duration_s, 1) if r.duration_s else None, "error": (r.error or "")[:120]}
                for r in sorted(latest_by_job(app_db).values(), key=lambda r: r.job)]
        views = usage(app_db)
    finally:
        app_db.close()
    return HealthReport(_frame(sources, SOURCE_COLUMNS), _frame(quarantine, QUARANTINE_COLUMNS),
                        _frame(schema, SCHEMA_COLUMNS), _frame(jobs, JOB_COLUMNS), _frame(views, USAGE_COLUMNS))
