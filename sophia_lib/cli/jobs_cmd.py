"""``sophia jobs``: list the scheduled jobs, run one now, show a job's runs. Parses and calls sophia_lib only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import typer
import yaml

from sophia_lib.appdb import open_app_db
from sophia_lib.config import load_config
from sophia_lib.scheduler.errors import ScheduleError
from sophia_lib.scheduler.history import history as job_history
from sophia_lib.scheduler.history import last_slot, latest_by_job, run_dict
from sophia_lib.scheduler.schedule import load_schedule
from sophia_lib.scheduler.triggers import due_slot, next_slot

if TYPE_CHECKING:
    from sophia_lib.scheduler.runner import RunOutcome

app = typer.Typer(help="The scheduled jobs of pipelines/schedule.yaml: list, run now, history.", no_args_is_help=True)

STATUS_COLOURS = {"succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow",
                  "running": "cyan"}


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else "-"


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


@app.command("list")
def list_jobs(as_json: bool = typer.Option(False, "--json", help="Print the jobs as JSON.")) -> None:
    """Every job: enabled, trigger, next run (scheduler.timezone) and its last run."""
    config = load_config()
    schedule = load_schedule(config)
    tz = ZoneInfo(config.scheduler.timezone)
    now = datetime.now(UTC)
    app_db = open_app_db(config)
    try:
        latest = latest_by_job(app_db)
        jobs = []
        for job in schedule.jobs.values():
            last = last_slot(app_db, job.name)
            due = job.enabled and due_slot(job, last, now, tz, anchor=now) is not None
            run = latest.get(job.name)
            jobs.append({"name": job.name, "enabled": job.enabled, "trigger": job.trigger,
                         "next": None if not job.enabled else ("due" if due else next_slot(job, last, now, tz)),
                         "last": run_dict(run) if run else None, "notebook": str(job.notebook),
                         "description": job.description, "depends_on": job.depends_on})
    finally:
        app_db.close()
    if as_json:
        for job in jobs:
            if isinstance(job["next"], datetime):
                job["next"] = job["next"].isoformat()
        typer.echo(json.dumps(jobs, indent=2))
        return
    typer.echo(f"schedule: {schedule.path} (times in {tz.key})")
    rows = [("JOB", "ENABLED", "TRIGGER", "NEXT", "LAST RUN")]
    for job in jobs:
        nxt = job["next"]
        next_text = "-" if nxt is None else ("due now" if nxt == "due" else _when(nxt, tz))
        last = job["last"]
        last_text = "never" if last is None else (
            f"#{last['id']} {last['status']} {_when(datetime.fromisoformat(last['started_at']), tz)}"
            if last["started_at"] else f"#{last['id']} {last['status']}")
        rows.append((job["name"], "yes" if job["enabled"] else "no", job["trigger"], next_text, last_text))
    for line in _table(rows):
        typer.echo(line)


def _parse_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            typer.secho(f"error: --param {pair!r} is not NAME=VALUE.\n  fix: write e.g. --param sync=false",
                        err=True, fg="red")
            raise typer.Exit(2)
        try:
            params[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            params[key] = value
    return params


def describe(outcome: RunOutcome) -> str:
    """One line per attempt: run id, status, duration, the executed notebook, and where it failed."""
    took = f"{outcome.duration_s:.1f}s" if outcome.duration_s is not None else "-"
    line = f"{outcome.job} run #{outcome.run_id} attempt {outcome.attempt}: {outcome.status} ({took})"
    if outcome.html_path or outcome.output_path:
        line += f" — {outcome.html_path or outcome.output_path}"
    if outcome.status != "succeeded":
        cell = f"cell {outcome.failed_cell_index}: " if outcome.failed_cell_index is not None else ""
        line += f"\n    {cell}{_first_line(outcome.error)}"
    return line


@app.command("run")
def run(
    name: str = typer.Argument(..., help="The job to run now."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Override a parameter: NAME=VALUE (YAML value; "
                                    "repeatable)."),
    retries: bool = typer.Option(True, "--retries/--no-retries", help="Retry failed attempts as the job says."),
    as_json: bool = typer.Option(False, "--json", help="Print the attempts as JSON."),
) -> None:
    """Run a job now, in the foreground, as the scheduler would (its own process, timeout, retries); exits 1
    when it does not succeed. Its dependencies are not run; a disabled job can be run this way."""
    config = load_config()
    schedule = load_schedule(config)
    job = schedule.job(name)
    if not job.notebook.is_file():
        raise ScheduleError(f"job {name!r}, key 'notebook': {job.notebook} does not exist.",
                            fix="create the notebook or correct the path in the schedule")
    from sophia_lib.scheduler.runner import JobRunner  # the runner's imports only for this command

    if not retries:
        job = job.model_copy(update={"retries": 0})
    app_db = open_app_db(config)
    try:
        runner = JobRunner(config, app_db)
        with runner.lock(job.name):
            outcomes = runner.run(job, parameters=_parse_params(param or []))
    finally:
        app_db.close()
    if as_json:
        typer.echo(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        for outcome in outcomes:
            typer.secho(describe(outcome), fg=STATUS_COLOURS.get(outcome.status),
                        err=outcome.status != "succeeded")
    if not outcomes[-1].succeeded:
        raise typer.Exit(1)


@app.command("history")
def history(
    name: str = typer.Argument(..., help="The job."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON (with full errors)."),
) -> None:
    """A job's runs, newest first: status, trigger, attempt, slot, duration, failing cell and error."""
    config = load_config()
    tz = ZoneInfo(config.scheduler.timezone)
    app_db = open_app_db(config)
    try:
        runs = job_history(app_db, name, limit)
    finally:
        app_db.close()
    if not runs:
        try:
            schedule = load_schedule(config, check_notebooks=False)
        except ScheduleError:  # a broken schedule must not hide the history; there is none to show anyway
            schedule = None
        if schedule is not None:
            schedule.job(name)  # an unknown name raises, listing the jobs
    if as_json:
        typer.echo(json.dumps([run_dict(r) for r in runs], indent=2))
        return
    if not runs:
        typer.echo(f"{name}: no runs yet")
        return
    rows = [("RUN", "STATUS", "TRIGGER", "TRY", "SLOT", "STARTED", "TOOK", "CELL", "ERROR / OUTPUT")]
    for r in runs:
        took = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        detail = _first_line(r.error) or run_dict(r)["html_path"] or r.output_path or ""
        rows.append((f"#{r.id}", r.status, r.trigger, str(r.attempt), _when(r.scheduled_for, tz),
                     _when(r.started_at, tz), took, "-" if r.failed_cell_index is None else str(r.failed_cell_index),
                     detail))
    for line in _table(rows):
        typer.echo(line)
