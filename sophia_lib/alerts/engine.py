"""Evaluate the alert rules once: findings → lifecycle → messages, delivered and recorded.

:func:`evaluate_alerts` is what ``sophia alerts evaluate`` and the scheduler's after-refresh hook
(:func:`after_refresh`) call. A rule that cannot be evaluated (query service down, a table missing) is
reported and leaves its alerts as they were — it neither fires nor resolves anything — while the other
rules go on; the hook then fails, naming it. Delivery failures are recorded per attempt in
``deliveries`` and retried at the next evaluation (:func:`sophia_lib.delivery.retry_failed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sophia_lib.alerts.errors import AlertEvaluationError
from sophia_lib.alerts.evaluators import EvalContext, evaluate
from sophia_lib.alerts.lifecycle import Transition, apply
from sophia_lib.alerts.notify import link_for, message_for
from sophia_lib.alerts.rules import TRule, load_rules
from sophia_lib.alerts.source import MetricSource
from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import Alert
from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.delivery import DeliveryOutcome, Message, deliver, retry_failed
from sophia_lib.errors import SophiaError

if TYPE_CHECKING:
    from sophia_lib.scheduler.refresh import RefreshResult
    from sophia_lib.scheduler.runner import RunOutcome
    from sophia_lib.scheduler.schedule import JobSpec

log = logging.getLogger("sophia.alerts")
DATA_KINDS = frozenset({"sync_failure", "freshness", "schema_change", "quarantine", "job_failure"})


@dataclass
class EvaluationReport:
    """What one evaluation did."""

    as_of: datetime
    now: datetime
    rules: int = 0
    transitions: list[Transition] = field(default_factory=list)
    still_firing: int = 0
    cooling_down: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    deliveries: list[DeliveryOutcome] = field(default_factory=list)

    def count(self, event: str) -> int:
        return sum(1 for t in self.transitions if t.event == event)

    @property
    def failed_deliveries(self) -> list[DeliveryOutcome]:
        return [d for d in self.deliveries if d.status != "sent"]

    def summary(self) -> str:
        parts = [f"{self.rules} rule(s): {self.count('firing')} fired, {self.count('resolved')} resolved, "
                 f"{self.still_firing} still firing"]
        if self.cooling_down:
            parts.append(f"{self.cooling_down} in cooldown")
        if self.deliveries:
            failed = len(self.failed_deliveries)
            parts.append(f"{len(self.deliveries) - failed} message(s) sent"
                         + (f", {failed} FAILED (recorded; retried next time)" if failed else ""))
        if self.errors:
            parts.append(f"{len(self.errors)} rule(s) FAILED: {', '.join(sorted(self.errors))}")
        return "; ".join(parts)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise AlertEvaluationError(
                "alert rule(s) could not be evaluated (their alerts were left as they were):\n"
                + "\n".join(f"- {name}: {error}" for name, error in sorted(self.errors.items())),
                fix="see each rule's error; `sophia alerts evaluate` runs them again")

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "now": self.now.isoformat(), "rules": self.rules,
                "transitions": [t.__dict__ for t in self.transitions], "still_firing": self.still_firing,
                "cooling_down": self.cooling_down, "errors": self.errors,
                "deliveries": [d.__dict__ for d in self.deliveries]}


def evaluate_alerts(config: SophiaConfig | None = None, *, now: datetime | None = None,
                    as_of: datetime | None = None, source: MetricSource | None = None,
                    rules: list[TRule] | None = None, kinds: Collection[str] | None = None,
                    app_db: AppDb | None = None, send: bool = True,
                    sleep: Callable[[float], None] = time.sleep) -> EvaluationReport:
    """Evaluate every enabled rule (or those of ``kinds``) and deliver what changed.

    ``now`` is the clock (default: the current time), ``as_of`` the data's cutoff (default: ``now``; the
    refresh hook passes the snapshot's as-of). ``source`` reads metrics and marts (default: the query
    door's client). ``send=False`` records transitions without sending anything.
    """
    config = config or load_config()
    now = now or datetime.now(UTC)
    rules = load_rules(config) if rules is None else rules
    selected = [rule for rule in rules if rule.enabled and (kinds is None or rule.kind in kinds)]
    report = EvaluationReport(as_of=as_of or now, now=now, rules=len(selected))
    db = app_db or open_app_db(config)
    try:
        if send:
            report.deliveries += retry_failed(config, app_db=db, sleep=sleep, now=now)
        if source is None and any(rule.uses_metrics or rule.kind not in DATA_KINDS for rule in selected):
            from sophia_lib.alerts.source import QueryDoorSource

            source = QueryDoorSource()
        ctx = EvalContext(config, report.as_of, now, source, db)
        for rule in selected:
            _evaluate_rule(config, rule, ctx, report, send, sleep)
    finally:
        if app_db is None:
            db.close()
    log.info("alerts: %s", report.summary())
    return report


def _evaluate_rule(config: SophiaConfig, rule: TRule, ctx: EvalContext, report: EvaluationReport, send: bool,
                   sleep: Callable[[float], None]) -> None:
    try:
        findings = evaluate(rule, ctx)
    except SophiaError as exc:
        report.errors[rule.name] = exc.message
        log.warning("alert rule %s could not be evaluated: %s", rule.name, exc)
        return
    except Exception as exc:  # a bug or an unexpected table shape must not stop the other rules
        report.errors[rule.name] = f"{type(exc).__name__}: {exc}"
        log.exception("alert rule %s failed", rule.name)
        return
    outgoing: list[tuple[int, Message]] = []
    with ctx.app_db.session() as s:
        outcome = apply(s, rule, findings, ctx.now, link_for(config, rule))
        for transition in outcome.transitions:
            if transition.notify and rule.notify:
                alert = s.get(Alert, transition.alert_id)
                assert alert is not None
                outgoing.append((transition.alert_id, message_for(transition, alert, rule)))
    report.transitions += outcome.transitions
    report.still_firing += outcome.still_firing
    report.cooling_down += outcome.cooling_down
    if send:
        for alert_id, message in outgoing:
            report.deliveries += deliver(config, message, rule.notify, kind="alert", alert_id=alert_id,
                                         app_db=ctx.app_db, sleep=sleep)


def after_refresh(config: SophiaConfig, refresh: RefreshResult, *, source: MetricSource | None = None) -> str:
    """After-refresh hook (:data:`sophia_lib.scheduler.hooks.AFTER_REFRESH`): evaluate on the new snapshot.

    Metric and marts rules read through the query door with the process's hub token. Where there is none
    (``sophia refresh`` outside JupyterHub, with no ``SOPHIA_QUERY_TOKEN``) only the data rules run, and the
    summary says so; a token with an unreachable or refusing service is an error that fails the refresh."""
    from sophia_lib.query.client import default_token

    as_of = refresh.snapshot.as_of if refresh.snapshot is not None else None
    kinds = None if source is not None or default_token() else DATA_KINDS
    report = evaluate_alerts(config, as_of=as_of, source=source, kinds=kinds)
    report.raise_for_errors()
    if kinds is None:
        return report.summary()
    return (f"{report.summary()}; metric and marts rules skipped: no hub token for the query door "
            "(SOPHIA_QUERY_TOKEN or JUPYTERHUB_API_TOKEN)")


def after_job(config: SophiaConfig, job: JobSpec, outcome: RunOutcome) -> None:
    """After-job hook (:data:`sophia_lib.scheduler.hooks.AFTER_JOB`): a failed job is an alert, and a later
    success resolves it. Only job-failure rules run here (no metrics are read)."""
    evaluate_alerts(config, kinds={"job_failure"}).raise_for_errors()
