"""The scheduler loop: which jobs are due, in which order, how many at once.

Each tick reads every enabled job's newest recorded slot from the app DB (so state survives restarts
and is shared with other scheduler processes), asks :mod:`.triggers` for the newest slot now owed,
and hands due jobs to a pool of ``scheduler.max_parallel`` threads, each of which runs one job through
:class:`~sophia_lib.scheduler.runner.JobRunner` (a child process per attempt). Under the job's lock the
slot is checked again, so two schedulers (or a scheduler restarted mid-tick) never run a slot twice.

``depends_on``: due jobs are submitted dependencies first; a job waits for its dependencies' runs in
this process and for their locks (runs elsewhere), then runs only if each dependency's newest finished
run succeeded. Otherwise its slot is recorded as ``cancelled`` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.config import SophiaConfig
from sophia_lib.scheduler.errors import JobBusyError, ScheduleError
from sophia_lib.scheduler.history import last_slot, latest_finished
from sophia_lib.scheduler.runner import MAX_BACKOFF, JobRunner, RunOutcome
from sophia_lib.scheduler.schedule import JobSpec, Schedule, format_duration, load_schedule, schedule_path
from sophia_lib.scheduler.triggers import due_slot, next_slot

log = logging.getLogger("sophia.scheduler")

MAX_SLEEP_S = 30.0
MIN_SLEEP_S = 0.2
TClock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """``Scheduler(config).run_forever()`` in the service; ``run_once()`` runs what is due and waits."""

    def __init__(self, config: SophiaConfig, *, schedule: Schedule | None = None, app_db: AppDb | None = None,
                 clock: TClock = _utcnow) -> None:
        self.config = config
        self.clock = clock
        self.tz = ZoneInfo(config.scheduler.timezone)
        self._watch = None if schedule is not None else schedule_path(config)
        self.schedule = schedule or load_schedule(config)
        self._mtime = self._schedule_mtime()
        self._own_db = app_db is None
        self.app_db = app_db or open_app_db(config)
        self.started_at = clock()
        self.stop_event = threading.Event()
        self.runner = JobRunner(config, self.app_db, stop=self.stop_event)
        self._pool = ThreadPoolExecutor(max_workers=config.scheduler.max_parallel, thread_name_prefix="sophia-job")
        self._inflight: dict[str, Future[list[RunOutcome]]] = {}
        self._guard = threading.Lock()

    # --- what is due ------------------------------------------------------------------------------------

    def due(self, now: datetime | None = None) -> list[tuple[JobSpec, datetime]]:
        """Enabled jobs with a slot owed at ``now``, dependencies first: (job, newest owed slot)."""
        now = now or self.clock()
        found: dict[str, datetime] = {}
        for job in self.schedule.enabled():
            slot = due_slot(job, last_slot(self.app_db, job.name), now, self.tz, anchor=self.started_at)
            if slot is not None:
                found[job.name] = slot
        return [(self.schedule.jobs[name], found[name]) for name in self.schedule.in_dependency_order(list(found))]

    def next_run(self, job: JobSpec, now: datetime | None = None) -> datetime:
        return next_slot(job, last_slot(self.app_db, job.name), now or self.clock(), self.tz)

    # --- running ----------------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Future[list[RunOutcome]]]:
        """Start every due job that is not already running here; the futures of the runs started."""
        self._reload_if_changed()
        started: list[Future[list[RunOutcome]]] = []
        for job, slot in self.due(now):
            with self._guard:
                running = self._inflight.get(job.name)
                if running is not None and not running.done():
                    continue
                trigger = "catch_up" if slot < self.started_at else "schedule"
                future = self._pool.submit(self._run_slot, job, slot, trigger)
                self._inflight[job.name] = future
            started.append(future)
        return started

    def run_once(self, now: datetime | None = None) -> list[RunOutcome]:
        """One tick, waiting for the runs it started; their attempts in start order."""
        outcomes: list[RunOutcome] = []
        for future in self.tick(now):
            outcomes += future.result()
        return outcomes

    def run_forever(self) -> None:
        """Tick until :meth:`stop`; sleeps until the next slot (at most 30 s, to notice other processes)."""
        log.info("scheduler started: %d enabled job(s) from %s, time zone %s, %d at once",
                 len(self.schedule.enabled()), self.schedule.path or "code", self.tz.key,
                 self.config.scheduler.max_parallel)
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception:  # the app DB down for a moment must not end the service
                log.exception("scheduler tick failed; trying again shortly")
            self.stop_event.wait(self._sleep_s())
        log.info("scheduler stopping")

    def stop(self) -> None:
        """Stop ticking, cancel retries waiting for their backoff, kill running attempts (recorded cancelled)."""
        self.stop_event.set()

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_db:
            self.app_db.close()

    def _sleep_s(self) -> float:
        now = self.clock()
        nexts = [self.next_run(job, now) for job in self.schedule.enabled()]
        if not nexts:
            return MAX_SLEEP_S
        return max(MIN_SLEEP_S, min(MAX_SLEEP_S, (min(nexts) - now).total_seconds()))

    def _run_slot(self, job: JobSpec, slot: datetime, trigger: str) -> list[RunOutcome]:
        try:
            with self.runner.lock(job.name):
                last = last_slot(self.app_db, job.name)
                if last is not None and last >= slot:
                    return []  # another scheduler ran this slot meanwhile
                problem = self._dependency_problem(job)
                if problem is not None:
                    log.warning("job %s slot %s cancelled: %s", job.name, slot.isoformat(), problem)
                    return [self.runner.record_cancelled(job, scheduled_for=slot, trigger=trigger, reason=problem)]
                return self.runner.run(job, scheduled_for=slot, trigger=trigger)
        except JobBusyError:
            log.info("job %s is due but already running elsewhere; it runs once that run ends", job.name)
            return []

    def _dependency_problem(self, job: JobSpec) -> str | None:
        """Why ``job`` must not run now (a dependency failed, never ran, or is stuck), or None."""
        for name in job.depends_on:
            with self._guard:
                running = self._inflight.get(name)
            if running is not None:
                with contextlib.suppress(Exception):  # its failure is recorded; only its end matters here
                    running.result()
            dep = self.schedule.jobs[name]
            budget = (dep.timeout + min(dep.retry_backoff * 2 ** dep.retries, MAX_BACKOFF)) * (dep.retries + 1)
            if not self._wait_unlocked(name, budget):
                return (f"cancelled: dependency {name!r} was still running after {format_duration(budget)} "
                        "(its timeouts and retries)")
            run = latest_finished(self.app_db, name)
            if run is None:
                return f"cancelled: dependency {name!r} has not run yet"
            if run.status != "succeeded":
                reason = f": {run.error.splitlines()[0]}" if run.error else ""
                return f"cancelled: dependency {name!r} {run.status} (run #{run.id}{reason})"
        return None

    def _wait_unlocked(self, job: str, budget: timedelta) -> bool:
        deadline = time.monotonic() + budget.total_seconds()
        while not self.stop_event.is_set():
            try:
                with self.runner.lock(job, timeout=1.0):
                    return True
            except JobBusyError:
                if time.monotonic() >= deadline:
                    return False
        return False

    def _schedule_mtime(self) -> float | None:
        try:
            return self._watch.stat().st_mtime if self._watch else None
        except OSError:
            return None

    def _reload_if_changed(self) -> None:
        mtime = self._schedule_mtime()
        if self._watch is None or mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.schedule = load_schedule(self.config, self._watch)
        except ScheduleError as exc:
            log.error("schedule changed but is invalid; keeping the previous one:\n%s", exc)
            return
        log.info("schedule reloaded from %s: %d enabled job(s)", self._watch, len(self.schedule.enabled()))
