"""schedule.yaml validation (errors name the job and the key) and the slot arithmetic (no kernels here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sophia_lib.config import load_config
from sophia_lib.errors import ConfigError
from sophia_lib.scheduler.errors import ScheduleError, UnknownJobError
from sophia_lib.scheduler.schedule import REPO_SCHEDULE, JobSpec, load_schedule, parse_duration
from sophia_lib.scheduler.triggers import due_slot, next_slot
from tests.scheduler.conftest import Project

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def test_the_shipped_schedule() -> None:
    schedule = load_schedule(load_config(), REPO_SCHEDULE)
    refresh = schedule.job("refresh")
    assert refresh.enabled and refresh.every == timedelta(minutes=15) and refresh.audience == "super_user"
    assert refresh.notebook.is_file() and refresh.notebook.name == "refresh.ipynb"
    reports = {name: schedule.job(name) for name in
               ("weekly_exec_summary", "monthly_department_scorecards", "quarterly_business_review")}
    assert [j.cron for j in reports.values()] == ["0 7 * * MON", "0 7 1 * *", "0 7 1 1,4,7,10 *"]
    assert all(j.enabled and j.notebook.is_file() for j in reports.values())  # notebooks/reports/ (docs/reports.md)
    assert all(j.depends_on == ["refresh"] for j in reports.values())


def test_an_enabled_job_needs_its_notebook(project: Project) -> None:
    project.jobs(report={"notebook": "../notebooks/reports/weekly.ipynb", "cron": "0 7 * * MON"},
                 later={"notebook": "../notebooks/reports/later.ipynb", "cron": "0 7 * * MON", "enabled": False})
    with pytest.raises(ScheduleError) as err:
        load_schedule(project.config)
    message = str(err.value)
    assert "job 'report', key 'notebook'" in message and "notebooks/reports/weekly.ipynb does not exist" in message
    assert "later" not in message  # a disabled job may wait for its notebook


@pytest.mark.parametrize(("body", "expected"), [
    ({"notebook": "x.ipynb", "cron": "0 25 * * *"}, "job 'bad', key 'cron' = '0 25 * * *': invalid cron expression"),
    ({"notebook": "x.ipynb", "every": "15 minutes"}, "job 'bad', key 'every' = '15 minutes': not a duration"),
    ({"notebook": "x.ipynb", "every": "15m", "timeout": "0s"}, "job 'bad', key 'timeout'"),
    ({"notebook": "x.ipynb"}, "job 'bad': give exactly one of cron:"),
    ({"notebook": "x.ipynb", "every": "1h", "cron": "* * * * *"}, "job 'bad': give exactly one of cron:"),
    ({"notebook": "x.ipynb", "every": "1h", "retrys": 2}, "job 'bad', key 'retrys': unknown key — did you mean "
                                                          "'retries'?"),
    ({"notebook": "x.ipynb", "every": "1h", "retries": 11}, "job 'bad', key 'retries' = 11"),
    ({"notebook": "x.ipynb", "every": "1h", "audience": "ceo"}, "job 'bad', key 'audience' = 'ceo'"),
    ({"notebook": "x.ipynb", "every": "1h", "parameters": {"not ok": 1}}, "parameter names must be Python "
                                                                          "identifiers"),
    ({"every": "1h"}, "job 'bad', key 'notebook': required"),
])
def test_bad_keys_are_named(project: Project, body: dict, expected: str) -> None:
    project.jobs(bad=body)
    with pytest.raises(ScheduleError) as err:
        load_schedule(project.config)
    assert expected in str(err.value)
    assert str(project.schedule) in str(err.value)


def test_dependencies_are_checked(project: Project) -> None:
    nb = project.notebook("n", "1")
    project.jobs(a={"notebook": nb, "every": "1h", "depends_on": ["b"]},
                 b={"notebook": nb, "every": "1h", "depends_on": ["a"]},
                 c={"notebook": nb, "every": "1h", "depends_on": ["refrsh"]},
                 d={"notebook": nb, "every": "1h", "depends_on": ["off"]},
                 off={"notebook": nb, "every": "1h", "enabled": False})
    with pytest.raises(ScheduleError) as err:
        load_schedule(project.config)
    message = str(err.value)
    assert "the jobs a → b → a depend on each other in a cycle" in message or "b → a → b" in message
    assert "job 'c', key 'depends_on': unknown job 'refrsh'" in message
    assert "job 'd', key 'depends_on': it depends on 'off', which is disabled" in message


def test_unknown_job_and_bad_yaml(project: Project) -> None:
    project.jobs(refresh={"notebook": project.notebook("n", "1"), "every": "15m"})
    schedule = load_schedule(project.config)
    with pytest.raises(UnknownJobError, match="no job 'refesh'.*did you mean 'refresh'"):
        schedule.job("refesh")
    project.schedule.write_text("jobs:\n  refresh: {every: 15m\n")
    with pytest.raises(ScheduleError, match="is not valid YAML at line"):
        load_schedule(project.config)


def test_scheduler_config_keys(tmp_path: Path) -> None:
    (tmp_path / "sophia.yaml").write_text("scheduler:\n  timezone: Europe/Pariss\n")
    with pytest.raises(ConfigError, match="scheduler.timezone = 'Europe/Pariss': unknown time zone"):
        load_config(tmp_path / "sophia.yaml")
    (tmp_path / "sophia.yaml").write_text("scheduler:\n  schedule: jobs.yaml\n  runs_dir: out\n")
    config = load_config(tmp_path / "sophia.yaml")
    assert config.scheduler.schedule == tmp_path / "jobs.yaml" and config.scheduler.runs_dir == tmp_path / "out"


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration(45) == timedelta(seconds=45)
    assert parse_duration("0.5") == timedelta(seconds=0.5)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def _job(**kw: object) -> JobSpec:
    return JobSpec(notebook=Path("x.ipynb"), **kw)


def test_interval_slots_catch_up_once_and_keep_their_grid() -> None:
    job = _job(every="15m")
    now = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
    assert due_slot(job, None, now, UTC_ZONE, anchor=now) == now.replace(microsecond=0)  # never ran: now
    last = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # down for two hours: eight slots missed
    assert due_slot(job, last, now, UTC_ZONE, anchor=now) == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert due_slot(job, datetime(2026, 3, 2, 10, 0, tzinfo=UTC), now, UTC_ZONE, anchor=now) is None
    assert next_slot(job, datetime(2026, 3, 2, 10, 0, tzinfo=UTC), now, UTC_ZONE) == datetime(2026, 3, 2, 10, 15,
                                                                                                tzinfo=UTC)


def test_cron_slots_in_the_configured_zone_across_summer_time() -> None:
    job = _job(cron="0 7 * * MON")
    started = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # Monday 23 March 07:00 in Paris is 06:00 UTC (winter); Monday 30 March 07:00 is 05:00 UTC (summer).
    assert due_slot(job, None, datetime(2026, 3, 23, 5, 59, tzinfo=UTC), PARIS, anchor=started) == \
        datetime(2026, 3, 16, 6, 0, tzinfo=UTC)
    at_seven = datetime(2026, 3, 30, 5, 0, tzinfo=UTC)
    last = datetime(2026, 3, 23, 6, 0, tzinfo=UTC)
    assert due_slot(job, last, at_seven, PARIS, anchor=started) == at_seven  # exactly on the slot: due
    assert due_slot(job, last, at_seven - timedelta(seconds=1), PARIS, anchor=started) is None
    assert next_slot(job, last, at_seven - timedelta(seconds=1), PARIS) == at_seven


def test_cron_missed_slots_run_once_and_a_new_job_owes_nothing_from_before() -> None:
    job = _job(cron="0 7 1 1,4,7,10 *")  # quarterly
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    last = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)  # down since January: April, July and October missed
    assert due_slot(job, last, now, UTC_ZONE, anchor=now) == datetime(2026, 10, 1, 7, 0, tzinfo=UTC)
    assert due_slot(job, None, now, UTC_ZONE, anchor=now) is None  # never ran: starts with its next slot
    assert due_slot(job, None, now, UTC_ZONE, anchor=datetime(2026, 9, 30, tzinfo=UTC)) == \
        datetime(2026, 10, 1, 7, 0, tzinfo=UTC)  # ...unless that slot passed while this scheduler ran


def test_config_check_names_the_job_and_key(project: Project) -> None:
    from typer.testing import CliRunner

    from sophia_lib.cli import cli

    project.jobs(refresh={"notebook": project.notebook("n", "1"), "every": "15m"})
    ok = CliRunner().invoke(cli, ["config", "check"])
    assert ok.exit_code == 0 and f"# schedule: {project.schedule}: 1 job(s), 1 enabled" in ok.output
    project.jobs(refresh={"notebook": project.notebook("n", "1"), "cron": "61 * * * *"})
    bad = CliRunner().invoke(cli, ["config", "check"])
    assert isinstance(bad.exception, ScheduleError) and "job 'refresh', key 'cron'" in str(bad.exception)
