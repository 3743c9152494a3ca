"""Scheduled jobs: ``pipelines/schedule.yaml`` run by papermill, each attempt in its own process.

    schedule = load_schedule(config)                    # validated; errors name the job and the key
    scheduler = Scheduler(config); scheduler.run_forever()    # the hub's `scheduler` service
    JobRunner(config, open_app_db(config)).run(schedule.job("refresh"))   # what `sophia jobs run` does
    run_refresh(config)                                 # sync → publish → after-refresh hooks, in-process

:mod:`.schedule` (the file), :mod:`.triggers` (cron and intervals, catch-up), :mod:`.loop` (due jobs,
dependencies, parallelism), :mod:`.runner` (locks, attempts, timeouts, records), :mod:`.execute` (the
child process), :mod:`.notebooks` (failing cell, HTML), :mod:`.history` (runs from the app DB),
:mod:`.refresh` and :mod:`.hooks` (extension points). See docs/scheduling.md.

Names are imported lazily: the child process of every attempt imports this package, and should not
pay for the scheduler's own imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AFTER_JOB": "hooks", "AFTER_REFRESH": "hooks",
    "JobBusyError": "errors", "RefreshError": "errors", "ScheduleError": "errors", "UnknownJobError": "errors",
    "JobRunner": "runner", "RunOutcome": "runner",
    "JobSpec": "schedule", "Schedule": "schedule", "load_schedule": "schedule",
    "Scheduler": "loop",
    "RefreshResult": "refresh", "run_refresh": "refresh",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sophia_lib.scheduler' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sophia_lib.scheduler.{_EXPORTS[name]}"), name)
