"""The scheduler loop: dependencies, catch-up after downtime, state across restarts (real kernels)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import JobRun
from sophia_lib.scheduler.loop import Scheduler
from tests.scheduler.conftest import Project


def _log_cell(log: Path, label: str, seconds: float = 0) -> str:
    return (f"import time\nopen({str(log)!r}, 'a').write('{label} start\\n')\ntime.sleep({seconds})\n"
            f"open({str(log)!r}, 'a').write('{label} end\\n')")


def test_dependencies_run_first_and_a_failed_dependency_cancels(project: Project, app_db: AppDb,
                                                                 tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    project.jobs(
        second={"notebook": project.notebook("second", _log_cell(log, "second")), "every": "1h",
                "depends_on": ["first"]},
        first={"notebook": project.notebook("first", _log_cell(log, "first", 1.5)), "every": "1h"},
        after_broken={"notebook": project.notebook("after", "1"), "every": "1h", "depends_on": ["broken"]},
        broken={"notebook": project.notebook("broken", "1/0"), "every": "1h"},
    )
    scheduler = Scheduler(project.config, app_db=app_db)  # max_parallel 2: first and broken run side by side
    try:
        assert [job.name for job, _ in scheduler.due()] == ["first", "second", "broken", "after_broken"]
        outcomes = {o.job: o for o in scheduler.run_once()}
    finally:
        scheduler.close()

    assert log.read_text().splitlines() == ["first start", "first end", "second start", "second end"]
    assert (outcomes["first"].status, outcomes["second"].status, outcomes["broken"].status) == \
        ("succeeded", "succeeded", "failed")
    assert {o.trigger for o in outcomes.values()} == {"schedule"}  # first runs of new jobs are not catch-ups
    cancelled = outcomes["after_broken"]
    assert cancelled.status == "cancelled"
    assert f"dependency 'broken' failed (run #{outcomes['broken'].run_id}: ZeroDivisionError" in cancelled.error
    with app_db.session() as s:
        row = s.get(JobRun, cancelled.run_id)
        assert row.status == "cancelled" and row.scheduled_for is not None and row.output_path is None


def test_missed_slots_after_downtime_run_once_and_state_survives_restarts(project: Project,
                                                                          app_db: AppDb) -> None:
    project.jobs(refresh={"notebook": project.notebook("refresh", "print('refreshed')"), "every": "15m"})
    now = datetime.now(UTC).replace(microsecond=0)
    last = now - timedelta(hours=2, minutes=5)  # the scheduler was down for eight slots
    with app_db.session() as s:
        s.add(JobRun(job="refresh", status="succeeded", scheduled_for=last, started_at=last, finished_at=last,
                     trigger="schedule"))

    scheduler = Scheduler(project.config, app_db=app_db, clock=lambda: now)
    try:
        [outcome] = scheduler.run_once()
        assert outcome.status == "succeeded" and outcome.trigger == "catch_up"
        assert outcome.scheduled_for == last + 8 * timedelta(minutes=15)  # the newest missed slot, once
        assert scheduler.run_once() == []  # nothing owed any more
    finally:
        scheduler.close()

    restarted = Scheduler(project.config, app_db=app_db, clock=lambda: now + timedelta(minutes=5))
    try:
        assert restarted.due() == []  # the new process reads the slot from the app DB
        assert restarted.next_run(restarted.schedule.job("refresh")) == last + 9 * timedelta(minutes=15)
        assert [job.name for job, _ in restarted.due(now + timedelta(minutes=11))] == ["refresh"]
    finally:
        restarted.close()
    with app_db.session() as s:
        assert s.scalars(select(JobRun.scheduled_for).order_by(JobRun.id)).all() == [last, outcome.scheduled_for]
