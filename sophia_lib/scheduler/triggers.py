"""When a job is due: cron slots in the configured time zone, intervals on a grid.

A *slot* is the time a run was scheduled for; every run records its slot (``JobRun.scheduled_for``).
A job is due when a slot later than its last recorded one has passed. Only the newest passed slot is
returned, so a scheduler that was down for three slots runs the job once, not three times.

- ``cron``: slots are the cron's fire times in ``scheduler.timezone`` (summer time included). A job
  with no recorded run starts from ``anchor`` (when the scheduler started): slots before it are not
  owed to a job that never ran.
- ``every``: slots are ``last + k × interval``, so the cadence stays put after a late or catch-up run.
  A job with no recorded run is due at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from sophia_lib.scheduler.schedule import JobSpec

_JUST_AFTER = timedelta(seconds=1)  # croniter's get_prev is strict; a slot exactly at `now` is due


def due_slot(job: JobSpec, last_slot: datetime | None, now: datetime, tz: ZoneInfo,
             anchor: datetime) -> datetime | None:
    """The newest slot in (last_slot, now], or None when nothing is owed. Times are aware; returns UTC."""
    if job.every is not None:
        if last_slot is None:
            return now.astimezone(UTC)
        missed = (now - last_slot) // job.every
        return (last_slot + missed * job.every).astimezone(UTC) if missed >= 1 else None
    assert job.cron is not None
    latest = croniter(job.cron, now.astimezone(tz) + _JUST_AFTER).get_prev(datetime)
    if latest > now:
        return None
    since = last_slot if last_slot is not None else anchor
    return latest.astimezone(UTC) if latest > since else None


def next_slot(job: JobSpec, last_slot: datetime | None, now: datetime, tz: ZoneInfo) -> datetime:
    """The first slot after ``now`` (what ``sophia jobs list`` shows as next), in UTC."""
    if job.every is not None:
        if last_slot is None:
            return now.astimezone(UTC)
        missed = max((now - last_slot) // job.every, 0)
        return (last_slot + (missed + 1) * job.every).astimezone(UTC)
    assert job.cron is not None
    return croniter(job.cron, now.astimezone(tz)).get_next(datetime).astimezone(UTC)
