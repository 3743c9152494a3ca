"""``sophia jobs`` and ``sophia scheduler``: output, exit codes, one run at a time across processes, the service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import JobRun
from sophia_lib.cli import cli
from sophia_lib.sandbox.background import free_port
from sophia_lib.scheduler.errors import UnknownJobError
from tests.scheduler.conftest import Project

SOPHIA = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sophia"


def _sophia(project: Project, *args: str, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SOPHIA_", "JUPYTERHUB_"))}
    return subprocess.Popen([str(SOPHIA), *args], cwd=project.root, env={**clean, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(app_db: AppDb) -> list[JobRun]:
    with app_db.session() as s:
        return list(s.scalars(select(JobRun).order_by(JobRun.id)))


def test_jobs_list_run_history(project: Project) -> None:
    project.jobs(
        hello={"notebook": project.notebook("hello", "print(f'hello {who}')", parameters="who = 'world'"),
               "every": "15m", "description": "says hello"},
        broken={"notebook": project.notebook("broken", "x = 1", "x / 0"), "cron": "0 7 * * MON"},
        later={"notebook": "../notebooks/later.ipynb", "cron": "0 7 1 * *", "enabled": False},
    )
    runner = CliRunner()
    listed = runner.invoke(cli, ["jobs", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[1].split() == ["JOB", "ENABLED", "TRIGGER", "NEXT", "LAST", "RUN"]
    assert lines[2].split()[:5] == ["hello", "yes", "every", "15m", "due"] and lines[2].endswith("never")
    assert lines[3].split()[:4] == ["broken", "yes", "cron", "0"] and lines[3].endswith("never")
    assert lines[4].split()[:2] == ["later", "no"]

    ran = runner.invoke(cli, ["jobs", "run", "hello", "-p", "who=sophia"])
    assert ran.exit_code == 0, ran.output
    assert ran.output.startswith("hello run #1 attempt 1: succeeded (") and "runs/hello/1.html" in ran.output
    failed = runner.invoke(cli, ["jobs", "run", "broken"])
    assert failed.exit_code == 1
    assert "broken run #2 attempt 1: failed" in failed.output and "cell 1: ZeroDivisionError" in failed.output

    history = runner.invoke(cli, ["jobs", "history", "hello"])
    assert history.exit_code == 0, history.output
    row = history.output.splitlines()[1].split()
    assert row[:4] == ["#1", "succeeded", "manual", "1"] and row[-1].endswith("runs/hello/1.html")
    as_json = json.loads(runner.invoke(cli, ["jobs", "history", "broken", "--json"]).output)
    assert as_json[0]["failed_cell_index"] == 1 and as_json[0]["error"].startswith("ZeroDivisionError")
    assert json.loads(runner.invoke(cli, ["jobs", "list", "--json"]).output)[0]["last"]["parameters"] == \
        {"who": "sophia"}

    unknown = runner.invoke(cli, ["jobs", "run", "helo"])
    assert isinstance(unknown.exception, UnknownJobError) and "did you mean 'hello'" in str(unknown.exception)
    assert isinstance(runner.invoke(cli, ["jobs", "history", "helo"]).exception, UnknownJobError)
    assert runner.invoke(cli, ["jobs", "history", "later"]).output == "later: no runs yet\n"


def test_never_two_runs_of_one_job_at_once(project: Project, app_db: AppDb, tmp_path: Path) -> None:
    log, release = tmp_path / "runs.log", tmp_path / "release"
    project.jobs(hold={"notebook": project.notebook(
        "hold", f"import os, time\nopen({str(log)!r}, 'a').write('start\\n')\ndeadline = time.time() + 120\n"
                f"while not os.path.exists({str(release)!r}) and time.time() < deadline:\n    time.sleep(0.1)\n"
                f"open({str(log)!r}, 'a').write('end\\n')"),
        "every": "1h", "timeout": "5m"})
    first = _sophia(project, "scheduler", "--once")
    try:
        _wait_for(lambda: any(r.status == "running" for r in _rows(app_db)), "the first run to start")
        second, by_hand = _sophia(project, "scheduler", "--once"), _sophia(project, "jobs", "run", "hold")
        second_out, second_err = second.communicate(timeout=120)
        hand_out, hand_err = by_hand.communicate(timeout=120)
        release.write_text("go")
        first_out, first_err = first.communicate(timeout=120)
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()

    assert second.returncode == 0 and second_out == "", second_err  # the slot is taken: nothing to do
    assert by_hand.returncode == 1 and hand_out == ""
    assert "job 'hold' is already running (run #1, attempt 1, since" in hand_err
    assert first.returncode == 0 and first_out.strip() == "hold run #1 attempt 1: succeeded", first_err
    assert [(r.id, r.status) for r in _rows(app_db)] == [(1, "succeeded")]
    assert log.read_text().splitlines() == ["start", "end"]


def test_the_service_reports_health_and_stops_cleanly(project: Project, app_db: AppDb, tmp_path: Path) -> None:
    pidfile = tmp_path / "kernel.pid"
    project.jobs(hang={"notebook": project.notebook(
        "hang", f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)"),
        "every": "1h", "timeout": "30m"})
    port = free_port()
    service = _sophia(project, "scheduler", JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
                      JUPYTERHUB_SERVICE_PREFIX="/services/scheduler/")
    try:
        def health() -> dict | None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/services/scheduler/health", timeout=5).json()
            except httpx.HTTPError:
                return None
            last = body["jobs"]["hang"]["last_run"]
            return body if last and last["status"] == "running" and pidfile.exists() else None

        body = _wait_for(health, "the service's health to show the job running")
        assert body["status"] == "ok" and body["timezone"] == "UTC"
        assert body["jobs"]["hang"]["enabled"] and body["jobs"]["hang"]["trigger"] == "every 1h"
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    [row] = _rows(app_db)
    assert row.status == "cancelled" and "scheduler was stopped" in row.error
    kernel = int(pidfile.read_text())
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("command", [["jobs"], ["jobs", "list"], ["jobs", "run"], ["jobs", "history"],
                                     ["scheduler"], ["refresh"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
