"""Errors of the scheduler: a bad schedule (names the job and the key), a job already running."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError, TransientError


class ScheduleError(ConfigError):
    """``schedule.yaml`` is missing, malformed, or names something that does not exist."""

    reason = "schedule"


class UnknownJobError(ConfigError):
    """A job name that the schedule does not declare (a usage error: exit status 2)."""

    reason = "unknown_job"


class JobBusyError(TransientError):
    """Another run of the same job holds its lock (in this process or another one)."""

    reason = "job_busy"


class RefreshError(SophiaError):
    """A step of the refresh failed (the steps after it still ran where they could)."""

    reason = "refresh"
