"""Run one job: its lock, its attempts (each a child process with a hard timeout), their records.

::

    job lock (var_dir/scheduler/locks/<job>.lock)    one run of a job at a time, across processes
      runs left 'running' by a dead process → failed (interrupted)
      attempt 1..retries+1:
        JobRun 'running' (slot, attempt, parameters, trigger)
        child process: papermill → <runs_dir>/<job>/<id>.ipynb     killed with its kernel at the timeout
        JobRun succeeded | failed | timed_out | cancelled (duration, failing cell, error)
        <id>.html rendered beside the notebook
        failed or timed out: wait retry_backoff × 2^(attempt-1), then try again
      after-job hooks (sophia_lib.scheduler.hooks.AFTER_JOB) with the last attempt

The child's environment carries ``SOPHIA_CONFIG`` (the effective configuration, written beside the
run as ``<id>.config.yaml``: secrets appear only as references) so the notebook's ``load_config()``
sees exactly what the scheduler sees, plus ``SOPHIA_JOB``, ``SOPHIA_JOB_RUN_ID``, ``SOPHIA_JOB_ROLE``
(the job's audience), ``SOPHIA_JOB_ATTEMPT`` and ``SOPHIA_JOB_SCHEDULED_FOR``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import yaml
from filelock import FileLock, Timeout
from sqlalchemy import select, update

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import JobRun
from sophia_lib.config import SophiaConfig
from sophia_lib.scheduler import notebooks
from sophia_lib.scheduler.errors import JobBusyError
from sophia_lib.scheduler.hooks import run_after_job
from sophia_lib.scheduler.schedule import JobSpec, format_duration

log = logging.getLogger("sophia.scheduler")

MAX_BACKOFF = timedelta(hours=1)
POLL_S = 0.1
INTERRUPTED = ("interrupted: the process running this attempt ended before it finished (killed, crashed or "
               "restarted); the next scheduled slot runs as usual")
STOPPED = "cancelled: the scheduler was stopped while this attempt ran"
LOG_TAIL_CHARS = 2000


@dataclass
class RunOutcome:
    """One attempt as recorded (what ``sophia jobs run`` prints and after-job hooks receive)."""

    run_id: int
    job: str
    attempt: int
    status: str
    trigger: str
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    output_path: Path | None = None
    html_path: Path | None = None
    failed_cell_index: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job": self.job, "attempt": self.attempt, "status": self.status,
            "trigger": self.trigger,
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": self.duration_s, "parameters": self.parameters,
            "output_path": str(self.output_path) if self.output_path else None,
            "html_path": str(self.html_path) if self.html_path else None,
            "failed_cell_index": self.failed_cell_index, "error": self.error,
        }


def runs_dir(config: SophiaConfig) -> Path:
    return config.scheduler.runs_dir or config.var_dir / "runs"


def lock_path(config: SophiaConfig, job: str) -> Path:
    return config.var_dir / "scheduler" / "locks" / f"{job}.lock"


class JobRunner:
    """Runs jobs for one configuration and app database. Thread-safe; ``stop`` cancels what runs."""

    def __init__(self, config: SophiaConfig, app_db: AppDb, *, stop: threading.Event | None = None) -> None:
        self.config = config
        self.app_db = app_db
        self.stop = stop or threading.Event()

    # --- locking ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, job: str, timeout: float = 0) -> Iterator[None]:
        """Hold the job's lock (across processes); JobBusyError when another run holds it."""
        path = lock_path(self.config, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), thread_local=False)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise JobBusyError(f"job {job!r} is already running{self._running_since(job)}.",
                               fix="wait for that run to finish (`sophia jobs history " + job + "`)") from None
        try:
            self._mark_interrupted(job)
            yield
        finally:
            lock.release()

    def _running_since(self, job: str) -> str:
        with self.app_db.session() as s:
            run = s.scalars(select(JobRun).where(JobRun.job == job, JobRun.status == "running")
                            .order_by(JobRun.id.desc())).first()
            if run is None or run.started_at is None:
                return ""
            return f" (run #{run.id}, attempt {run.attempt}, since {run.started_at:%Y-%m-%d %H:%M:%S} UTC)"

    def _mark_interrupted(self, job: str) -> None:
        """We hold the lock, so a run still marked running belongs to a process that is gone."""
        now = datetime.now(UTC)
        with self.app_db.session() as s:
            s.execute(update(JobRun).where(JobRun.job == job, JobRun.status == "running")
                      .values(status="failed", finished_at=now, error=INTERRUPTED))

    # --- running ----------------------------------------------------------------------------------------

    def run(self, job: JobSpec, *, scheduled_for: datetime | None = None, trigger: str = "manual",
            parameters: dict[str, Any] | None = None) -> list[RunOutcome]:
        """Every attempt of one run of ``job`` (the caller holds the job's lock). Retries failures and
        timeouts with exponential backoff; stops early when ``self.stop`` is set."""
        params = {**job.parameters, **(parameters or {})}
        outcomes: list[RunOutcome] = []
        for attempt in range(1, job.retries + 2):
            outcome = self.attempt(job, attempt=attempt, scheduled_for=scheduled_for, trigger=trigger,
                                   parameters=params)
            outcomes.append(outcome)
            if outcome.status in ("succeeded", "cancelled") or attempt > job.retries:
                break
            wait = min(job.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF)
            log.info("job %s attempt %d %s; retrying in %s", job.name, attempt, outcome.status,
                     format_duration(wait))
            if self.stop.wait(wait.total_seconds()):
                break
        run_after_job(self.config, job, outcomes[-1])
        self._prune(job.name)
        return outcomes

    def record_cancelled(self, job: JobSpec, *, scheduled_for: datetime | None, trigger: str,
                         reason: str) -> RunOutcome:
        """A slot that was not run (a dependency failed): recorded so it is visible and not owed again."""
        now = datetime.now(UTC)
        with self.app_db.session() as s:
            row = JobRun(job=job.name, status="cancelled", scheduled_for=scheduled_for, started_at=now,
                         finished_at=now, duration_s=0.0, attempt=1, parameters=job.parameters, trigger=trigger,
                         error=reason)
            s.add(row)
            s.flush()
            run_id = row.id
        outcome = RunOutcome(run_id, job.name, 1, "cancelled", trigger, scheduled_for, now, now, 0.0,
                             dict(job.parameters), error=reason)
        run_after_job(self.config, job, outcome)
        return outcome

    def attempt(self, job: JobSpec, *, attempt: int, scheduled_for: datetime | None, trigger: str,
                parameters: dict[str, Any]) -> RunOutcome:
        started = datetime.now(UTC)
        folder = runs_dir(self.config) / job.name
        folder.mkdir(parents=True, exist_ok=True)
        with self.app_db.session() as s:
            row = JobRun(job=job.name, status="running", scheduled_for=scheduled_for, started_at=started,
                         attempt=attempt, parameters=parameters, trigger=trigger)
            s.add(row)
            s.flush()
            run_id = row.id
            output = folder / f"{run_id}.ipynb"
            row.output_path = str(output)
        outcome = RunOutcome(run_id, job.name, attempt, "running", trigger, scheduled_for, started,
                             parameters=parameters, output_path=output)
        log.info("job %s run #%d attempt %d started (%s)", job.name, run_id, attempt, trigger)
        try:
            status, cell, error = self._execute(job, outcome, folder)
        except Exception as exc:  # the runner itself failed (disk full, cannot spawn): still record it
            log.exception("job %s run #%d: the runner failed", job.name, run_id)
            status, cell, error = "failed", None, f"the scheduler could not run the notebook: {exc}"
        finished = datetime.now(UTC)
        outcome.status, outcome.failed_cell_index, outcome.error = status, cell, error
        outcome.finished_at = finished
        outcome.duration_s = round((finished - started).total_seconds(), 3)
        try:
            outcome.html_path = notebooks.render_html(output)
        except Exception as exc:  # a notebook nbconvert cannot render must not lose the run's record
            log.warning("job %s run #%d: cannot render HTML: %s", job.name, run_id, exc)
        if not output.exists():
            outcome.output_path = None
        with self.app_db.session() as s:
            s.execute(update(JobRun).where(JobRun.id == run_id).values(
                status=status, finished_at=finished, duration_s=outcome.duration_s, failed_cell_index=cell,
                error=error, output_path=str(outcome.output_path) if outcome.output_path else None))
        log.info("job %s run #%d attempt %d %s in %.1f s%s", job.name, run_id, attempt, status, outcome.duration_s,
                 f": {error.splitlines()[0]}" if error else "")
        return outcome

    def _execute(self, job: JobSpec, outcome: RunOutcome, folder: Path) -> tuple[str, int | None, str | None]:
        """Run the child process to the end, the timeout, or a stop. (status, failing cell, error)."""
        stem = folder / str(outcome.run_id)
        result_path = stem.with_suffix(".result.json")
        config_path = stem.with_suffix(".config.yaml")
        config_path.write_text(yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
        spec = {
            "input": str(job.notebook), "output": str(outcome.output_path), "parameters": outcome.parameters,
            "kernel": self.config.scheduler.kernel, "cwd": str(job.notebook.parent), "result": str(result_path),
            "parent_pid": os.getpid(),
        }
        env = {**os.environ, "SOPHIA_CONFIG": str(config_path), "SOPHIA_JOB": job.name,
               "SOPHIA_JOB_RUN_ID": str(outcome.run_id), "SOPHIA_JOB_ROLE": job.audience,
               "SOPHIA_JOB_ATTEMPT": str(outcome.attempt), "PYTHONUNBUFFERED": "1",
               "SOPHIA_JOB_SCHEDULED_FOR": outcome.scheduled_for.isoformat() if outcome.scheduled_for else ""}
        log_path = stem.with_suffix(".log")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "sophia_lib.scheduler.execute"], stdin=subprocess.PIPE,
                                    stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec).encode())
            proc.stdin.close()
            deadline = time.monotonic() + job.timeout.total_seconds()
            while proc.poll() is None:
                if time.monotonic() >= deadline:
                    kill_tree(proc)
                    return self._killed(outcome.output_path, "timed_out", "TimeoutError",
                                        f"ran past the job's timeout of {format_duration(job.timeout)} and was "
                                        "stopped (the process and its kernel were killed)")
                if self.stop.wait(POLL_S):
                    kill_tree(proc)
                    return self._killed(outcome.output_path, "cancelled", "Cancelled", STOPPED)
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
            return "failed", None, (f"the notebook runner exited with status {proc.returncode} before reporting a "
                                    f"result; its log ({log_path}) ends:\n{tail or '(empty)'}")
        finally:
            result_path.unlink(missing_ok=True)
        return result["status"], result.get("cell_index"), result.get("error")

    def _killed(self, output: Path | None, status: str, ename: str, message: str) -> tuple[str, int | None, str]:
        nb = notebooks.read(output) if output else None
        failure = notebooks.locate_failure(nb) if nb is not None else None
        if nb is None or failure is None or output is None:
            return status, None, f"{ename}: {message}"
        notebooks.mark_failed(nb, failure.executed_index, ename, message)
        notebooks.write(nb, output)
        return status, failure.source_index, f"{ename}: {message} (in cell {failure.source_index})"

    def _prune(self, job: str) -> None:
        """Keep the newest ``scheduler.keep_runs`` runs' files of the job (records stay in the app DB)."""
        folder = runs_dir(self.config) / job
        ids = sorted({int(p.name.split(".", 1)[0]) for p in folder.glob("*.*") if p.name.split(".", 1)[0].isdigit()})
        for old in ids[:-self.config.scheduler.keep_runs]:
            for path in folder.glob(f"{old}.*"):
                path.unlink(missing_ok=True)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child, its process group and every descendant (the kernel runs in a session of its own)."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    connection_files = [_connection_file(p) for p in descendants]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait()
    psutil.wait_procs(descendants, timeout=5)
    for path in connection_files:
        if path is not None:
            path.unlink(missing_ok=True)


def _connection_file(process: psutil.Process) -> Path | None:
    """A kernel's connection file (``-f FILE`` on its command line), left behind when it is killed."""
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return None
    if "-f" in cmdline[:-1]:
        candidate = Path(cmdline[cmdline.index("-f") + 1])
        if candidate.name.startswith("kernel-") and candidate.suffix == ".json":
            return candidate
    return None
