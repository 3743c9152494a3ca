"""Reading job runs back from the app database (for the scheduler, ``sophia jobs`` and runs pages)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import JobRun

FINISHED = ("succeeded", "failed", "timed_out", "cancelled")


def last_slot(app_db: AppDb, job: str) -> datetime | None:
    """The newest schedule slot any run of ``job`` was recorded for (runs by hand have none)."""
    with app_db.session() as s:
        return s.scalar(select(func.max(JobRun.scheduled_for)).where(JobRun.job == job))


def latest_finished(app_db: AppDb, job: str) -> JobRun | None:
    with app_db.session() as s:
        return s.scalars(select(JobRun).where(JobRun.job == job, JobRun.status.in_(FINISHED))
                         .order_by(JobRun.id.desc()).limit(1)).first()


def history(app_db: AppDb, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """Newest first; every job when ``job`` is None."""
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    with app_db.session() as s:
        return list(s.scalars(query))


def latest_by_job(app_db: AppDb) -> dict[str, JobRun]:
    """Each job's newest run (any status)."""
    newest = select(func.max(JobRun.id)).group_by(JobRun.job)
    with app_db.session() as s:
        return {run.job: run for run in s.scalars(select(JobRun).where(JobRun.id.in_(newest)))}


def run_dict(run: JobRun) -> dict[str, Any]:
    """A run as plain JSON-able data; ``html_path`` when the rendered notebook is still on disk."""
    html = Path(run.output_path).with_suffix(".html") if run.output_path else None
    return {
        "id": run.id, "job": run.job, "status": run.status, "trigger": run.trigger, "attempt": run.attempt,
        "scheduled_for": run.scheduled_for.isoformat() if run.scheduled_for else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": run.duration_s, "parameters": run.parameters,
        "output_path": run.output_path, "html_path": str(html) if html and html.exists() else None,
        "failed_cell_index": run.failed_cell_index, "error": run.error,
    }
