"""Extension points: what runs after each refresh, and after each job run.

Both lists hold ``"module:function"`` references, imported when first called, so the scheduler never
imports the features that plug into it (and they may import the scheduler). Order matters: the
dashboards' snapshots before the alerts that link to them.

- :data:`AFTER_REFRESH`: ``fn(config, refresh) -> str | None`` with the :class:`~sophia_lib.scheduler.refresh.
  RefreshResult` so far (sync results, the published snapshot); the string is a one-line summary the
  refresh prints. Every hook runs even when an earlier one fails; the refresh then fails, naming them.
- :data:`AFTER_JOB`: ``fn(config, job, outcome)`` with the :class:`~sophia_lib.scheduler.runner.RunOutcome`
  of the last attempt of a run (report distribution, "a failed job is an alert"). A hook that raises is
  logged and does not change the run's record.

Tests and embedders may also pass callables instead of references.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sophia_lib.errors import ConfigError

if TYPE_CHECKING:
    from sophia_lib.config import SophiaConfig
    from sophia_lib.scheduler.runner import RunOutcome
    from sophia_lib.scheduler.schedule import JobSpec

log = logging.getLogger("sophia.scheduler")

THook = str | Callable[..., Any]

AFTER_REFRESH: list[THook] = [
    "sophia_lib.dashboards.snapshots:after_refresh",  # dashboards' static snapshots (issue 7)
    "sophia_lib.alerts.engine:after_refresh",  # alert rules evaluated on the new snapshot (issue 8)
]

AFTER_JOB: list[THook] = [
    "sophia_lib.reports.distribution:after_job",  # mail/Slack each recipient's copy of a report (issue 8)
    "sophia_lib.alerts.engine:after_job",  # a failed job is an alert (issue 8)
]


def resolve(hook: THook) -> Callable[..., Any]:
    """The callable behind a ``"module:function"`` reference (or the callable itself)."""
    if callable(hook):
        return hook
    module_name, _, attr = hook.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"hook {hook!r} cannot be loaded: {exc}.",
                          fix="write hooks as 'package.module:function' naming an importable function") from None


def hook_name(hook: THook) -> str:
    return hook if isinstance(hook, str) else f"{hook.__module__}:{getattr(hook, '__qualname__', hook)}"


def run_after_job(config: SophiaConfig, job: JobSpec, outcome: RunOutcome,
                  hooks: list[THook] | None = None) -> None:
    for hook in AFTER_JOB if hooks is None else hooks:
        try:
            resolve(hook)(config, job, outcome)
        except Exception:
            log.exception("after-job hook %s failed for job %s run #%d", hook_name(hook), job.name, outcome.run_id)
