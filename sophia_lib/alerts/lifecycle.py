"""The life of an alert: findings → firing, still firing (no new message), resolved (one message).

For each rule and key:

- a finding with no open alert opens one (``firing``) and notifies — unless the key resolved less than the
  rule's ``cooldown`` ago (it is not re-armed yet: flapping stays quiet);
- a finding with an open alert only updates it (de-duplicated); it re-notifies after ``remind_every``
  when set, unless acknowledged or snoozed;
- an open alert with no finding resolves and sends a "resolved" message;
- a snoozed alert (``snoozed_until`` in the future) sends nothing; a new episode of a snoozed key inherits
  the snooze.

State lives in the app DB's ``alerts`` table; the clock is passed in (``now``), so tests walk it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sophia_lib.alerts.evaluators import Finding
from sophia_lib.alerts.rules import TRule
from sophia_lib.appdb.models import Alert

TEvent = Literal["firing", "reminder", "resolved"]


@dataclass
class Transition:
    """Something that happened to one alert in this evaluation; ``notify`` says whether to send it."""

    event: TEvent
    alert_id: int
    rule: str
    key: str
    summary: str
    notify: bool


@dataclass
class RuleOutcome:
    transitions: list[Transition]
    still_firing: int = 0
    cooling_down: int = 0


def apply(session: Session, rule: TRule, findings: list[Finding], now: datetime, link: str | None) -> RuleOutcome:
    """Move ``rule``'s alerts to match ``findings`` at ``now``."""
    open_alerts = {a.key: a for a in session.scalars(
        select(Alert).where(Alert.rule == rule.name, Alert.state == "firing"))}
    outcome = RuleOutcome([])
    seen: set[str] = set()
    for finding in findings:
        if finding.key in seen:
            continue
        seen.add(finding.key)
        alert = open_alerts.get(finding.key)
        if alert is not None:
            _refresh(alert, rule, finding, now, link)
            outcome.still_firing += 1
            if _due_reminder(alert, rule, now):
                alert.notified_at = now
                outcome.transitions.append(Transition("reminder", alert.id, rule.name, alert.key, alert.summary, True))
            continue
        previous = session.scalars(select(Alert).where(Alert.rule == rule.name, Alert.key == finding.key)
                                   .order_by(Alert.id.desc()).limit(1)).first()
        if previous is not None and previous.resolved_at is not None and now - previous.resolved_at < rule.cooldown:
            outcome.cooling_down += 1
            continue
        alert = Alert(rule=rule.name, key=finding.key, state="firing", first_fired_at=now, last_fired_at=now,
                      kind=rule.kind, severity=rule.severity, summary="", payload={})
        _refresh(alert, rule, finding, now, link)
        if previous is not None and previous.snoozed_until is not None and previous.snoozed_until > now:
            alert.snoozed_until = previous.snoozed_until
        session.add(alert)
        session.flush()
        notify = not _snoozed(alert, now)
        if notify:
            alert.notified_at = now
        outcome.transitions.append(Transition("firing", alert.id, rule.name, alert.key, alert.summary, notify))
    for key, alert in open_alerts.items():
        if key in seen:
            continue
        alert.state, alert.resolved_at = "resolved", now
        notify = alert.notified_at is not None and not _snoozed(alert, now)
        outcome.transitions.append(Transition("resolved", alert.id, rule.name, key, alert.summary, notify))
    return outcome


def _refresh(alert: Alert, rule: TRule, finding: Finding, now: datetime, link: str | None) -> None:
    alert.last_fired_at = now
    alert.summary = finding.summary
    alert.severity = rule.severity
    alert.link = link
    alert.payload = {**finding.details, "value": finding.value, "description": rule.description}


def _snoozed(alert: Alert, now: datetime) -> bool:
    return alert.snoozed_until is not None and alert.snoozed_until > now


def _due_reminder(alert: Alert, rule: TRule, now: datetime) -> bool:
    if rule.remind_every is None or alert.acked_by is not None or _snoozed(alert, now):
        return False
    last = alert.notified_at or alert.first_fired_at
    return now - last >= rule.remind_every
