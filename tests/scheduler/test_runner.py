"""One job run for real: papermill in a child process, a real kernel, the record in the app DB."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import psutil
import pytest
from sqlalchemy import select

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import JobRun
from sophia_lib.scheduler import hooks
from sophia_lib.scheduler.history import history
from sophia_lib.scheduler.runner import JobRunner, RunOutcome
from sophia_lib.scheduler.schedule import load_schedule
from tests.scheduler.conftest import Project


def _runs(app_db: AppDb, job: str) -> list[JobRun]:
    with app_db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def _run(project: Project, app_db: AppDb, name: str, **kw: object) -> list[RunOutcome]:
    config = project.config
    runner = JobRunner(config, app_db)
    with runner.lock(name):
        return runner.run(load_schedule(config).job(name), **kw)


def test_a_job_succeeds_and_is_recorded_with_its_parameters(project: Project, app_db: AppDb) -> None:
    project.jobs(hello={"notebook": project.notebook(
        "hello",
        "print(greeting * 2, times)",
        "import os\nfrom sophia_lib.config import load_config\n"
        "print('role', os.environ['SOPHIA_JOB_ROLE'], 'var', load_config().var_dir)",
        parameters="greeting = 'hi'\ntimes = 1"),
        "every": "1h", "audience": "executive_viewer", "parameters": {"times": 3}})
    [outcome] = _run(project, app_db, "hello", parameters={"greeting": "yo"})

    assert outcome.status == "succeeded", outcome.error
    [row] = _runs(app_db, "hello")
    assert (row.status, row.attempt, row.trigger, row.scheduled_for) == ("succeeded", 1, "manual", None)
    assert row.parameters == {"times": 3, "greeting": "yo"}
    assert row.started_at < row.finished_at and row.duration_s and row.duration_s > 0
    assert row.failed_cell_index is None and row.error is None
    executed = Path(row.output_path)
    assert executed == project.root / "var" / "runs" / "hello" / f"{row.id}.ipynb"
    text = "\n".join(o.get("text", "") for c in nbformat.read(executed, 4).cells for o in c.get("outputs", []))
    assert "yoyo 3" in text  # the parameters reached the kernel
    assert f"role executive_viewer var {project.root / 'var'}" in text  # the job's role and the same config
    html = executed.with_suffix(".html").read_text()
    assert "yoyo 3" in html and "<html" in html

    app_db.close()  # a restart: a new connection reads the same history
    reopened = open_app_db(project.config)
    try:
        assert [(r.id, r.status) for r in history(reopened, "hello")] == [(row.id, "succeeded")]
    finally:
        reopened.close()


def test_a_failing_cell_is_a_failure_with_the_cell_and_error(project: Project, app_db: AppDb) -> None:
    project.jobs(broken={"notebook": project.notebook(
        "broken", "x = 41", "raise ValueError(f'bad number {x + 1}')", "print('never printed')",
        parameters="unused = 0"), "every": "1h"})
    [outcome] = _run(project, app_db, "broken")

    [row] = _runs(app_db, "broken")
    assert row.status == "failed" and outcome.status == "failed"
    assert row.failed_cell_index == 2  # counted in the notebook as written: parameters, x = 41, raise
    assert row.error.startswith("ValueError: bad number 42")
    assert "Traceback" in row.error and "\x1b[" not in row.error
    cells = nbformat.read(row.output_path, 4).cells
    assert not any("never printed" in o.get("text", "") for c in cells for o in c.get("outputs", []))
    assert "bad number 42" in Path(row.output_path).with_suffix(".html").read_text()


def test_a_dead_kernel_is_a_failure_not_a_hang(project: Project, app_db: AppDb) -> None:
    project.jobs(dies={"notebook": project.notebook("dies", "print('before')", "import os\nos._exit(7)",
                                                    "print('after')"),
                       "every": "1h", "timeout": "5m"})
    started = time.monotonic()
    _run(project, app_db, "dies")

    assert time.monotonic() - started < 60  # far below the timeout: the death is noticed, not waited out
    [row] = _runs(app_db, "dies")
    assert row.status == "failed" and row.failed_cell_index == 1
    assert "DeadKernelError" in row.error and "kernel died" in row.error
    cell = nbformat.read(row.output_path, 4).cells[1]
    assert cell.metadata.papermill.status == "failed"
    assert any(o.output_type == "error" for o in cell.outputs)  # the rendered run shows where it died


def test_a_job_past_its_timeout_is_killed_with_its_kernel(project: Project, app_db: AppDb, tmp_path: Path) -> None:
    pidfile = tmp_path / "kernel.pid"
    project.jobs(slow={"notebook": project.notebook(
        "slow", f"import os\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))", "import time\ntime.sleep(300)"),
        "every": "1h", "timeout": "4s"})
    started = time.monotonic()
    [outcome] = _run(project, app_db, "slow")

    assert time.monotonic() - started < 30
    [row] = _runs(app_db, "slow")
    assert row.status == "timed_out" == outcome.status
    assert row.failed_cell_index == 1 and "ran past the job's timeout of 4s" in row.error
    kernel = int(pidfile.read_text())
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
    assert "TimeoutError" in Path(row.output_path).with_suffix(".html").read_text()


def test_retries_with_backoff_then_success(project: Project, app_db: AppDb, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "attempts"
    project.jobs(flaky={"notebook": project.notebook(
        "flaky",
        "from pathlib import Path\np = Path(counter)\nn = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\nif n < 3:\n    raise RuntimeError(f'flaky attempt {n}')",
        parameters="counter = ''"),
        "every": "1h", "retries": 3, "retry_backoff": "1s", "parameters": {"counter": str(counter)}})
    seen: list[RunOutcome] = []
    monkeypatch.setattr(hooks, "AFTER_JOB", [lambda config, job, outcome: seen.append(outcome)])
    slot = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    outcomes = _run(project, app_db, "flaky", scheduled_for=slot, trigger="schedule")

    rows = _runs(app_db, "flaky")
    assert [(r.attempt, r.status) for r in rows] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert [o.run_id for o in outcomes] == [r.id for r in rows]
    assert {r.scheduled_for for r in rows} == {slot} and {r.trigger for r in rows} == {"schedule"}
    assert "flaky attempt 2" in rows[1].error
    assert (rows[1].started_at - rows[0].finished_at).total_seconds() >= 1.0  # backoff 1s, then doubled
    assert (rows[2].started_at - rows[1].finished_at).total_seconds() >= 2.0
    assert [o.run_id for o in seen] == [rows[2].id]  # after-job hooks get the last attempt, once


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(project: Project, app_db: AppDb) -> None:
    project.jobs(any={"notebook": project.notebook("any", "1"), "every": "1h"})
    with app_db.session() as s:
        s.add(JobRun(job="any", status="running", started_at=datetime.now(UTC), attempt=1, trigger="schedule"))
    runner = JobRunner(project.config, app_db)
    with runner.lock("any"):
        [row] = _runs(app_db, "any")
        assert row.status == "failed" and row.error.startswith("interrupted")
